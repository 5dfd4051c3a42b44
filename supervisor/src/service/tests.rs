//! Lifecycle tests for [`ServiceMachine`] on a virtual clock (a base
//! `Instant` plus durations): restart policies, backoff, the breaker, stop
//! and manual restart. Probe-driven behaviour is in `tests_probes.rs`.
//! Pure and instant: nothing sleeps, nothing is spawned.

use std::time::{Duration, Instant};

use sc_protocol::{ProbeSpec, ProbeTarget, RestartPolicy, RestartSpec, ServiceState};

use super::*;

/// A machine plus a virtual clock; every call uses `now`.
pub(super) struct Sim {
    pub m: ServiceMachine,
    pub base: Instant,
    pub now: Instant,
}

impl Sim {
    pub fn new(config: MachineConfig) -> Sim {
        let base = Instant::now();
        Sim {
            m: ServiceMachine::new(config),
            base,
            now: base,
        }
    }

    /// Move the clock forward by `ms`.
    pub fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// Milliseconds since the start of the simulation.
    pub fn elapsed_ms(&self) -> u64 {
        (self.now - self.base).as_millis() as u64
    }

    pub fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.m.poll_event()).collect()
    }

    /// Jump to the next timer, fire it, and return the actions.
    pub fn step(&mut self) -> Vec<Action> {
        let t = self.m.poll_timeout().expect("a timer is armed");
        self.now = self.now.max(t);
        self.m.handle_timeout(self.now);
        self.actions()
    }

    /// Start (or restart via the backoff timer) and report the spawn.
    pub fn spawned(&mut self) {
        self.m.handle_spawned(self.now);
    }

    pub fn exit(&mut self, reason: ExitReason) {
        self.m.handle_exit(self.now, reason);
    }
}

pub(super) fn restart(policy: RestartPolicy, max_failures: u32) -> RestartSpec {
    RestartSpec {
        policy,
        backoff_initial_ms: 1_000,
        backoff_max_ms: 4_000,
        reset_after_ms: 60_000,
        max_failures,
        failure_window_ms: 600_000,
    }
}

pub(super) fn probe(initial_delay_ms: u64, success: u32, failure: u32) -> ProbeSpec {
    ProbeSpec {
        target: ProbeTarget::Http {
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/health".into(),
        },
        period_ms: 1_000,
        timeout_ms: 500,
        initial_delay_ms,
        success_threshold: success,
        failure_threshold: failure,
    }
}

fn restarting(reason: &str, ms: u64) -> Event {
    Event::Restarting {
        reason: reason.into(),
        delay: Duration::from_millis(ms),
    }
}

fn exited(reason: &str) -> Event {
    Event::Exited {
        reason: reason.into(),
    }
}

/// A running service without probes.
fn running(config: MachineConfig) -> Sim {
    let mut sim = Sim::new(config);
    sim.m.start(sim.now);
    assert_eq!(sim.actions(), [Action::Spawn]);
    assert_eq!(sim.m.state(), ServiceState::Starting);
    assert!(!sim.m.ready());
    sim.spawned();
    assert_eq!(sim.m.state(), ServiceState::Running);
    assert!(sim.m.ready());
    assert_eq!(sim.m.running_since(), Some(sim.now));
    assert_eq!(sim.events(), [Event::Running, Event::Ready]);
    sim
}

#[test]
fn crash_loop_backs_off_then_trips_the_breaker() {
    let mut sim = running(MachineConfig::new(restart(RestartPolicy::Always, 5)));
    // Delays 1, 2, 4 s, then capped at 4 s; the 6th failure within the
    // window is one more than max_failures = 5.
    for (k, delay) in [1_000, 2_000, 4_000, 4_000, 4_000].into_iter().enumerate() {
        sim.advance(100);
        sim.exit(ExitReason::Code(1));
        assert_eq!(sim.m.state(), ServiceState::Backoff);
        assert!(!sim.m.ready());
        assert_eq!(sim.m.running_since(), None);
        assert_eq!(sim.m.last_reason(), Some("exit 1"));
        let not_ready = Event::NotReady {
            detail: "exit 1".into(),
        };
        assert_eq!(
            sim.events(),
            [exited("exit 1"), not_ready, restarting("exit 1", delay)],
            "failure {}",
            k + 1
        );
        let at = sim.now + Duration::from_millis(delay);
        assert_eq!(sim.m.next_start(), Some(at));
        assert_eq!(sim.m.poll_timeout(), Some(at));
        assert_eq!(sim.step(), [Action::Spawn]);
        assert_eq!(sim.now, at);
        assert_eq!(sim.m.restarts(), k as u32 + 1);
        assert_eq!(sim.m.next_start(), None);
        sim.spawned();
        assert_eq!(sim.events(), [Event::Running, Event::Ready]);
    }
    sim.advance(100);
    sim.exit(ExitReason::Code(1));
    assert_eq!(sim.m.state(), ServiceState::Failed);
    assert_eq!(
        sim.events(),
        [
            exited("exit 1"),
            Event::NotReady {
                detail: "exit 1".into()
            },
            Event::BreakerTripped { failures: 6 },
        ]
    );
    assert_eq!(sim.m.poll_timeout(), None);
    assert_eq!(sim.m.next_start(), None);
    assert_eq!(sim.actions(), []);
    assert_eq!(sim.m.restarts(), 5);

    // A manual restart resets the breaker and the backoff.
    sim.advance(1_000);
    sim.m.restart(sim.now);
    assert_eq!(sim.actions(), [Action::Spawn]);
    assert_eq!(sim.m.state(), ServiceState::Starting);
    assert_eq!(sim.m.last_reason(), Some("manual restart"));
    assert_eq!(sim.events(), [restarting("manual restart", 0)]);
    sim.spawned();
    sim.advance(100);
    sim.exit(ExitReason::Signal(9));
    assert_eq!(sim.m.state(), ServiceState::Backoff);
    assert_eq!(sim.m.last_reason(), Some("signal 9"));
    assert!(sim.events().contains(&restarting("signal 9", 1_000)));
    assert_eq!(sim.m.restarts(), 5, "manual restarts are not counted");
}

