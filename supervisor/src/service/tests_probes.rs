//! Probe-driven tests for [`ServiceMachine`] on a virtual clock: startup
//! gating, readiness flips, liveness and startup failures. Pure and
//! instant.

use std::time::Duration;

use sc_protocol::{RestartPolicy, ServiceState};

use super::tests::{Sim, probe, restart};
use super::*;

impl Sim {
    /// Fire timers until the `kind` probe is asked for, answering any other
    /// probe `ok`; then answer `kind` with `ok`/`detail` (after 10 ms) and
    /// return the events.
    fn answer(&mut self, kind: ProbeKind, ok: bool, detail: &str) -> Vec<Event> {
        for _ in 0..100 {
            let mut found = false;
            for action in self.step() {
                match action {
                    Action::RunProbe(k) if k == kind => found = true,
                    Action::RunProbe(k) => self.m.handle_probe(self.now, k, true, "ok".into()),
                    other => panic!("unexpected {other:?}"),
                }
            }
            if found {
                self.advance(10);
                self.m.handle_probe(self.now, kind, ok, detail.into());
                return self.events();
            }
        }
        panic!("{kind} probe never ran");
    }
}

fn started(config: MachineConfig) -> Sim {
    let mut sim = Sim::new(config);
    sim.m.start(sim.now);
    assert_eq!(sim.actions(), [Action::Spawn]);
    sim.spawned();
    sim
}

fn not_ready(detail: &str) -> Event {
    Event::NotReady {
        detail: detail.into(),
    }
}

#[test]
fn startup_probe_gates_readiness_and_liveness() {
    let mut config = MachineConfig::new(restart(RestartPolicy::Always, 5));
    config.startup = Some(probe(0, 1, 3));
    config.readiness = Some(probe(2_000, 1, 3));
    config.liveness = Some(probe(0, 1, 3));
    let mut sim = started(config);
    let t0 = sim.now;
    assert_eq!(sim.m.state(), ServiceState::Starting);
    assert_eq!(sim.events(), []);
    assert_eq!(
        sim.m.probe_result(ProbeKind::Startup),
        Some(ProbeResult::Unknown)
    );
    assert_eq!(sim.m.probe_result(ProbeKind::Readiness), None);
    assert_eq!(sim.m.timer(Timer::Probe(ProbeKind::Startup)), Some(t0));
    assert_eq!(sim.m.timer(Timer::Probe(ProbeKind::Readiness)), None);
    assert_eq!(sim.m.timer(Timer::Probe(ProbeKind::Liveness)), None);

    // Only the startup probe runs while Starting.
    assert_eq!(sim.step(), [Action::RunProbe(ProbeKind::Startup)]);
    assert_eq!(sim.m.poll_timeout(), None, "nothing due while in flight");
    // A readiness result nobody asked for is ignored.
    sim.m
        .handle_probe(sim.now, ProbeKind::Readiness, true, "ok".into());
    sim.advance(100);
    sim.m.handle_probe(
        sim.now,
        ProbeKind::Startup,
        false,
        "connection refused".into(),
    );
    assert_eq!(sim.m.state(), ServiceState::Starting);
    assert!(!sim.m.ready());
    assert_eq!(
        sim.m.poll_timeout(),
        Some(t0 + Duration::from_millis(1_100))
    );
    assert_eq!(sim.step(), [Action::RunProbe(ProbeKind::Startup)]);
    sim.advance(50);
    sim.m
        .handle_probe(sim.now, ProbeKind::Startup, true, "HTTP 200".into());
    assert_eq!(sim.m.state(), ServiceState::Running);
    assert_eq!(
        sim.m.probe_result(ProbeKind::Startup),
        None,
        "startup stops once passed"
    );
    assert_eq!(sim.events(), [Event::Running]);
    assert!(!sim.m.ready(), "readiness has not passed yet");

    // Initial delays count from the spawn: liveness (no delay) is due at
    // once, readiness at spawn + 2 s.
    assert_eq!(sim.m.timer(Timer::Probe(ProbeKind::Liveness)), Some(t0));
    assert_eq!(
        sim.m.timer(Timer::Probe(ProbeKind::Readiness)),
        Some(t0 + Duration::from_secs(2))
    );
    assert_eq!(sim.step(), [Action::RunProbe(ProbeKind::Liveness)]);
    assert_eq!(sim.elapsed_ms(), 1_150);
    assert_eq!(
        sim.answer(ProbeKind::Readiness, true, "HTTP 200"),
        [Event::Ready]
    );
    assert_eq!(sim.elapsed_ms(), 2_010);
    assert!(sim.m.ready());
}

