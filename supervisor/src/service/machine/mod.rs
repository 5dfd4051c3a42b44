//! [`ServiceMachine`]: one service's lifecycle — start, probes, stop,
//! restart policy, backoff and the crash-loop breaker — as a sans-IO state
//! machine. The public methods (getters, commands, inputs, outputs) are
//! here; the private transitions they share are in `transitions.rs`.
//!
//! Pure: no I/O, no clock reads, no processes, no tokio. Every input takes
//! `now`; outputs are [`Action`]s, [`Event`]s and the next timer deadline.

mod transitions;

use std::collections::VecDeque;
use std::mem;
use std::time::{Duration, Instant};

use sc_protocol::{ProbeSpec, ServiceState};

use super::backoff::{Backoff, CrashLoopBreaker};
use super::config::MachineConfig;
use super::event::{Action, Event, ExitReason};
use super::probe::{ProbeKind, ProbeResult, ProbeTracker, ProbeTransition};
use super::timer::{Timer, TimerTable};

/// The service's process, as far as the machine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proc {
    None,
    /// `Action::Spawn` emitted; no `handle_spawned` yet.
    Spawning,
    Up {
        since: Instant,
    },
}

/// Why the process is being stopped; decides what its exit means.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Intent {
    /// Not being stopped: an exit is unrequested.
    #[default]
    None,
    /// `stop`: end in `Stopped`, no failure.
    Stop,
    /// `restart` (or `start` while stopping): spawn again at once.
    Restart,
    /// A startup or liveness probe failed: a failure with this reason.
    Kill { reason: String },
}