#[test]
fn restart_policies() {
    use ExitReason::*;
    use RestartPolicy::*;
    use ServiceState::{Backoff, Stopped};
    let cases: &[(RestartPolicy, ExitReason, ServiceState, &str)] = &[
        (Never, Code(1), Stopped, "exit 1"),
        (Never, Code(0), Stopped, "exit 0"),
        (Never, Signal(9), Stopped, "signal 9"),
        (Never, Oom, Stopped, "OOM"),
        (OnFailure, Code(0), Stopped, "exit 0"),
        (OnFailure, Code(1), Backoff, "exit 1"),
        (OnFailure, Code(-1), Backoff, "exit -1"),
        (OnFailure, Signal(15), Backoff, "signal 15"),
        (OnFailure, Oom, Backoff, "OOM"),
        (Always, Code(0), Backoff, "exit 0"),
        (Always, Oom, Backoff, "OOM"),
    ];
    for (policy, reason, want, text) in cases {
        let mut sim = running(MachineConfig::new(restart(*policy, 5)));
        sim.advance(10);
        sim.exit(reason.clone());
        assert_eq!(sim.m.state(), *want, "{policy} {reason}");
        assert_eq!(sim.m.last_reason(), Some(*text));
        let events = sim.events();
        assert_eq!(events[0], exited(text));
        match want {
            Stopped => {
                assert_eq!(events.last(), Some(&Event::Stopped), "{policy} {reason}");
                assert_eq!(sim.m.poll_timeout(), None);
            }
            _ => assert_eq!(
                events.last(),
                Some(&restarting(text, 1_000)),
                "{policy} {reason}"
            ),
        }
    }
}

#[test]
fn spawn_failure_counts_as_a_failure() {
    for (policy, want) in [
        (RestartPolicy::OnFailure, ServiceState::Backoff),
        (RestartPolicy::Never, ServiceState::Stopped),
    ] {
        let mut sim = Sim::new(MachineConfig::new(restart(policy, 5)));
        sim.m.start(sim.now);
        assert_eq!(sim.actions(), [Action::Spawn]);
        sim.m
            .handle_spawn_failed(sim.now, "No such file or directory".into());
        assert_eq!(sim.m.state(), want);
        assert_eq!(
            sim.m.last_reason(),
            Some("spawn failed: No such file or directory")
        );
        // A second report (or an exit) for the same attempt is ignored.
        sim.m.handle_spawn_failed(sim.now, "again".into());
        sim.exit(ExitReason::Code(1));
        assert_eq!(sim.m.state(), want);
    }
}

#[test]
fn stop_terminates_then_kills_after_grace() {
    let mut config = MachineConfig::new(restart(RestartPolicy::Always, 5));
    config.stop_grace = Duration::from_secs(10);
    let mut sim = running(config);
    sim.advance(5_000);
    sim.m.stop(sim.now);
    assert_eq!(sim.actions(), [Action::Terminate]);
    assert_eq!(sim.m.state(), ServiceState::Stopping);
    assert!(!sim.m.ready());
    assert_eq!(
        sim.events(),
        [Event::NotReady {
            detail: "stopping".into()
        }]
    );
    assert_eq!(
        sim.m.timer(Timer::StopGrace),
        Some(sim.now + Duration::from_secs(10))
    );
    assert_eq!(sim.step(), [Action::Kill]);
    assert_eq!(sim.elapsed_ms(), 15_000);
    assert_eq!(sim.m.poll_timeout(), None);
    sim.advance(5);
    sim.exit(ExitReason::Signal(9));
    assert_eq!(sim.m.state(), ServiceState::Stopped);
    assert_eq!(sim.m.last_reason(), Some("stopped"));
    assert_eq!(sim.events(), [exited("signal 9"), Event::Stopped]);
    assert_eq!(sim.m.poll_timeout(), None);

    // Exiting within the grace: no Kill, and a start begins afresh.
    let mut sim = running(MachineConfig::new(restart(RestartPolicy::Always, 5)));
    sim.m.stop(sim.now);
    assert_eq!(sim.actions(), [Action::Terminate]);
    sim.advance(200);
    sim.exit(ExitReason::Code(0));
    assert_eq!(sim.m.state(), ServiceState::Stopped);
    assert_eq!(sim.m.poll_timeout(), None);
    sim.m.start(sim.now);
    assert_eq!(sim.actions(), [Action::Spawn]);
}

