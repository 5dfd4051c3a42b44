//! Restart pacing: [`Backoff`] (how long to wait before the next restart)
//! and [`CrashLoopBreaker`] (when to stop restarting altogether).
//!
//! Pure: no I/O, no clock reads; every instant is an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sc_protocol::RestartSpec;

/// Exponential restart delay: before restart number k (after k consecutive
/// failures) wait `initial × 2^(k−1)`, capped at `max`. A run of at least
/// `reset_after` (reported through [`ran`](Self::ran)) starts the sequence
/// over at `initial`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(spec: &RestartSpec) -> Backoff {
        Backoff {
            initial: Duration::from_millis(spec.backoff_initial_ms),
            max: Duration::from_millis(spec.backoff_max_ms),
            reset_after: Duration::from_millis(spec.reset_after_ms),
            failures: 0,
        }
    }

    /// The delay before restart number `k` (k ≥ 1; 0 is treated as 1).
    pub fn delay_for(&self, k: u32) -> Duration {
        let mut delay = self.initial.min(self.max);
        // At most ~100 doublings of a non-zero Duration reach any cap.
        for _ in 1..k {
            if delay >= self.max || delay.is_zero() {
                break;
            }
            delay = delay.saturating_mul(2).min(self.max);
        }
        delay
    }

    /// Counts one more consecutive failure and returns the delay before the
    /// restart that follows it.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay_for(self.failures)
    }

    /// The service ran continuously from `from` to `to`; if that is at
    /// least `reset_after`, the next delay is `initial` again. Returns
    /// whether it reset.
    pub fn ran(&mut self, from: Instant, to: Instant) -> bool {
        let reset = to.saturating_duration_since(from) >= self.reset_after;
        if reset {
            self.failures = 0;
        }
        reset
    }

    /// Start over at `initial` (manual start or restart).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The crash-loop breaker: failure instants in a sliding window of
/// `failure_window`; *more than* `max_failures` of them within the window
/// trips it. A failure at `t` is in the window at `now` while
/// `now − t < failure_window`. Once tripped it stays tripped until
/// [`reset`](Self::reset) (`sc service restart`).
#[derive(Debug, Clone)]
pub struct CrashLoopBreaker {
    max_failures: u32,
    window: Duration,
    /// Oldest first; at most `max_failures + 1` kept.
    failures: VecDeque<Instant>,
    tripped: bool,
}

