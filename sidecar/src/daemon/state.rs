//! The daemon's in-memory job table and host capacity: the state every
//! connection, the scheduler and the control verbs share behind one mutex.
//!
//! Locking rule (pueue's): lock once per unit of work, never across an
//! `.await`, and never around anything slow (killing a cgroup may take a
//! second): take what is needed out of the table, unlock, then act.
//! Runtime-only things (client channels, cgroup handles) live here, never in
//! `sc_protocol`.

use super::replies::Replies;
use super::store::{PersistedJob, PersistedState, Store};
use crate::admission::{Candidate, Holder, HostReading, Snapshot};
use sc_protocol::{ExecRequest, JobId, JobState, JobUsage, PauseReason, Response, WaitReason};
use sc_supervisor::{Cgroup, CgroupTree, Limits};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `sc exec` connection a job belongs to.
#[derive(Debug, Clone)]
pub struct ClientLink {
    /// Connection number, so a stale connection's close is not mistaken for
    /// the current one's after a re-attach.
    pub conn: u64,
    /// The `sc exec` process (SO_PEERCRED): the job's process must be its child.
    pub peer_pid: Option<u32>,
    pub tx: Replies,
}

/// Why a running job is being stopped by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Cancelled {
        by: u32,
    },
    TimedOut {
        after: Duration,
    },
    /// The cluster-resource engine stopped it (lost lease, preempted,
    /// host voted DOWN): the reason as users read it.
    Cluster(String),
}

#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    pub seq: u64,
    pub owner: u32,
    pub exec: ExecRequest,
    /// Memory reservation for admission (the request, learned, the default).
    pub reserved: u64,
    /// Where `reserved` came from (`None`: adopted from an older daemon).
    pub mem_source: Option<sc_protocol::MemSource>,
    pub limits: Limits,
    pub state: JobState,
    pub queued_at: Instant,
    pub queued_wall: u64,
    pub started_at: Option<Instant>,
    pub started_wall: Option<u64>,
    pub pid: Option<u32>,
    pub cgroup: Option<Cgroup>,
    /// Its held process is already in `cgroup` (moved while it waited for
    /// the cluster, see `lifecycle::pre_place`). A group that merely exists
    /// may have been prepared empty; only this says the move happened.
    pub held_in_group: bool,
    /// The write end of its held child's release pipe, passed by its
    /// `sc exec` (`wire::FdReader`): the grant releases the child through
    /// it directly. Closed once used, and with the job.
    pub release: Option<std::os::fd::OwnedFd>,
    pub client: Option<ClientLink>,
    /// Last reason and position told to the client.
    pub last_wait: Option<(WaitReason, u32)>,
    /// For detached jobs: when they count as abandoned.
    pub detached_until: Option<Instant>,
    pub stopping: Option<StopReason>,
    /// Its cluster claim once it asked for `--needs` (released on drop).
    pub claim: Option<super::cluster_locks::JobClaim>,
    /// Why and since when it is frozen (with `state == Paused`).
    pub paused: Option<(PauseReason, Instant)>,
    /// Its leased TCP ports (`--port`), from placement on: (name, port).
    pub ports: Vec<(String, u16)>,
}

impl Job {
    pub fn holds_resources(&self) -> bool {
        match self.state {
            // Asking for cluster resources: it keeps its local headroom
            // so it can start the moment they are granted.
            JobState::Queued => self.claim.is_some(),
            JobState::Detached => self.pid.is_some() || self.cgroup.is_some(),
            JobState::Starting | JobState::Running | JobState::Paused => true,
        }
    }

    pub fn is_queued(&self) -> bool {
        self.state == JobState::Queued
    }

    pub fn persisted(&self) -> PersistedJob {
        PersistedJob {
            id: self.id,
            seq: self.seq,
            owner: self.owner,
            exec: self.exec.clone(),
            reserved: self.reserved,
            state: match self.pid {
                Some(pid) => PersistedState::Running { pid },
                None => PersistedState::Queued,
            },
            queued_at: self.queued_wall,
            started_at: self.started_wall,
            ports: self.ports.clone(),
            mem_source: self.mem_source,
            paused_by: match self.paused {
                Some((PauseReason::User, _)) | None => None,
                Some((reason, _)) => Some(reason),
            },
        }
    }

