//! [`ProbeTracker`]: the bookkeeping of one configured probe (startup,
//! readiness or liveness) — when it is next due and what its consecutive
//! outcomes add up to, with kubelet's semantics.
//!
//! Pure: no I/O, no clock reads. Every instant is an argument. The driver
//! runs the probe (HTTP, TCP or exec), enforces its timeout (a probe that
//! overruns it is reported as a failure) and reports the outcome here.

use std::fmt;
use std::time::{Duration, Instant};

use sc_protocol::ProbeSpec;

/// Which of a service's three probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Gates the other two: the service is `Starting` until it passes.
    Startup,
    /// Decides `ready`; never restarts anything.
    Readiness,
    /// Failing it kills and restarts the service.
    Liveness,
}

impl ProbeKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Readiness,
        ProbeKind::Liveness,
    ];

    /// Position in [`ProbeKind::ALL`], for per-kind arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            ProbeKind::Startup => 0,
            ProbeKind::Readiness => 1,
            ProbeKind::Liveness => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a probe's consecutive outcomes add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeResult {
    /// Neither threshold reached yet (the initial result).
    #[default]
    Unknown,
    /// `success_threshold` consecutive successes, and not since overturned.
    Success,
    /// `failure_threshold` consecutive failures, and not since overturned.
    Failure,
}

/// A change of [`ProbeResult`], returned by [`ProbeTracker::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTransition {
    BecameSuccess,
    /// `detail` is the outcome that crossed the failure threshold.
    BecameFailure {
        detail: String,
    },
}

/// One probe's schedule and consecutive-outcome counters.
///
/// Schedule (kubelet): the first probe is due at `started +
/// initial_delay`; each later one `period` after the previous one
/// *finished* ([`record`](Self::record)). While a probe is in flight
/// ([`probe_started`](Self::probe_started) .. `record`) nothing is due.
///
/// Counting: a success resets the failure count and vice versa; the result
/// becomes `Success` at `success_threshold` consecutive successes and
/// `Failure` at `failure_threshold` consecutive failures, and otherwise
/// keeps its previous value. Thresholds of 0 count as 1.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// `None` when the deadline overflowed `Instant` (never due).
    due: Option<Instant>,
    in_flight: Option<Instant>,
    successes: u32,
    failures: u32,
    result: ProbeResult,
    last_detail: Option<String>,
}

impl ProbeTracker {
    /// A tracker for a process (or phase) that began at `started`.
    pub fn new(spec: &ProbeSpec, started: Instant) -> ProbeTracker {
        ProbeTracker {
            period: Duration::from_millis(spec.period_ms),
            timeout: Duration::from_millis(spec.timeout_ms),
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            due: started.checked_add(Duration::from_millis(spec.initial_delay_ms)),
            in_flight: None,
            successes: 0,
            failures: 0,
            result: ProbeResult::Unknown,
            last_detail: None,
        }
    }

