//! Services' restart and health logic as a sans-IO state machine, after
//! quinn-proto: deterministic, no I/O, no clock reads, no processes, no
//! tokio. Time is always an argument (`now: Instant`); a small driver in the
//! daemon owns the tokio timer, `waitpid`, signals and the HTTP/TCP/exec
//! probes, and feeds what happens back in.
//!
//! Layout: [`machine`] ([`ServiceMachine`], one service's lifecycle; its
//! private transitions in `machine/transitions.rs`), [`config`]
//! ([`MachineConfig`]), [`probe`] ([`ProbeTracker`], kubelet-style probe
//! schedule and thresholds), [`backoff`] ([`Backoff`] and
//! [`CrashLoopBreaker`]), [`timer`] (the named [`Timer`]s), [`event`]
//! ([`Action`], [`Event`], [`ExitReason`]). Tests: `tests.rs` (lifecycle)
//! and `tests_probes.rs` (probes), on a virtual clock.
//!
//! # Driving a [`ServiceMachine`]
//!
//! 1. `ServiceMachine::new(MachineConfig::from(&spec))`, then `start(now)`.
//! 2. After *every* command (`start`, `stop`, `restart`) or input
//!    (`handle_*`, `probe_started`):
//!    1. drain [`poll_action`](ServiceMachine::poll_action) and perform
//!       each action in order:
//!       - [`Action::Spawn`]: start the process, then call
//!         `handle_spawned(now)` or `handle_spawn_failed(now, why)`;
//!       - [`Action::Terminate`] / [`Action::Kill`]: SIGTERM / SIGKILL the
//!         process group;
//!       - [`Action::RunProbe`]`(kind)`: start that probe (spec from
//!         `probe_spec(kind)`), optionally `probe_started(now, kind)` if it
//!         starts later than now; when it finishes or overruns its
//!         `timeout_ms` (a failure), `handle_probe(now, kind, ok, detail)`;
//!    2. drain [`poll_event`](ServiceMachine::poll_event) and log or record
//!       each event;
//!    3. re-arm the driver's single timer at
//!       [`poll_timeout`](ServiceMachine::poll_timeout) (`None`: disarm; a
//!       past instant: fire at once). When it fires, call
//!       `handle_timeout(now)` and go to 2.
//!
//!    Calls made while performing actions (`handle_spawned`, ...) are
//!    inputs too: keep draining until both queues are empty, then re-arm.
//! 3. When the process exits (`waitpid`, or the cgroup emptied), call
//!    `handle_exit(now, reason)` once — whether or not the machine asked
//!    for it; it knows from its own state whether the exit was requested.
//! 4. A probe result for a process that has since exited must be dropped
//!    by the driver; the machine also ignores a result for a probe it is
//!    not waiting on.
//!
//! # Decisions
//!
//! - A failing liveness or startup probe stops the process like `stop`
//!   does (SIGTERM, then SIGKILL after `stop_grace`, state `Stopping`),
//!   as kubelet does, then counts as a failure with reason "liveness probe
//!   failed: ..." / "startup probe failed: ...".
//! - Every unrequested exit whose policy restarts it counts in the breaker
//!   and the backoff, exit 0 under `always` included.
//! - The backoff resets when a process that was `Running` (startup passed)
//!   for at least `reset_after` exits; its failure still counts in the
//!   breaker window.
//! - Any manual `start` or `restart` resets the breaker and the backoff;
//!   `restarts()` counts only automatic restarts.

pub mod backoff;
pub mod config;
pub mod event;
pub mod machine;
pub mod probe;
pub mod timer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_probes;

pub use backoff::{Backoff, CrashLoopBreaker};
pub use config::MachineConfig;
pub use event::{Action, Event, ExitReason};
pub use machine::ServiceMachine;
pub use probe::{ProbeKind, ProbeResult, ProbeTracker, ProbeTransition};
pub use timer::Timer;
