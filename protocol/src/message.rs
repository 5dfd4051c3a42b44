//! Messages of the local API (CLI ↔ daemon over the Unix socket).
//!
//! One `Request` variant per verb, answered by one or more `Response`s. The
//! first request on a connection is always `Hello`; an `exec` connection then
//! stays open for the job's whole life, because the socket closing is how the
//! daemon learns that `sc exec` died.
//!
//! An `exec` runs: `Exec` (with the pid of the caller's already forked, held
//! child) → `Queued` → `Waiting`* → `Granted` (the daemon has placed the pid
//! in the job's cgroup) → the caller releases the child into `exec` →
//! `Exited` → `Finished`.
//!
//! Durations cross the wire as milliseconds already computed by the sender
//! (ages, waits), so neither side needs the other's clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Job identifier, unique per daemon state dir, never reused.
pub type JobId = u64;

/// Priority given on the command line: higher runs first.
pub const PRIORITY_LOW: i32 = -10;
pub const PRIORITY_NORMAL: i32 = 0;
pub const PRIORITY_HIGH: i32 = 10;
/// Numeric priorities are limited to this range (either sign).
pub const PRIORITY_MAX_ABS: i32 = 1000;

/// Resources a job asks for. `None` means "not asked".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Memory reservation for admission, in bytes (`--mem`).
    pub mem: Option<u64>,
    /// Hard memory limit in bytes (`--mem-limit`; defaults to `mem` when only that is given).
    pub mem_limit: Option<u64>,
    /// Soft memory limit (memory.high) in bytes (`--mem-high`).
    pub mem_high: Option<u64>,
    /// CPUs in thousandths (`--cpus 1.5` → 1500): admission and CPU quota.
    pub cpu_milli: Option<u32>,
    /// Maximum number of processes (`--pids`).
    pub pids: Option<u64>,
}

/// The `sc exec` request: what to run, for whom, with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub cwd: String,
    pub requests: Requests,
    pub priority: i32,
    pub name: Option<String>,
    /// The caller's uid as it believes it to be; the daemon uses SO_PEERCRED.
    pub uid: u32,
    /// Pid of the `sc exec` process (for `sc ps` and diagnostics).
    pub client_pid: u32,
    /// Kill the job after this long running (`--timeout`), in ms.
    pub timeout_ms: Option<u64>,
    /// The job's process: a child of the caller, forked before this request
    /// and held before `exec` until the daemon has placed it in its cgroup.
    pub pid: u32,
    /// Services that must be ready before the job may start (`--wait-for`).
    pub wait_for: Vec<String>,
    /// Give up waiting for them after this long (`--wait-timeout`), in ms.
    pub wait_timeout_ms: Option<u64>,
}

/// How a job's process ended, as the `sc exec` process saw it from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildExit {
    Code(i32),
    Signal(i32),
    /// The command could not be started (`errno` from exec: ENOENT, EACCES, ...).
    SpawnFailed {
        errno: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Always first on a connection.
    Hello {
        protocol: u8,
        client: String,
    },
    /// Queue a job; the connection then carries its whole life.
    Exec(ExecRequest),
    /// The job's child ended.
    Exited {
        job: JobId,
        exit: ChildExit,
    },
    /// After a daemon restart: the `sc exec` of a job comes back. `running`
    /// says whether its process was already released into exec.
    Reattach {
        exec: ExecRequest,
        job: JobId,
        running: bool,
        waited_ms: u64,
    },
    Ps,
    Status,
    Cancel {
        job: JobId,
    },
    Pause {
        job: JobId,
    },
    Resume {
        job: JobId,
    },
    ServiceAdd {
        spec: Box<crate::ServiceSpec>,
        /// Start it right away (default) or only define it.
        start: bool,
    },
    ServiceStart {
        name: String,
    },
    ServiceStop {
        name: String,
    },
    /// Stop (if running) and start again; also resets a tripped breaker.
    ServiceRestart {
        name: String,
    },
    ServiceRemove {
        name: String,
    },
    ServiceList,
    /// The last `lines` lines of a service's log; with `follow`, then
    /// everything written after, until the client closes the connection.
    Logs {
        name: String,
        lines: u32,
        follow: bool,
    },
    /// The cluster board as this host sees it.
    Board,
}

/// Why a queued job is not running yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitReason {
    /// Not enough memory headroom: asked, what is free now.
    Memory { need: u64, free: u64 },
    /// Not enough CPU: asked and free, in thousandths.
    Cpu { need: u32, free: u32 },
    /// Jobs ranked before this one come first (head of line, no backfill).
    Behind { ahead: u32 },
    /// Paused queue admission (not used yet; `sc drain`).
    Draining,
    /// A `--wait-for` service is not ready.
    Service { name: String, state: String },
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::units::{format_cpus, format_size};
        match self {
            WaitReason::Memory { need, free } => write!(
                f,
                "memory: needs {}, {} free",
                format_size(*need),
                format_size(*free)
            ),
            WaitReason::Cpu { need, free } => write!(
                f,
                "cpu: needs {} CPUs, {} free",
                format_cpus(*need),
                format_cpus(*free)
            ),
            WaitReason::Behind { ahead } => {
                write!(f, "{ahead} job(s) ranked ahead must start first")
            }
            WaitReason::Draining => write!(f, "host is draining"),
            WaitReason::Service { name, state } => {
                write!(f, "service {name} is not ready ({state})")
            }
        }
    }
}

