//! The values crossing the service machine's boundary: what the driver
//! reports ([`ExitReason`]), what it must do ([`Action`]) and what it may
//! log or record ([`Event`]).
//!
//! Plain data: no I/O here.

use std::fmt;
use std::time::Duration;

use super::probe::ProbeKind;

/// How a service's process ended, as the driver saw it (`waitpid`, the
/// cgroup's OOM counter, or a failed spawn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Killed by the OOM killer (the driver decides, e.g. from the cgroup's
    /// `memory.events` `oom_kill`).
    Oom,
    /// The process could not be started.
    SpawnFailed(String),
}

impl fmt::Display for ExitReason {
    /// The reason text shown in `last_reason`: "exit 1", "signal 9",
    /// "OOM", "spawn failed: ...".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exit {code}"),
            ExitReason::Signal(sig) => write!(f, "signal {sig}"),
            ExitReason::Oom => f.write_str("OOM"),
            ExitReason::SpawnFailed(why) => write!(f, "spawn failed: {why}"),
        }
    }
}

/// What the driver must do next, from `ServiceMachine::poll_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the service's process (in its own process group and cgroup),
    /// then report `handle_spawned` or `handle_spawn_failed`.
    Spawn,
    /// SIGTERM the service's process group.
    Terminate,
    /// SIGKILL the service's process group (or kill its cgroup).
    Kill,
    /// Run this probe now (spec from `ServiceMachine::probe_spec`), cut it
    /// off at its timeout as a failure, and report `handle_probe`.
    RunProbe(ProbeKind),
}

/// Something worth logging or recording, from `ServiceMachine::poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The process ended (requested or not); `reason` as in `last_reason`.
    Exited { reason: String },
    /// Startup passed (or there is no startup probe): now `Running`.
    Running,
    /// `ready()` became true.
    Ready,
    /// `ready()` became false, and why.
    NotReady { detail: String },
    /// The startup probe reached its failure threshold; the process is
    /// being stopped and this counts as a failure.
    StartupFailed { detail: String },
    /// The liveness probe reached its failure threshold; the process is
    /// being stopped and this counts as a failure.
    LivenessFailed { detail: String },
    /// The service will be spawned again after `delay` (zero for a manual
    /// restart).
    Restarting { reason: String, delay: Duration },
    /// More than `max_failures` failures within the window: now `Failed`,
    /// no restarts until a manual start or restart.
    BreakerTripped { failures: u32 },
    /// Now `Stopped` (by request, or the restart policy says not to
    /// restart).
    Stopped,
}