    pub fn send(&self, msg: Response) {
        if let Some(c) = &self.client {
            let _ = c.tx.send(msg);
        }
    }

    pub fn mem_used(&self) -> u64 {
        self.cgroup
            .as_ref()
            .and_then(|c| c.mem_current().ok().flatten())
            .unwrap_or(0)
    }
}

/// What admission works against, resolved from the config and the machine.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub mem_total: u64,
    /// Memory comes from the config, not /proc/meminfo.
    pub overridden: bool,
    pub cores: u32,
    pub overcommit: f64,
    pub reserve: u64,
    pub default_mem: u64,
    /// Last MemAvailable reading and when it was taken.
    pub meminfo: std::sync::Arc<std::sync::Mutex<Option<(Instant, u64)>>>,
}

/// How old a MemAvailable reading may be when admission uses it.
pub const MEMINFO_MAX_AGE: Duration = Duration::from_millis(100);

impl Capacity {
    pub fn cpu_capacity_milli(&self) -> u64 {
        (f64::from(self.cores) * self.overcommit * 1000.0) as u64
    }

    /// Memory available now: the configured capacity minus what jobs use,
    /// or the kernel's MemAvailable. The kernel's figure is re-read at most
    /// every [`MEMINFO_MAX_AGE`]: /proc/meminfo costs tens of microseconds
    /// per read, and a figure that old is as good for admission (jobs just
    /// started count through their reservations, not through it).
    pub fn mem_available(&self, used_by_jobs: u64) -> Option<u64> {
        if self.overridden {
            return Some(self.mem_total.saturating_sub(used_by_jobs));
        }
        let mut cache = self.meminfo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, avail)) = *cache
            && at.elapsed() < MEMINFO_MAX_AGE
        {
            return Some(avail);
        }
        let avail = sc_supervisor::host::read_meminfo()
            .ok()
            .map(|m| m.available)?;
        *cache = Some((Instant::now(), avail));
        Some(avail)
    }
}

/// How many job ids are reserved on disk at a time.
const ID_BLOCK: JobId = 64;

pub struct Daemon {
    pub jobs: BTreeMap<JobId, Job>,
    pub next_id: JobId,
    /// Ids below this are reserved in the state dir's `next_id`.
    pub ids_reserved: JobId,
    pub next_seq: u64,
    pub next_conn: u64,
    pub capacity: Capacity,
    pub tree: CgroupTree,
    pub store: Store,
    pub started: Instant,
    pub socket: PathBuf,
    pub reattach_grace: Duration,
    pub kill_grace: Duration,
    pub services: super::services::ServiceTable,
    /// Set when `[cluster]` is configured.
    pub cluster: Option<crate::cluster::node::ClusterView>,
    /// Set when `[resources]` is configured (with `[cluster]`).
    pub locks: Option<super::cluster_locks::Locks>,
    /// Event counters for `[metrics] listen` (also in `Shared`).
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
    /// `sc drain` is in effect: nothing is admitted.
    pub draining: bool,
    /// The `[host] port_range` and where the next lease search starts.
    pub port_leaser: super::port_leases::PortLeaser,
}

pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Daemon {
    /// Rewrite job `id`'s record off the lock (a blocking task): for
    /// changes a restarted daemon must know, such as why it is frozen.
    pub fn persist_later(&self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let (rec, store) = (job.persisted(), self.store.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.save_job(&rec) {
                tracing::warn!(job = id, "cannot persist job: {e}");
            }
        });
    }

    /// The admission snapshot: host reading, holders, queue.
    pub fn snapshot(&self) -> Snapshot {
        let mut holders = Vec::new();
        let mut used_total = 0;
        let mut queue = Vec::new();
        for job in self.jobs.values() {
            if job.holds_resources() {
                let used = job.mem_used();
                used_total += used;
                holders.push(Holder {
                    mem_reserved: job.reserved,
                    mem_used: used,
                    cpu_milli: self.cpu_charge(job),
                });
            } else if job.is_queued() && job.client.is_some() {
                queue.push(Candidate {
                    id: job.id,
                    priority: job.exec.priority,
                    seq: job.seq,
                    mem: job.reserved,
                    cpu_milli: job.exec.requests.cpu_milli.unwrap_or(0),
                    blocked: if self.draining {
                        Some(WaitReason::Draining)
                    } else {
                        self.gate_reason(job)
                    },
                });
            }
        }
        let host = self
            .capacity
            .mem_available(used_total)
            .map(|mem_available| HostReading {
                mem_available,
                mem_reserve: self.capacity.reserve,
                cpu_capacity_milli: self.capacity.cpu_capacity_milli(),
            });
        Snapshot {
            host,
            holders,
            queue,
        }
    }

    /// The CPUs a holder counts for in admission. A job preempted for
    /// another lends it its CPUs: it counts for none, and its preemptor,
    /// once running, for the larger of its own request and what it was
    /// lent, so nobody else can take CPUs the preempted jobs get back when
    /// they are thawed.
    pub fn cpu_charge(&self, job: &Job) -> u32 {
        if let Some((PauseReason::Preempted { .. }, _)) = job.paused {
            return 0;
        }
        let own = job.exec.requests.cpu_milli.unwrap_or(0);
        let lent: u32 = self
            .jobs
            .values()
            .filter(|j| matches!(j.paused, Some((PauseReason::Preempted { for_job }, _)) if for_job == job.id))
            .map(|j| j.exec.requests.cpu_milli.unwrap_or(0))
            .sum();
        own.max(lent)
    }

    /// A new job id. Ids are reserved on disk in blocks, so a restarted
    /// daemon never reuses one, without a write per job.
    /// The readiness gate of `--wait-for NAME` or `NAME@HOST`: local
    /// services from the table, other hosts' from the cluster board.
    pub fn gate(&self, name: &str) -> super::services::Gate {
        use super::services::Gate;
        match name.split_once('@') {
            None => self.services.gate(name),
            Some((svc, host)) => match &self.cluster {
                Some(c) if host == c.node_name => self.services.gate(svc),
                Some(c) => crate::cluster::board::remote_gate(&c.board(), svc, host),
                None => Gate::Failed(format!(
                    "{name}: this host is not in a cluster ([cluster] is not configured)"
                )),
            },
        }
    }

    /// Why a job's `--wait-for` services hold it back, if they do.
    pub fn gate_reason(&self, job: &Job) -> Option<WaitReason> {
        use super::services::Gate;
        job.exec
            .wait_for
            .iter()
            .find_map(|name| match self.gate(name) {
                Gate::Ready => None,
                Gate::NotReady(state) | Gate::Failed(state) => Some(WaitReason::Service {
                    name: name.clone(),
                    state,
                }),
                Gate::Unknown => Some(WaitReason::Service {
                    name: name.clone(),
                    state: "unknown".into(),
                }),
            })
    }

    /// A queued job whose `--wait-for` can never be met (unknown or failed
    /// service) or has waited past `--wait-timeout`: why it must be refused.
    pub fn gate_refusal(&self, job: &Job) -> Option<String> {
        use super::services::Gate;
        for name in &job.exec.wait_for {
            match self.gate(name) {
                Gate::Unknown => {
                    return Some(format!("--wait-for {name}: no such service on this host"));
                }
                Gate::Failed(why) => return Some(format!("--wait-for {name}: {why}")),
                Gate::NotReady(state) => {
                    if let Some(ms) = job.exec.wait_timeout_ms
                        && job.queued_at.elapsed() >= Duration::from_millis(ms)
                    {
                        return Some(format!(
                            "--wait-for {name}: still not ready ({state}) after {}",
                            sc_protocol::units::format_duration(Duration::from_millis(ms))
                        ));
                    }
                }
                Gate::Ready => {}
            }
        }
        None
    }

    pub fn alloc_id(&mut self) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        if self.next_id > self.ids_reserved {
            self.ids_reserved = self.next_id + ID_BLOCK;
            if let Err(e) = self.store.set_next_id(self.ids_reserved) {
                tracing::warn!("cannot persist next job id: {e}");
            }
        }
        id
    }

    pub fn alloc_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Take a job out of the table for good. Its record stays on disk until
    /// [`record_end`] records it in the history.
    pub fn take(&mut self, id: JobId) -> Option<Job> {
        self.jobs.remove(&id)
    }
}