impl CrashLoopBreaker {
    pub fn new(spec: &RestartSpec) -> CrashLoopBreaker {
        CrashLoopBreaker {
            max_failures: spec.max_failures,
            window: Duration::from_millis(spec.failure_window_ms),
            failures: VecDeque::new(),
            tripped: false,
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&t) = self.failures.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.failures.pop_front();
            } else {
                break;
            }
        }
    }

    /// Counts a failure at `now`; returns whether the breaker is (now)
    /// tripped.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        self.prune(now);
        self.failures.push_back(now);
        let max = usize::try_from(self.max_failures).unwrap_or(usize::MAX);
        while self.failures.len() > max.saturating_add(1) {
            self.failures.pop_front();
        }
        if self.failures.len() > max {
            self.tripped = true;
        }
        self.tripped
    }

    /// Failures within the window at `now`.
    pub fn failures_in_window(&self, now: Instant) -> u32 {
        let n = self
            .failures
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < self.window)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped
    }

    /// Forget every failure and close the breaker.
    pub fn reset(&mut self) {
        self.failures.clear();
        self.tripped = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_protocol::RestartPolicy;

    fn spec(
        initial: u64,
        max: u64,
        reset_after: u64,
        max_failures: u32,
        window: u64,
    ) -> RestartSpec {
        RestartSpec {
            policy: RestartPolicy::Always,
            backoff_initial_ms: initial,
            backoff_max_ms: max,
            reset_after_ms: reset_after,
            max_failures,
            failure_window_ms: window,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        // (initial, max, delays for failures 1, 2, 3, ...)
        let cases: &[(u64, u64, &[u64])] = &[
            (
                1_000,
                300_000,
                &[
                    1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                    300_000,
                ],
            ),
            (100, 500, &[100, 200, 400, 500, 500]),
            (1_000, 1_000, &[1_000, 1_000]),
            (0, 1_000, &[0, 0, 0]),
            // A cap below the initial delay wins.
            (5_000, 2_000, &[2_000, 2_000]),
        ];
        for &(initial, max, want) in cases {
            let mut b = Backoff::new(&spec(initial, max, 600_000, 5, 600_000));
            let got: Vec<u64> = want
                .iter()
                .map(|_| b.next_delay().as_millis() as u64)
                .collect();
            assert_eq!(got, want, "initial {initial} max {max}");
            assert_eq!(b.failures() as usize, want.len());
        }
        let b = Backoff::new(&spec(1, u64::MAX, 1, 1, 1));
        assert_eq!(b.delay_for(0), ms(1));
        assert_eq!(b.delay_for(u32::MAX), ms(u64::MAX));
    }

    #[test]
    fn backoff_resets_after_a_long_run() {
        let t0 = Instant::now();
        let mut b = Backoff::new(&spec(1_000, 300_000, 600_000, 5, 600_000));
        assert_eq!(b.next_delay(), ms(1_000));
        assert_eq!(b.next_delay(), ms(2_000));
        // A short run keeps counting.
        assert!(!b.ran(t0, t0 + ms(599_999)));
        assert_eq!(b.next_delay(), ms(4_000));
        // A run of reset_after or more starts over.
        assert!(b.ran(t0, t0 + ms(600_000)));
        assert_eq!(b.next_delay(), ms(1_000));
        assert_eq!(b.next_delay(), ms(2_000));
        b.reset();
        assert_eq!(b.next_delay(), ms(1_000));
    }

    #[test]
    fn breaker_trips_on_one_more_than_max_within_window() {
        // (max_failures, window, failure times (ms), tripped after each)
        let cases: &[(u32, u64, &[u64], &[bool])] = &[
            (
                5,
                600_000,
                &[0, 1, 2, 3, 4, 5],
                &[false, false, false, false, false, true],
            ),
            // Spread out: never more than 5 within any 10 minutes.
            (
                5,
                600_000,
                &[0, 200_000, 400_000, 600_000, 800_000, 1_000_000, 1_200_000],
                &[false; 7],
            ),
            // Exactly the window apart: the old failure has left it.
            (1, 1_000, &[0, 1_000, 2_000], &[false, false, false]),
            (1, 1_000, &[0, 999], &[false, true]),
            (
                2,
                1_000,
                &[0, 600, 1_100, 1_500],
                &[false, false, false, true],
            ),
            (0, 1_000, &[0], &[true]),
        ];
        let t0 = Instant::now();
        for (i, &(max, window, times, want)) in cases.iter().enumerate() {
            let mut br = CrashLoopBreaker::new(&spec(1_000, 1_000, 1_000, max, window));
            for (j, (&t, &w)) in times.iter().zip(want).enumerate() {
                assert_eq!(br.record_failure(t0 + ms(t)), w, "case {i} failure {j}");
                assert_eq!(br.is_tripped(), w);
            }
        }
    }

    #[test]
    fn breaker_counts_and_resets() {
        let t0 = Instant::now();
        let mut br = CrashLoopBreaker::new(&spec(1_000, 1_000, 1_000, 2, 1_000));
        br.record_failure(t0);
        br.record_failure(t0 + ms(500));
        assert_eq!(br.failures_in_window(t0 + ms(500)), 2);
        assert_eq!(br.failures_in_window(t0 + ms(1_000)), 1);
        assert!(br.record_failure(t0 + ms(900)));
        // Tripped is sticky, even once the window has moved on.
        assert!(br.record_failure(t0 + ms(10_000)));
        br.reset();
        assert!(!br.is_tripped());
        assert_eq!(br.failures_in_window(t0 + ms(10_000)), 0);
        assert!(!br.record_failure(t0 + ms(10_001)));
    }
}
