//! The harness's own view of who could talk to whom, over time: every
//! fault and heal appends a snapshot. The invariants are judged against it
//! (CLUSTER-LOCKS §6: "record the harness's view of the topology").
//!
//! Two hosts are connected when both daemons run (not killed, not
//! SIGSTOPped), both links are up and neither drops the other's packets.
//! A one-way cut disconnects them: QUIC needs both directions.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub alive: Vec<bool>,
    pub stopped: Vec<bool>,
    pub link: Vec<bool>,
    /// `blocked[i]`: hosts whose packets host i drops.
    pub blocked: Vec<BTreeSet<usize>>,
}

impl State {
    pub fn healthy(n: usize) -> State {
        State {
            alive: vec![true; n],
            stopped: vec![false; n],
            link: vec![true; n],
            blocked: vec![BTreeSet::new(); n],
        }
    }

    pub fn up(&self, i: usize) -> bool {
        self.alive[i] && !self.stopped[i]
    }

    pub fn connected(&self, i: usize, j: usize) -> bool {
        if i == j {
            return true;
        }
        self.up(i)
            && self.up(j)
            && self.link[i]
            && self.link[j]
            && !self.blocked[i].contains(&j)
            && !self.blocked[j].contains(&i)
    }

    /// The network between i and j is intact (links up, no cut either
    /// way), whatever their daemons do.
    pub fn net_connected(&self, i: usize, j: usize) -> bool {
        i == j
            || (self.link[i]
                && self.link[j]
                && !self.blocked[i].contains(&j)
                && !self.blocked[j].contains(&i))
    }

    pub fn all_healthy(&self) -> bool {
        *self == State::healthy(self.alive.len())
    }

    /// Hosts in host i's connected component (i included, even when down).
    pub fn component(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::from([i]);
        let mut todo = vec![i];
        while let Some(a) = todo.pop() {
            for b in 0..self.alive.len() {
                if !seen.contains(&b) && self.connected(a, b) {
                    seen.insert(b);
                    todo.push(b);
                }
            }
        }
        seen
    }
}

#[derive(Debug, Clone)]
pub struct Timeline {
    /// (since, state) in time order; the first covers everything before.
    pub points: Vec<(u64, State)>,
}

impl Timeline {
    pub fn new(n: usize, t0: u64) -> Timeline {
        Timeline {
            points: vec![(t0, State::healthy(n))],
        }
    }

    pub fn current(&self) -> &State {
        &self.points.last().unwrap().1
    }

    /// Record a change made at `t` (ignored if nothing changed).
    pub fn push(&mut self, t: u64, s: State) {
        if *self.current() != s {
            self.points.push((t, s));
        }
    }

    fn index_at(&self, t: u64) -> usize {
        self.points
            .partition_point(|(since, _)| *since <= t)
            .saturating_sub(1)
    }

    #[cfg(test)]
    pub fn at(&self, t: u64) -> &State {
        &self.points[self.index_at(t)].1
    }

    /// The states in force at some instant of `[from, to]`.
    pub fn during(&self, from: u64, to: u64) -> impl Iterator<Item = &State> {
        let a = self.index_at(from);
        let b = self.index_at(to.max(from));
        self.points[a..=b].iter().map(|(_, s)| s)
    }

    /// i and j connected at every instant of `[from, to]`.
    pub fn connected_throughout(&self, i: usize, j: usize, from: u64, to: u64) -> bool {
        self.during(from, to).all(|s| s.connected(i, j))
    }

    /// Since when everything has been healthy without a break, if it is at `t`.
    pub fn healthy_since(&self, t: u64) -> Option<u64> {
        let mut k = self.index_at(t);
        if !self.points[k].1.all_healthy() {
            return None;
        }
        while k > 0 && self.points[k - 1].1.all_healthy() {
            k -= 1;
        }
        Some(self.points[k].0)
    }

    /// Instants where connectivity changed.
    pub fn change_times(&self) -> Vec<u64> {
        self.points.iter().map(|(t, _)| *t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_over_time() {
        let mut tl = Timeline::new(3, 0);
        let mut s = State::healthy(3);
        s.blocked[2].insert(0);
        tl.push(10, s.clone());
        s.blocked[2].clear();
        tl.push(20, s);
        assert!(tl.at(5).connected(0, 2));
        assert!(!tl.at(10).connected(0, 2), "one-way cut disconnects");
        assert!(!tl.at(15).connected(2, 0));
        assert!(tl.at(25).connected(0, 2));
        assert!(!tl.connected_throughout(0, 2, 5, 25));
        assert!(tl.connected_throughout(0, 1, 5, 25));
        assert_eq!(tl.healthy_since(25), Some(20));
        assert_eq!(tl.healthy_since(12), None);
        // Gossip relays: 0 and 2 cut from each other are one component via 1.
        assert_eq!(tl.at(12).component(2), BTreeSet::from([0, 1, 2]));
        let mut iso = State::healthy(3);
        iso.link[2] = false;
        assert_eq!(iso.component(0), BTreeSet::from([0, 1]));
        assert_eq!(iso.component(2), BTreeSet::from([2]));
    }
}
