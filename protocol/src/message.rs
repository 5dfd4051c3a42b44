//! Messages of the local API (CLI ↔ daemon over the Unix socket).
//!
//! One `Request` variant per verb, answered by one or more `Response`s. The
//! first request on a connection is always `Hello`; an `exec` connection then
//! stays open for the job's whole life, because the socket closing is how the
//! daemon learns that `sc exec` died.
//!
//! An `exec` runs: `Exec` (with the pid of the caller's already forked, held
//! child; the write end of its release pipe rides along as SCM_RIGHTS) →
//! `Queued` → `Waiting`* → `Granted` (the daemon has placed the pid in the
//! job's cgroup, and with `released` has also let it exec; else the caller
//! releases it) → `Exited` → `Finished`.
//!
//! Durations cross the wire as milliseconds already computed by the sender
//! (ages, waits), so neither side needs the other's clock.

pub use crate::resource::{Need, ResourceHolder, ResourceStatus};
pub use crate::status::{BackendView, ClusterStatus, HostStatus};
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
    /// Cluster resources the job must hold to start (`--needs`). Defaults
    /// to none so job records written before it existed still load.
    #[serde(default)]
    pub needs: Vec<Need>,
    /// Never freeze this job for memory pressure or for a higher-priority
    /// job's CPU (`--no-preempt`).
    #[serde(default)]
    pub no_preempt: bool,
    /// Names of TCP ports to lease for the job (`--port NAME`): each gets a
    /// free port of the host's range, unique while the job lives.
    #[serde(default)]
    pub ports: Vec<String>,
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
        /// Whether `Finished` must carry the job's accounting (peak memory,
        /// CPU time, OOM kills), which the daemon reads from the cgroup.
        /// `sc exec` asks only when it shows them (`--json`, or a SIGKILL
        /// that may be an OOM kill); otherwise the answer comes at once and
        /// the accounting follows, for the history only.
        usage: bool,
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
    /// `sc drain`: admit no more jobs; queued `--needs` jobs give back the
    /// cluster claims they have not been granted yet. Root or the daemon's
    /// own uid only.
    Drain,
    /// `sc undrain`: admit jobs again.
    Undrain,
    /// Finished jobs, oldest first: the last `limit` (0: all that are kept).
    /// Answered by `HistoryPage`s until one says `more: false`.
    History {
        limit: u32,
    },
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
    /// The host is draining (`sc drain`): nothing is admitted until `sc undrain`.
    Draining,
    /// A `--wait-for` service is not ready.
    Service { name: String, state: String },
    /// A `--needs` cluster resource is not granted yet: who holds it, how
    /// many requests rank ahead, and what else is in the way (no quorum...).
    Resource {
        name: String,
        holders: Vec<ResourceHolder>,
        ahead: u32,
        detail: Option<String>,
    },
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
            WaitReason::Resource {
                name,
                holders,
                ahead,
                detail,
            } => crate::resource::fmt_resource_wait(f, name, holders, *ahead, detail.as_deref()),
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
    /// Cluster resources it needs (`--needs`).
    pub needs: Vec<Need>,
    /// Fencing token of each resource it holds (running jobs).
    pub fence_tokens: Vec<(String, u64)>,
    /// Why and for how long a paused job is frozen (`None` unless paused).
    #[serde(default)]
    pub paused: Option<PauseView>,
    /// `--no-preempt`: never frozen by the daemon.
    #[serde(default)]
    pub no_preempt: bool,
    /// Its leased TCP ports (`--port`), once started: (name, port).
    #[serde(default)]
    pub ports: Vec<(String, u16)>,
    /// Where `reserved` came from (`--mem`, learned, the default).
    #[serde(default)]
    pub mem_source: Option<crate::MemSource>,
}

/// Why a job is frozen, as `sc ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    /// `sc pause` (or frozen before the daemon restarted: reason unknown).
    User,
    /// The host's memory ran low or its memory PSI passed the threshold.
    MemoryPressure,
    /// Frozen so that a waiting higher-priority job could have its CPUs.
    Preempted { for_job: JobId },
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::User => f.write_str("sc pause"),
            PauseReason::MemoryPressure => f.write_str("memory pressure"),
            PauseReason::Preempted { for_job } => write!(f, "preempted for job {for_job}"),
        }
    }
}

/// A paused job's reason and how long it has been frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseView {
    pub reason: PauseReason,
    pub paused_ms: u64,
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
        /// The memory reservation admission uses, and why (`--explain`).
        #[serde(default)]
        reservation: Option<crate::Reservation>,
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
        /// For a job holding cluster resources: the CLOCK_BOOTTIME instant
        /// (ms) at which `sc exec` must stop the job by itself unless a
        /// [`Response::Lease`] moves it. `None`: no lease, nothing to stop.
        lease_until_ms: Option<u64>,
        /// The daemon has released the child itself, through the pipe the
        /// caller passed with `Exec` (SCM_RIGHTS): the caller must not write
        /// the release again, only wait for the child's exec.
        released: bool,
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
    /// Answer to `Exited`: the job is out of the table and its reservation
    /// and cluster units are released; `usage` is read from the cgroup when
    /// `Exited` asked for it (else only the wait and run times are set).
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
    /// The daemon still holds the job's cluster resources: its `sc exec`
    /// moves the stop deadline to `until_ms` (CLOCK_BOOTTIME, ms; the same
    /// clock on both ends of the socket). Last, so older variants keep
    /// their wire index.
    Lease {
        job: JobId,
        until_ms: u64,
    },
    /// Answer to `History`: some finished jobs, oldest first; `more` says
    /// another page follows (pages keep each frame far below the limit).
    HistoryPage {
        entries: Vec<crate::HistoryEntry>,
        more: bool,
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
