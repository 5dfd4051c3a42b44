//! The service machine's named timers ([`Timer`]) and the table holding
//! their deadlines (`TimerTable`), after quinn-proto's `timer.rs`.
//!
//! Pure: no I/O, no clock reads. The driver keeps one real timer armed at
//! the earliest deadline (`ServiceMachine::poll_timeout`) and calls
//! `handle_timeout(now)` when it fires.

use std::time::Instant;

use super::probe::ProbeKind;

/// One timer per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// In `Backoff`: when it expires the service is spawned again.
    Backoff,
    /// In `Stopping`: SIGTERM was sent; when it expires, SIGKILL.
    StopGrace,
    /// The probe of this kind is due (armed only while the probe is active
    /// and none of its kind is in flight).
    Probe(ProbeKind),
}

impl Timer {
    /// Every timer, in the order `handle_timeout` fires expired ones.
    pub const VALUES: [Timer; 5] = [
        Timer::Backoff,
        Timer::StopGrace,
        Timer::Probe(ProbeKind::Startup),
        Timer::Probe(ProbeKind::Readiness),
        Timer::Probe(ProbeKind::Liveness),
    ];

    fn index(self) -> usize {
        match self {
            Timer::Backoff => 0,
            Timer::StopGrace => 1,
            Timer::Probe(kind) => 2 + kind.index(),
        }
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; Timer::VALUES.len()],
}

impl TimerTable {
    /// Arms `timer` at `deadline`; `None` disarms it (a deadline that
    /// overflowed `Instant` never fires).
    pub(crate) fn set(&mut self, timer: Timer, deadline: Option<Instant>) {
        self.data[timer.index()] = deadline;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer.index()]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer.index()] = None;
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_keeps_one_deadline_per_timer() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        for (i, timer) in Timer::VALUES.into_iter().enumerate() {
            assert_eq!(timer.index(), i);
            table.set(timer, Some(t0 + Duration::from_secs(10 - i as u64)));
        }
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(6)));
        table.stop(Timer::Probe(ProbeKind::Liveness));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(7)));
        assert!(table.is_expired(
            Timer::Probe(ProbeKind::Readiness),
            t0 + Duration::from_secs(7)
        ));
        assert!(!table.is_expired(
            Timer::Probe(ProbeKind::Startup),
            t0 + Duration::from_secs(7)
        ));
        assert!(!table.is_expired(
            Timer::Probe(ProbeKind::Liveness),
            t0 + Duration::from_secs(99)
        ));
        table.set(Timer::Backoff, None);
        assert_eq!(table.get(Timer::Backoff), None);
    }
}
