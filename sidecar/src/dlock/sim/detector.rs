//! chitchat 0.11.2's failure detector (shared/CHITCHAT-0.11.2.md §4), one
//! per observer and origin: phi is the time since the last heartbeat
//! increase over the mean interval between increases, the mean smoothed
//! by a prior of 5 × `initial_interval`; above the threshold, or with
//! fewer than two heartbeats seen, the origin is dead. Heartbeats arrive
//! through any relay, so the rate it tunes to drops when a partition cuts
//! relays: a peer still reachable can then look dead for a while.

use std::collections::VecDeque;

/// chitchat's `max_interval`: longer gaps are not samples.
const MAX_INTERVAL_MS: u64 = 10_000;
/// chitchat's `sampling_window_size` is 1000; 200 keeps memory small at
/// 50 hosts and still makes the prior negligible after warm-up.
const WINDOW: usize = 200;
const PRIOR_WEIGHT: u64 = 5;

#[derive(Debug, Clone, Default)]
pub struct Detector {
    last: Option<u64>,
    intervals: VecDeque<u32>,
    sum: u64,
}

impl Detector {
    pub fn beat(&mut self, now: u64) {
        if let Some(last) = self.last {
            let gap = now - last;
            if gap <= MAX_INTERVAL_MS {
                self.intervals.push_back(gap as u32);
                self.sum += gap;
                if self.intervals.len() > WINDOW {
                    self.sum -= u64::from(self.intervals.pop_front().unwrap_or(0));
                }
            }
        }
        self.last = Some(now);
    }

    pub fn live(&self, now: u64, phi: f64, initial_ms: u64) -> bool {
        let Some(last) = self.last else { return false };
        if self.intervals.is_empty() {
            return false;
        }
        let n = self.intervals.len() as u64;
        let mean = (self.sum + PRIOR_WEIGHT * initial_ms) as f64 / (n + PRIOR_WEIGHT) as f64;
        (now - last) as f64 <= phi * mean.max(1.0)
    }
}
