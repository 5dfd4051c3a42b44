//! Matrix clocks over the value-carrying messages (SynAck, Ack), so the
//! checker can tell, from the network's history alone, whether a quorum
//! lease was possible: `know[h][m][x]` is the latest time of x that h
//! knows m knew of. A lease renewal h sent at τ can only be echoed back
//! by m if `know[h][m][h] ≥ τ`. Kept only for small clusters (N² per
//! message); knowledge survives restarts, which only weakens the check.

pub struct Causal {
    n: usize,
    /// Per host, an n × n matrix, row-major; empty when disabled.
    know: Vec<Vec<u64>>,
}

impl Causal {
    pub fn new(n: usize, enabled: bool) -> Causal {
        Causal {
            n,
            know: if enabled {
                vec![vec![0; n * n]; n]
            } else {
                Vec::new()
            },
        }
    }

    pub fn enabled(&self) -> bool {
        !self.know.is_empty()
    }

    /// What `from` sends at `now`: its matrix, its own time fresh.
    pub fn stamp(&mut self, from: usize, now: u64) -> Vec<u64> {
        if !self.enabled() {
            return Vec::new();
        }
        let n = self.n;
        self.know[from][from * n + from] = now;
        self.know[from].clone()
    }

    /// `to` received `m` (a stamp) at `now`.
    pub fn merge(&mut self, to: usize, now: u64, m: &[u64]) {
        if !self.enabled() || m.is_empty() {
            return;
        }
        let n = self.n;
        let k = &mut self.know[to];
        for (a, b) in k.iter_mut().zip(m) {
            *a = (*a).max(*b);
        }
        // Whatever anyone in the message knew of y, `to` now knows too.
        for y in 0..n {
            let best = (0..n).map(|x| m[x * n + y]).max().unwrap_or(0);
            let own = &mut k[to * n + y];
            *own = (*own).max(best);
        }
        k[to * n + to] = now;
    }

    /// The latest time of `h` that `h` knows `m` knew of: the newest lease
    /// renewal of h that m can have echoed back to h.
    pub fn round_trip(&self, h: usize, m: usize) -> Option<u64> {
        self.enabled().then(|| self.know[h][m * self.n + h])
    }
}

#[cfg(test)]
mod tests {
    use super::Causal;

    #[test]
    fn a_round_trip_needs_both_directions() {
        let mut c = Causal::new(3, true);
        let s = c.stamp(0, 10);
        c.merge(1, 12, &s);
        assert_eq!(c.round_trip(0, 1), Some(0), "no reply yet");
        // 1 → 2 → 0: relayed, still a round trip.
        let s = c.stamp(1, 15);
        c.merge(2, 16, &s);
        let s = c.stamp(2, 20);
        c.merge(0, 21, &s);
        assert_eq!(c.round_trip(0, 1), Some(10));
        assert_eq!(c.round_trip(0, 2), Some(10));
    }
}
