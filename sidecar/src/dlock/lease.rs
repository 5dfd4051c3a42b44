//! Quorum-mode leases (shared/CLUSTER-LOCKS.md §5.5): while a host has
//! claims it bumps `lseq` every R and remembers when each renewal was
//! published; members echo the newest `lseq` they saw. The lease is valid
//! until `send(s*) + L`, where s* is the q-th highest of our own `lseq`
//! and the echoes. Members vote a silent host DOWN only after T_down > L
//! without progress and never echo it again, so the DOWN quorum and every
//! lease quorum meet in a member whose vote came after the lease ended.

use std::collections::VecDeque;

/// Renewals remembered: far more than a lease's worth at any sane R.
const KEEP: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct Lease {
    pub lseq: u64,
    sent: VecDeque<(u64, u64)>,
}

impl Lease {
    /// Publish a new renewal at `now_ms` (the caller publishes the value).
    pub fn renew(&mut self, now_ms: u64) {
        self.lseq += 1;
        self.sent.push_back((self.lseq, now_ms));
        while self.sent.len() > KEEP {
            self.sent.pop_front();
        }
    }

    /// When renewal `seq` was published, if we still remember it.
    pub fn sent_at(&self, seq: u64) -> Option<u64> {
        self.sent.iter().find(|(q, _)| *q == seq).map(|(_, t)| *t)
    }

    pub fn last_renewal_ms(&self) -> Option<u64> {
        self.sent.back().map(|(_, t)| *t)
    }

    /// End of the lease (ms), given the members' echoes of our `lseq` and
    /// the quorum size (which counts us). `None`: no quorum has echoed a
    /// renewal we still remember.
    pub fn valid_until(
        &self,
        echoes: impl Iterator<Item = u64>,
        quorum: usize,
        lease_ms: u64,
    ) -> Option<u64> {
        if self.lseq == 0 || quorum == 0 {
            return None;
        }
        let mut seqs: Vec<u64> = std::iter::once(self.lseq)
            .chain(echoes.map(|e| e.min(self.lseq)))
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        let s = *seqs.get(quorum - 1)?;
        if s == 0 {
            return None;
        }
        let sent = self.sent.iter().find(|(q, _)| *q == s)?.1;
        Some(sent + lease_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_runs_from_the_send_time_of_the_quorum_acknowledged_renewal() {
        let mut l = Lease::default();
        l.renew(1000); // seq 1
        l.renew(1250); // seq 2
        l.renew(1500); // seq 3
        // Three members, quorum 2: us (3) and the best echo (2).
        assert_eq!(l.valid_until([2, 1].into_iter(), 2, 3000), Some(4250));
        // Nobody echoed: no lease.
        assert_eq!(l.valid_until([0, 0].into_iter(), 2, 3000), None);
        // Quorum 3 needs the lower echo.
        assert_eq!(l.valid_until([2, 1].into_iter(), 3, 3000), Some(4000));
        // An echo above our own seq cannot happen; it is capped.
        assert_eq!(l.valid_until([9].into_iter(), 2, 3000), Some(4500));
    }

    #[test]
    fn single_member_quorum_is_our_own_renewal() {
        let mut l = Lease::default();
        assert_eq!(l.valid_until(std::iter::empty(), 1, 3000), None);
        l.renew(10);
        assert_eq!(l.valid_until(std::iter::empty(), 1, 3000), Some(3010));
    }
}