#[test]
fn readiness_flips_ready_without_restarting() {
    let mut config = MachineConfig::new(restart(RestartPolicy::Always, 5));
    config.readiness = Some(probe(0, 1, 1));
    let mut sim = started(config);
    assert_eq!(sim.m.state(), ServiceState::Running);
    assert_eq!(sim.events(), [Event::Running]);
    assert!(!sim.m.ready());
    // (outcome, events, ready after)
    let cases: &[(bool, &str, &[Event], bool)] = &[
        (false, "HTTP 503", &[], false),
        (true, "HTTP 200", &[Event::Ready], true),
        (true, "HTTP 200", &[], true),
        (
            false,
            "HTTP 503",
            &[Event::NotReady {
                detail: String::new(),
            }],
            false,
        ),
        (false, "timed out", &[], false),
        (true, "HTTP 204", &[Event::Ready], true),
    ];
    for (i, &(ok, detail, want, ready)) in cases.iter().enumerate() {
        let want: Vec<Event> = want
            .iter()
            .map(|e| match e {
                Event::NotReady { .. } => not_ready(detail),
                e => e.clone(),
            })
            .collect();
        assert_eq!(
            sim.answer(ProbeKind::Readiness, ok, detail),
            want,
            "case {i}"
        );
        assert_eq!(sim.m.ready(), ready, "case {i}");
        assert_eq!(sim.m.state(), ServiceState::Running);
        assert_eq!(sim.actions(), []);
    }
}

#[test]
fn liveness_failure_kills_and_restarts_with_the_reason() {
    use ServiceState::{Backoff, Stopped};
    for (policy, after) in [
        (RestartPolicy::Always, Backoff),
        (RestartPolicy::Never, Stopped),
    ] {
        let mut config = MachineConfig::new(restart(policy, 5));
        config.liveness = Some(probe(0, 1, 2));
        config.stop_grace = Duration::from_secs(3);
        let mut sim = started(config);
        assert_eq!(sim.events(), [Event::Running, Event::Ready]);
        assert_eq!(sim.answer(ProbeKind::Liveness, false, "HTTP 500"), []);
        assert_eq!(sim.m.state(), ServiceState::Running);
        let reason = "liveness probe failed: HTTP 500";
        assert_eq!(
            sim.answer(ProbeKind::Liveness, false, "HTTP 500"),
            [
                Event::LivenessFailed {
                    detail: "HTTP 500".into()
                },
                not_ready(reason)
            ]
        );
        assert_eq!(sim.actions(), [Action::Terminate]);
        assert_eq!(sim.m.state(), ServiceState::Stopping);
        assert_eq!(
            sim.m.probe_result(ProbeKind::Liveness),
            None,
            "probing stops"
        );
        // It ignores SIGTERM: SIGKILL after the grace.
        assert_eq!(sim.step(), [Action::Kill]);
        sim.exit(ExitReason::Signal(9));
        assert_eq!(sim.m.state(), after, "{policy}");
        assert_eq!(sim.m.last_reason(), Some(reason));
        let events = sim.events();
        assert_eq!(
            events[0],
            Event::Exited {
                reason: "signal 9".into()
            }
        );
        if after == Backoff {
            assert_eq!(
                events[1],
                Event::Restarting {
                    reason: reason.into(),
                    delay: Duration::from_secs(1)
                }
            );
            assert_eq!(sim.step(), [Action::Spawn]);
            assert_eq!(sim.m.restarts(), 1);
        }
    }
}

#[test]
fn startup_failure_kills_and_counts_as_a_failure() {
    let mut config = MachineConfig::new(restart(RestartPolicy::OnFailure, 5));
    config.startup = Some(probe(0, 1, 3));
    config.liveness = Some(probe(0, 1, 1));
    let mut sim = started(config);
    for i in 0..3 {
        assert_eq!(
            sim.step(),
            [Action::RunProbe(ProbeKind::Startup)],
            "attempt {i}"
        );
        sim.advance(500);
        sim.m.handle_probe(
            sim.now,
            ProbeKind::Startup,
            false,
            "connection refused".into(),
        );
    }
    assert_eq!(
        sim.events(),
        [Event::StartupFailed {
            detail: "connection refused".into()
        }]
    );
    assert_eq!(sim.actions(), [Action::Terminate]);
    assert_eq!(sim.m.state(), ServiceState::Stopping);
    // Exits on SIGTERM with status 0: still a failure, whatever the policy.
    sim.advance(100);
    sim.exit(ExitReason::Code(0));
    assert_eq!(sim.m.state(), ServiceState::Backoff);
    assert_eq!(
        sim.m.last_reason(),
        Some("startup probe failed: connection refused")
    );
    assert_eq!(sim.m.timer(Timer::StopGrace), None);
}

#[test]
fn a_result_from_before_a_restart_is_ignored() {
    let mut config = MachineConfig::new(restart(RestartPolicy::Always, 5));
    config.liveness = Some(probe(0, 1, 1));
    let mut sim = started(config);
    assert_eq!(sim.step(), [Action::RunProbe(ProbeKind::Liveness)]);
    sim.exit(ExitReason::Code(1));
    assert_eq!(sim.step(), [Action::Spawn]);
    sim.spawned();
    // The old process's probe reports late: the new one is not in flight.
    sim.m
        .handle_probe(sim.now, ProbeKind::Liveness, false, "late".into());
    assert_eq!(sim.m.state(), ServiceState::Running);
    assert_eq!(
        sim.m.probe_result(ProbeKind::Liveness),
        Some(ProbeResult::Unknown)
    );
    assert_eq!(
        sim.m.timer(Timer::Probe(ProbeKind::Liveness)),
        Some(sim.now)
    );
}