/// State of a job as the daemon shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    /// Granted; the child is being forked and placed.
    Starting,
    Running,
    Paused,
    /// Daemon restarted and the `sc exec` has not re-attached yet.
    Detached,
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Detached => "detached",
        })
    }
}

/// One job in `sc ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub id: JobId,
    pub name: Option<String>,
    pub owner: u32,
    pub argv: Vec<String>,
    pub cwd: String,
    pub requests: Requests,
    /// Memory reservation used for admission (the request or the default).
    pub reserved: u64,
    pub priority: i32,
    pub state: JobState,
    pub waiting: Option<WaitReason>,
    /// Place in the queue, 1 = next; `None` when not queued.
    pub position: Option<u32>,
    pub pid: Option<u32>,
    pub age_ms: u64,
    /// Time spent running, `None` if not started.
    pub running_ms: Option<u64>,
    pub mem_current: Option<u64>,
}

/// Cgroup backend as `sc status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    /// "cgroup v2", "cgroup v1 (+unified for freeze/kill)", "cgroup v1" or "none".
    pub kind: String,
    /// What is enforced: a subset of memory, cpu, pids, freeze, kill.
    pub enforced: Vec<String>,
    pub not_enforced_reason: Option<String>,
    pub subtree: Vec<String>,
}

/// The host as `sc status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub hostname: String,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub socket: String,
    pub state_dir: String,
    pub cores: u32,
    pub overcommit: f64,
    /// Memory capacity admission works against (detected or configured).
    pub mem_total: u64,
    pub mem_available: u64,
    pub mem_reserve: u64,
    /// Σ reservations of running jobs.
    pub reserved: u64,
    /// Σ max(0, reservation − usage): what admission still holds back.
    pub reserved_unused: u64,
    pub cpu_reserved_milli: u32,
    pub jobs_queued: u32,
    pub jobs_running: u32,
    pub backend: BackendView,
    /// Memory and cores read from the config rather than the machine.
    pub capacity_overridden: bool,
    pub services: Vec<crate::ServiceView>,
    /// `None` when `[cluster]` is not configured.
    pub cluster: Option<ClusterStatus>,
}

/// This host as a cluster member, in `sc status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_name: String,
    pub cluster_id: String,
    pub listen: String,
    pub advertise: String,
    pub live_hosts: u32,
    pub dead_hosts: u32,
    /// Transport and board counters: messages sent/received, and what was
    /// dropped and why (oversize, malformed, unauthorised, queue full,
    /// undecodable board values...).
    pub counters: Vec<(String, u64)>,
}

/// Resource accounting of a finished job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUsage {
    pub peak_mem: Option<u64>,
    pub cpu_time_us: Option<u64>,
    pub oom_kills: u64,
    /// Memory limit that was enforced, if any.
    pub mem_limit: Option<u64>,
    pub waited_ms: u64,
    pub ran_ms: u64,
}

/// Machine-readable error categories (the message says the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Bytes that are not a valid frame or message.
    BadFrame,
    TooLarge,
    UnsupportedVersion,
    /// A well-formed request that makes no sense here (unknown job, wrong order).
    BadRequest,
    /// A request no host state could ever satisfy (more memory than the host has).
    Impossible,
    NotFound,
    PermissionDenied,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Hello {
        protocol: u8,
        daemon: String,
    },
    /// The job is accepted and recorded; it will run or end with a reason.
    Queued {
        job: JobId,
        position: u32,
    },
    /// Sent whenever the reason or position changes.
    Waiting {
        job: JobId,
        reason: WaitReason,
        position: u32,
        waited_ms: u64,
    },
    /// The job's process is in its cgroup with its limits: release it into
    /// `exec` with `env` added to its environment.
    Granted {
        job: JobId,
        env: Vec<(String, String)>,
        cgroup: Option<String>,
        enforced: Vec<String>,
    },
    Paused {
        job: JobId,
        by: String,
    },
    Resumed {
        job: JobId,
    },
    /// The job was cancelled (`sc cancel`) or timed out; its processes are killed.
    Cancelled {
        job: JobId,
        reason: String,
        timed_out: bool,
    },
    /// Answer to `Exited`: the job is recorded and its cgroup removed.
    Finished {
        job: JobId,
        usage: JobUsage,
    },
    /// Answer to `Reattach`.
    Reattached {
        job: JobId,
    },
    /// `sc ps`: the jobs, and the services beside them.
    Jobs {
        jobs: Vec<JobView>,
        services: Vec<crate::ServiceView>,
    },
    Services(Vec<crate::ServiceView>),
    /// A piece of a log (`Logs`); `LogEnd` closes a non-following read.
    LogData {
        data: Vec<u8>,
    },
    LogEnd,
    Board(Box<crate::board::BoardView>),
    Status(Box<HostStatus>),
    Ok {
        message: String,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}
