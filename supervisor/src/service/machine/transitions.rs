//! The service machine's private transitions (spawn, enter running, begin
//! a stop, apply the restart policy, announce readiness, re-arm probe
//! timers), shared by its public methods in `mod.rs`.
//!
//! Pure: no I/O, no clock reads.

use std::time::Instant;

use sc_protocol::{RestartPolicy, ServiceState};

use super::{Intent, Proc, ServiceMachine};
use crate::service::event::{Action, Event};
use crate::service::probe::{ProbeKind, ProbeTracker};
use crate::service::timer::Timer;

impl ServiceMachine {
    pub(super) fn spawn(&mut self) {
        self.timers.stop(Timer::Backoff);
        self.intent = Intent::None;
        self.state = ServiceState::Starting;
        self.proc = Proc::Spawning;
        self.actions.push_back(Action::Spawn);
    }

    pub(super) fn enter_running(&mut self, now: Instant) {
        self.state = ServiceState::Running;
        self.running_at = Some(now);
        // Initial delays count from the spawn, as kubelet's do.
        let since = self.running_since().unwrap_or(now);
        for kind in [ProbeKind::Readiness, ProbeKind::Liveness] {
            self.probes[kind.index()] =
                self.config.probe(kind).map(|s| ProbeTracker::new(s, since));
        }
        self.events.push_back(Event::Running);
        self.announce_ready("");
    }

    pub(super) fn enter_stopped(&mut self) {
        self.state = ServiceState::Stopped;
        self.events.push_back(Event::Stopped);
    }

    /// Stop probing, and SIGTERM the process (or, while it is still being
    /// spawned, as soon as it is up).
    pub(super) fn begin_stop(&mut self, now: Instant, intent: Intent, not_ready: &str) {
        self.intent = intent;
        self.state = ServiceState::Stopping;
        self.probes = [None, None, None];
        if matches!(self.proc, Proc::Up { .. }) {
            self.send_terminate(now);
        }
        self.announce_ready(not_ready);
        self.sync_probe_timers();
    }

    pub(super) fn send_terminate(&mut self, now: Instant) {
        self.actions.push_back(Action::Terminate);
        self.timers
            .set(Timer::StopGrace, now.checked_add(self.config.stop_grace));
    }

    /// The process ended unrequested (or was killed for a probe): apply the
    /// restart policy, the breaker and the backoff.
    pub(super) fn fail(&mut self, now: Instant, reason: String, clean_exit: bool) {
        self.last_reason = Some(reason.clone());
        let restart = match self.config.restart.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !clean_exit,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.enter_stopped();
        } else if self.breaker.record_failure(now) {
            self.state = ServiceState::Failed;
            self.events.push_back(Event::BreakerTripped {
                failures: self.breaker.failures_in_window(now),
            });
        } else {
            let delay = self.backoff.next_delay();
            self.state = ServiceState::Backoff;
            self.timers.set(Timer::Backoff, now.checked_add(delay));
            self.events.push_back(Event::Restarting { reason, delay });
        }
    }

    pub(super) fn announce_ready(&mut self, detail: &str) {
        let ready = self.ready();
        if ready != self.announced_ready {
            self.announced_ready = ready;
            self.events.push_back(if ready {
                Event::Ready
            } else {
                Event::NotReady {
                    detail: detail.to_string(),
                }
            });
        }
    }

    pub(super) fn sync_probe_timers(&mut self) {
        for kind in ProbeKind::ALL {
            let due = self.probes[kind.index()]
                .as_ref()
                .and_then(ProbeTracker::next_due);
            self.timers.set(Timer::Probe(kind), due);
        }
    }
}