    /// When the next probe should start; `None` while one is in flight.
    /// May be in the past (then it is due now).
    pub fn next_due(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            None
        } else {
            self.due
        }
    }

    /// When the probe now in flight started, if one is.
    pub fn in_flight_since(&self) -> Option<Instant> {
        self.in_flight
    }

    /// How long the driver lets one probe run before reporting a failure.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A probe started at `now`: nothing is due until it is recorded.
    pub fn probe_started(&mut self, now: Instant) {
        self.in_flight = Some(now);
    }

    /// A probe finished at `now` with outcome `ok` (`detail` says what was
    /// seen: "HTTP 200", "connection refused", "timed out after 1s"...).
    /// Schedules the next probe at `now + period` and returns the result's
    /// change, if any.
    pub fn record(&mut self, now: Instant, ok: bool, detail: String) -> Option<ProbeTransition> {
        self.in_flight = None;
        self.due = now.checked_add(self.period);
        let transition =
            if ok {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                (self.successes >= self.success_threshold && self.result != ProbeResult::Success)
                    .then(|| {
                        self.result = ProbeResult::Success;
                        ProbeTransition::BecameSuccess
                    })
            } else {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                (self.failures >= self.failure_threshold && self.result != ProbeResult::Failure)
                    .then(|| {
                        self.result = ProbeResult::Failure;
                        ProbeTransition::BecameFailure {
                            detail: detail.clone(),
                        }
                    })
            };
        self.last_detail = Some(detail);
        transition
    }

    pub fn result(&self) -> ProbeResult {
        self.result
    }

    /// The detail of the last recorded outcome, success or failure.
    pub fn last_detail(&self) -> Option<&str> {
        self.last_detail.as_deref()
    }

    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_protocol::ProbeTarget;

    fn spec(delay: u64, period: u64, success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            target: ProbeTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 80,
            },
            period_ms: period,
            timeout_ms: 1_000,
            initial_delay_ms: delay,
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn thresholds() {
        use ProbeResult::{Failure as F, Success as S, Unknown as U};
        // (success_threshold, failure_threshold, outcomes, result after each)
        let cases: &[(u32, u32, &[bool], &[ProbeResult])] = &[
            (1, 3, &[true], &[S]),
            (1, 3, &[false, false, false], &[U, U, F]),
            (
                1,
                3,
                &[false, false, true, false, false, false],
                &[U, U, S, S, S, F],
            ),
            (2, 1, &[true, false, true, true], &[U, F, F, S]),
            (
                3,
                2,
                &[true, true, false, true, true, true],
                &[U, U, U, U, U, S],
            ),
            (
                1,
                2,
                &[true, false, true, false, false, true],
                &[S, S, S, S, F, S],
            ),
            // Thresholds of 0 behave as 1.
            (0, 0, &[false, true], &[F, S]),
        ];
        for (i, &(st, ft, outcomes, want)) in cases.iter().enumerate() {
            let t0 = Instant::now();
            let mut p = ProbeTracker::new(&spec(0, 10, st, ft), t0);
            assert_eq!(p.result(), U);
            let mut prev = U;
            for (j, (&ok, &w)) in outcomes.iter().zip(want).enumerate() {
                let now = t0 + ms(10 * j as u64);
                p.probe_started(now);
                let tr = p.record(now, ok, format!("probe {j}"));
                assert_eq!(p.result(), w, "case {i} step {j}");
                let want_tr = match (prev == w, w) {
                    (true, _) | (false, U) => None,
                    (false, S) => Some(ProbeTransition::BecameSuccess),
                    (false, F) => Some(ProbeTransition::BecameFailure {
                        detail: format!("probe {j}"),
                    }),
                };
                assert_eq!(tr, want_tr, "case {i} step {j}");
                assert_eq!(p.last_detail(), Some(format!("probe {j}").as_str()));
                prev = w;
            }
        }
    }

    #[test]
    fn schedule_initial_delay_then_period_after_finish() {
        let t0 = Instant::now();
        // (initial_delay, period, probe durations) → expected due instants (ms from t0)
        let cases: &[(u64, u64, &[u64], &[u64])] = &[
            (0, 10, &[0, 0, 0], &[0, 10, 20, 30]),
            (500, 100, &[0, 0], &[500, 600, 700]),
            // The period runs from when the previous probe finished.
            (0, 100, &[30, 70], &[0, 130, 300]),
            (250, 1_000, &[999], &[250, 2_249]),
        ];
        for (i, &(delay, period, durations, want)) in cases.iter().enumerate() {
            let mut p = ProbeTracker::new(&spec(delay, period, 1, 3), t0);
            assert_eq!(p.next_due(), Some(t0 + ms(want[0])), "case {i}");
            for (j, &d) in durations.iter().enumerate() {
                let start = p.next_due().unwrap();
                p.probe_started(start);
                assert_eq!(p.next_due(), None, "in flight: case {i}");
                assert_eq!(p.in_flight_since(), Some(start));
                p.record(start + ms(d), j % 2 == 0, String::new());
                assert_eq!(p.in_flight_since(), None);
                assert_eq!(
                    p.next_due(),
                    Some(t0 + ms(want[j + 1])),
                    "case {i} step {j}"
                );
            }
        }
    }

    #[test]
    fn counters_and_timeout() {
        let t0 = Instant::now();
        let mut p = ProbeTracker::new(&spec(0, 10, 1, 3), t0);
        assert_eq!(p.timeout(), ms(1_000));
        p.record(t0, false, "refused".into());
        p.record(t0, false, "refused".into());
        assert_eq!(
            (p.consecutive_successes(), p.consecutive_failures()),
            (0, 2)
        );
        p.record(t0, true, "ok".into());
        assert_eq!(
            (p.consecutive_successes(), p.consecutive_failures()),
            (1, 0)
        );
    }
}