/// How a job ended, for the history line.
#[derive(Debug, Clone, Default)]
pub struct Ending {
    pub outcome: &'static str,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
}

/// A job's limit and its wait and run times: what is known without reading
/// its cgroup.
pub fn times_of(job: &Job) -> JobUsage {
    JobUsage {
        mem_limit: job.limits.mem_max,
        waited_ms: job
            .started_at
            .map(|s| s.duration_since(job.queued_at))
            .unwrap_or_else(|| job.queued_at.elapsed())
            .as_millis() as u64,
        ran_ms: job
            .started_at
            .map(|s| s.elapsed().as_millis() as u64)
            .unwrap_or(0),
        ..Default::default()
    }
}

/// Read a job's accounting from its cgroup (before it is removed).
pub fn account(job: &Job) -> JobUsage {
    let mut usage = times_of(job);
    if let Some(cg) = &job.cgroup
        && let Ok(u) = cg.usage()
    {
        usage.peak_mem = u.mem_peak;
        usage.cpu_time_us = u.cpu_time_us;
        usage.oom_kills = u.oom_kills.unwrap_or(0);
    }
    usage
}

/// Kill what is left of a job and remove its cgroup. Slow (up to seconds):
/// call without the lock held.
pub fn cleanup(job: &Job) {
    match &job.cgroup {
        Some(cg) => {
            if let Err(e) = cg.remove() {
                tracing::warn!(job = job.id, "cannot remove job cgroup: {e}");
            }
        }
        None => {
            // No cgroup: the job's own pid is all we know of it.
            if let Some(pid) = job.pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Account, then kill what is left and remove the cgroup.
pub fn reap(job: &Job) -> JobUsage {
    let usage = account(job);
    cleanup(job);
    usage
}

/// Record the job in the history store and drop its live record. Slow
/// (the store fsyncs): call off the async runtime.
pub fn record_end(store: &Store, job: &Job, ending: &Ending, usage: &JobUsage) {
    // Said before the store's fsync: the line marks when the daemon learnt
    // of the end (the hand-over bench splits at it), not when it was filed.
    tracing::info!(
        job = job.id,
        outcome = ending.outcome,
        code = ending.code,
        signal = ending.signal,
        peak_mem = usage.peak_mem,
        "job ended"
    );
    let rec = sc_protocol::HistoryEntry {
        id: job.id,
        owner: job.owner,
        argv: job.exec.argv.clone(),
        cwd: job.exec.cwd.clone(),
        name: job.exec.name.clone(),
        requests: job.exec.requests.clone(),
        reserved: job.reserved,
        priority: job.exec.priority,
        queued_at: job.queued_wall,
        started_at: job.started_wall,
        ended_at: wall_ms(),
        outcome: ending.outcome.to_string(),
        code: ending.code,
        signal: ending.signal,
        reason: ending.reason.clone(),
        usage: usage.clone(),
        mem_source: job.mem_source,
    };
    if let Err(e) = store.record_history(&rec) {
        tracing::error!(job = job.id, "cannot record the job in the history: {e}");
    }
    if let Err(e) = store.remove_job(job.id) {
        tracing::error!(job = job.id, "cannot remove job record: {e}");
    }
}