#[test]
fn stop_in_backoff_and_while_spawning() {
    let mut sim = running(MachineConfig::new(restart(RestartPolicy::Always, 5)));
    sim.exit(ExitReason::Code(1));
    assert_eq!(sim.m.state(), ServiceState::Backoff);
    sim.m.stop(sim.now);
    assert_eq!(sim.m.state(), ServiceState::Stopped);
    assert_eq!(sim.m.poll_timeout(), None);
    assert_eq!(sim.actions(), []);

    // Stopped while the spawn is under way: SIGTERM once it is up.
    sim.m.start(sim.now);
    assert_eq!(sim.actions(), [Action::Spawn]);
    sim.m.stop(sim.now);
    assert_eq!(sim.m.state(), ServiceState::Stopping);
    assert_eq!(sim.actions(), []);
    sim.spawned();
    assert_eq!(sim.actions(), [Action::Terminate]);
    sim.exit(ExitReason::Signal(15));
    assert_eq!(sim.m.state(), ServiceState::Stopped);
}

#[test]
fn manual_restart_while_running_respawns_without_backoff() {
    let mut sim = running(MachineConfig::new(restart(RestartPolicy::Always, 5)));
    sim.advance(1_000);
    sim.m.restart(sim.now);
    assert_eq!(sim.actions(), [Action::Terminate]);
    assert_eq!(sim.m.state(), ServiceState::Stopping);
    sim.advance(300);
    sim.exit(ExitReason::Signal(15));
    assert_eq!(sim.actions(), [Action::Spawn]);
    assert_eq!(sim.m.state(), ServiceState::Starting);
    assert_eq!(sim.m.poll_timeout(), None);
    assert_eq!(sim.m.last_reason(), Some("manual restart"));
    assert_eq!(sim.m.restarts(), 0);
    sim.spawned();
    assert_eq!(sim.m.state(), ServiceState::Running);

    // start() while stopping by request: spawn once it has exited.
    sim.m.stop(sim.now);
    sim.m.start(sim.now);
    assert_eq!(sim.actions(), [Action::Terminate]);
    sim.exit(ExitReason::Code(0));
    assert_eq!(sim.actions(), [Action::Spawn]);
}

#[test]
fn backoff_resets_after_a_long_run_but_the_breaker_still_counts() {
    let mut sim = running(MachineConfig::new(restart(RestartPolicy::Always, 3)));
    // (run length before the exit, delay that follows, state after)
    let cases: &[(u64, Option<u64>, ServiceState)] = &[
        (100, Some(1_000), ServiceState::Backoff),
        (100, Some(2_000), ServiceState::Backoff),
        // Ran reset_after (60 s): back to the initial delay.
        (60_000, Some(1_000), ServiceState::Backoff),
        // 4 failures within 10 min > max_failures = 3.
        (100, None, ServiceState::Failed),
    ];
    for (i, &(run, delay, state)) in cases.iter().enumerate() {
        sim.advance(run);
        sim.exit(ExitReason::Code(2));
        assert_eq!(sim.m.state(), state, "case {i}");
        let events = sim.events();
        match delay {
            Some(ms) => {
                assert_eq!(events.last(), Some(&restarting("exit 2", ms)), "case {i}");
                assert_eq!(sim.step(), [Action::Spawn]);
                sim.spawned();
            }
            None => assert_eq!(events.last(), Some(&Event::BreakerTripped { failures: 4 })),
        }
    }
}

#[test]
fn stray_inputs_are_ignored() {
    let mut sim = Sim::new(MachineConfig::new(restart(RestartPolicy::Always, 5)));
    sim.exit(ExitReason::Code(1));
    sim.spawned();
    sim.m.handle_timeout(sim.now);
    sim.m
        .handle_probe(sim.now, ProbeKind::Liveness, false, "x".into());
    sim.m.stop(sim.now);
    assert_eq!(sim.m.state(), ServiceState::Stopped);
    assert_eq!(sim.actions(), []);
    assert_eq!(sim.events(), []);
    assert_eq!(sim.m.poll_timeout(), None);
}