/// One service's lifecycle. See the [module docs](super) for the driving
/// contract.
///
/// Method families (as quinn's `Connection`):
/// - getters: [`state`](Self::state), [`ready`](Self::ready),
///   [`restarts`](Self::restarts), [`last_reason`](Self::last_reason),
///   [`running_since`](Self::running_since), [`next_start`](Self::next_start),
///   [`probe_result`](Self::probe_result), [`probe_spec`](Self::probe_spec),
///   [`timer`](Self::timer);
/// - commands: [`start`](Self::start), [`stop`](Self::stop),
///   [`restart`](Self::restart);
/// - inputs: [`handle_spawned`](Self::handle_spawned),
///   [`handle_spawn_failed`](Self::handle_spawn_failed),
///   [`handle_exit`](Self::handle_exit), [`probe_started`](Self::probe_started),
///   [`handle_probe`](Self::handle_probe), [`handle_timeout`](Self::handle_timeout);
/// - outputs: [`poll_action`](Self::poll_action),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
///
/// Inputs that do not fit the current state (an exit with no process, a
/// probe result nobody asked for) are ignored.
#[derive(Debug, Clone)]
pub struct ServiceMachine {
    config: MachineConfig,
    state: ServiceState,
    proc: Proc,
    intent: Intent,
    /// When the current process entered `Running` (for the backoff reset).
    running_at: Option<Instant>,
    /// Active probes, by `ProbeKind::index`.
    probes: [Option<ProbeTracker>; 3],
    timers: TimerTable,
    backoff: Backoff,
    breaker: CrashLoopBreaker,
    restarts: u32,
    last_reason: Option<String>,
    /// `ready()` as last announced with `Ready`/`NotReady`.
    announced_ready: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl ServiceMachine {
    /// A `Stopped` service; call [`start`](Self::start) to run it.
    pub fn new(config: MachineConfig) -> ServiceMachine {
        ServiceMachine {
            backoff: Backoff::new(&config.restart),
            breaker: CrashLoopBreaker::new(&config.restart),
            config,
            state: ServiceState::Stopped,
            proc: Proc::None,
            intent: Intent::None,
            running_at: None,
            probes: [None, None, None],
            timers: TimerTable::default(),
            restarts: 0,
            last_reason: None,
            announced_ready: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    pub fn state(&self) -> ServiceState {
        self.state
    }

    /// `Running` (so startup passed) and the readiness probe's result is
    /// `Success`, or there is no readiness probe.
    pub fn ready(&self) -> bool {
        self.state == ServiceState::Running
            && matches!(self.proc, Proc::Up { .. })
            && match &self.probes[ProbeKind::Readiness.index()] {
                Some(p) => p.result() == ProbeResult::Success,
                None => self.config.readiness.is_none(),
            }
    }

    /// Automatic restarts (backoff expiries) so far; manual starts and
    /// restarts do not count.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Why the process last ended or was restarted: "exit 1", "signal 9",
    /// "OOM", "liveness probe failed: ...", "manual restart", "stopped".
    pub fn last_reason(&self) -> Option<&str> {
        self.last_reason.as_deref()
    }

    /// When the current process was spawned (its uptime's start), while
    /// there is one (`Starting` after spawn, `Running`, `Stopping`).
    pub fn running_since(&self) -> Option<Instant> {
        match self.proc {
            Proc::Up { since } => Some(since),
            _ => None,
        }
    }

    /// In `Backoff`: when the service will be spawned again.
    pub fn next_start(&self) -> Option<Instant> {
        (self.state == ServiceState::Backoff)
            .then(|| self.timers.get(Timer::Backoff))
            .flatten()
    }

    /// The probe's result while it is active (`None` if not configured or
    /// not running now: startup only in `Starting`, the others only in
    /// `Running`).
    pub fn probe_result(&self, kind: ProbeKind) -> Option<ProbeResult> {
        self.probes[kind.index()].as_ref().map(ProbeTracker::result)
    }

    /// What to run for [`Action::RunProbe`].
    pub fn probe_spec(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        self.config.probe(kind)
    }

    /// One timer's deadline, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    // ---- commands ----

    /// Manual or first start. From `Stopped`, `Failed` or `Backoff`: reset
    /// the breaker and backoff and spawn now. While `Stopping` by request:
    /// spawn as soon as the process has exited. Otherwise nothing.
    pub fn start(&mut self, now: Instant) {
        let _ = now; // uniform signature; spawning needs no deadline
        match self.state {
            ServiceState::Stopped | ServiceState::Failed | ServiceState::Backoff => {
                self.breaker.reset();
                self.backoff.reset();
                self.spawn();
            }
            ServiceState::Stopping if self.intent == Intent::Stop => self.intent = Intent::Restart,
            _ => {}
        }
    }

    /// SIGTERM, then SIGKILL after `stop_grace`; `Stopped` once the process
    /// has exited. From `Backoff` or `Failed`: `Stopped` at once.
    pub fn stop(&mut self, now: Instant) {
        match self.state {
            ServiceState::Stopped => {}
            ServiceState::Backoff | ServiceState::Failed => {
                self.timers.stop(Timer::Backoff);
                self.enter_stopped();
            }
            ServiceState::Starting | ServiceState::Running => {
                self.begin_stop(now, Intent::Stop, "stopping");
            }
            ServiceState::Stopping => self.intent = Intent::Stop,
        }
    }

    /// Manual restart: resets the breaker and backoff. With a process:
    /// stop it (SIGTERM, grace, SIGKILL), then spawn at once, no backoff.
    /// Without (`Stopped`, `Failed`, `Backoff`): spawn now.
    pub fn restart(&mut self, now: Instant) {
        self.breaker.reset();
        self.backoff.reset();
        let reason = "manual restart".to_string();
        self.last_reason = Some(reason.clone());
        self.events.push_back(Event::Restarting {
            reason,
            delay: Duration::ZERO,
        });
        match self.state {
            ServiceState::Stopped | ServiceState::Failed | ServiceState::Backoff => self.spawn(),
            ServiceState::Starting | ServiceState::Running => {
                self.begin_stop(now, Intent::Restart, "restarting");
            }
            ServiceState::Stopping => self.intent = Intent::Restart,
        }
    }

    // ---- inputs ----

    /// The process asked for by [`Action::Spawn`] is up.
    pub fn handle_spawned(&mut self, now: Instant) {
        if self.proc != Proc::Spawning {
            return;
        }
        self.proc = Proc::Up { since: now };
        match self.state {
            ServiceState::Starting => match &self.config.startup {
                Some(spec) => {
                    self.probes[ProbeKind::Startup.index()] = Some(ProbeTracker::new(spec, now));
                }
                None => self.enter_running(now),
            },
            // Stopped or restarted while it was being spawned.
            ServiceState::Stopping => self.send_terminate(now),
            _ => {}
        }
        self.sync_probe_timers();
    }

    /// The process asked for by [`Action::Spawn`] could not be started:
    /// handled as [`ExitReason::SpawnFailed`] (a failure).
    pub fn handle_spawn_failed(&mut self, now: Instant, reason: String) {
        if self.proc == Proc::Spawning {
            self.handle_exit(now, ExitReason::SpawnFailed(reason));
        }
    }

    /// The process ended. Call exactly once per spawned process.
    pub fn handle_exit(&mut self, now: Instant, reason: ExitReason) {
        if self.proc == Proc::None {
            return;
        }
        let text = reason.to_string();
        self.proc = Proc::None;
        self.probes = [None, None, None];
        self.timers.stop(Timer::StopGrace);
        if let Some(t0) = self.running_at.take() {
            self.backoff.ran(t0, now);
        }
        self.events.push_back(Event::Exited {
            reason: text.clone(),
        });
        // No process, so not ready: announce it before what follows.
        self.announce_ready(&text);
        match mem::take(&mut self.intent) {
            Intent::Stop => {
                self.last_reason = Some("stopped".into());
                self.enter_stopped();
            }
            Intent::Restart => self.spawn(),
            Intent::Kill { reason } => self.fail(now, reason, false),
            Intent::None => self.fail(now, text, reason == ExitReason::Code(0)),
        }
        self.sync_probe_timers();
    }

    /// The driver started the `kind` probe at `now`. Optional: the machine
    /// already marks it in flight when it emits [`Action::RunProbe`]; this
    /// restamps the start if the probe began later.
    pub fn probe_started(&mut self, now: Instant, kind: ProbeKind) {
        if let Some(p) = &mut self.probes[kind.index()] {
            p.probe_started(now);
        }
        self.sync_probe_timers();
    }

    /// The `kind` probe finished at `now` (`ok` false also for a timeout).
    /// Ignored unless that probe is active and in flight.
    pub fn handle_probe(&mut self, now: Instant, kind: ProbeKind, ok: bool, detail: String) {
        let Some(p) = &mut self.probes[kind.index()] else {
            return;
        };
        if p.in_flight_since().is_none() {
            return;
        }
        match (kind, p.record(now, ok, detail)) {
            (ProbeKind::Startup, Some(ProbeTransition::BecameSuccess)) => {
                self.probes[ProbeKind::Startup.index()] = None;
                self.enter_running(now);
            }
            (ProbeKind::Startup, Some(ProbeTransition::BecameFailure { detail })) => {
                let reason = format!("startup probe failed: {detail}");
                self.events.push_back(Event::StartupFailed { detail });
                self.begin_stop(now, Intent::Kill { reason }, "startup probe failed");
            }
            (ProbeKind::Liveness, Some(ProbeTransition::BecameFailure { detail })) => {
                let reason = format!("liveness probe failed: {detail}");
                self.events.push_back(Event::LivenessFailed { detail });
                let not_ready = reason.clone();
                self.begin_stop(now, Intent::Kill { reason }, &not_ready);
            }
            (ProbeKind::Readiness, Some(ProbeTransition::BecameFailure { detail })) => {
                self.announce_ready(&detail);
            }
            (ProbeKind::Readiness, Some(ProbeTransition::BecameSuccess)) => self.announce_ready(""),
            _ => {}
        }
        self.sync_probe_timers();
    }

    /// Fires every timer due at `now`: backoff → [`Action::Spawn`]
    /// (restarts + 1); stop grace → [`Action::Kill`]; probe due →
    /// [`Action::RunProbe`] (marked in flight).
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::VALUES {
            if !self.timers.is_expired(timer, now) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                Timer::Backoff if self.state == ServiceState::Backoff => {
                    self.restarts = self.restarts.saturating_add(1);
                    self.spawn();
                }
                Timer::StopGrace if self.state == ServiceState::Stopping => {
                    self.actions.push_back(Action::Kill);
                }
                Timer::Probe(kind) => {
                    if let Some(p) = &mut self.probes[kind.index()] {
                        p.probe_started(now);
                        self.actions.push_back(Action::RunProbe(kind));
                    }
                }
                _ => {}
            }
        }
        self.sync_probe_timers();
    }

    // ---- outputs ----

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event to log or record.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (may be
    /// in the past: call it now). `None`: no timer armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }
}
