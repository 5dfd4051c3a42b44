//! The pressure rules: which running job to freeze or thaw now, because the
//! host's memory runs low ([`decide_pressure`]) or because a waiting
//! high-priority job needs CPUs that lower-priority jobs hold
//! ([`decide_preemption`], [`released_preemptions`]).
//!
//! Pure functions of readings and the job table: no I/O, no clock (time is
//! milliseconds on the daemon's monotonic clock, passed in), no cgroup
//! handles. The daemon (`daemon/pressure.rs`) reads /proc and the job
//! cgroups, calls these and carries out the freezes and thaws.
//!
//! Rules:
//! - pressure is MemAvailable below `mem_low`, or memory PSI `some avg10`
//!   above `psi` — the host's, or a running job's own cgroup's unless that
//!   job has a hard memory limit (its stall is then its limit's doing, and
//!   freezing others would not relieve it);
//! - under pressure, one job at a time is frozen, at most one per
//!   `freeze_gap` (PSI needs that long to show the effect of a freeze): the
//!   lowest-priority running job that is preemptible, the youngest first
//!   among equals (it has the least work to lose to a later OOM kill);
//! - a job of priority `high` or more is never frozen while a running job
//!   of lower priority is left running: it is never frozen *for* lower ones;
//! - once pressure has stayed low for `hold_down`, the job frozen last is
//!   thawed; each further thaw waits another `hold_down`;
//! - jobs paused by hand or preempted for a CPU are never touched by the
//!   memory rule, and a job paused by hand is never thawed by any rule.

use sc_protocol::{JobId, PRIORITY_HIGH};

/// From `[host]` (see `config/pressure.rs`), with the defaults resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Pressure when MemAvailable is below this.
    pub mem_low: u64,
    /// Pressure when a memory PSI `some avg10` (percent) is above this.
    pub psi: f64,
    /// Pressure must stay low this long before each thaw.
    pub hold_down_ms: u64,
    /// At least this long between two freezes.
    pub freeze_gap_ms: u64,
}

/// Why a job is frozen, as far as these rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frozen {
    /// Running.
    No,
    /// `sc pause`: only `sc resume` thaws it.
    User,
    /// Frozen by [`decide_pressure`] at this time.
    Pressure { at_ms: u64 },
    /// Frozen by [`decide_preemption`] for this job.
    Preempted { for_job: JobId },
}

/// A job that has its process: running or frozen.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: JobId,
    pub priority: i32,
    /// Arrival order: higher is younger.
    pub seq: u64,
    /// Not `--no-preempt`.
    pub preemptible: bool,
    /// It has a cgroup the backend can freeze.
    pub freezable: bool,
    pub frozen: Frozen,
    /// Its own cgroup's memory PSI `some avg10`, where the backend has it.
    pub psi: Option<f64>,
    /// It runs under a hard memory limit (memory.max).
    pub mem_limited: bool,
    /// Its `--cpus`, in thousandths.
    pub cpu_milli: u32,
}

/// The host's readings; `None` where there is none (no PSI on this kernel).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    pub mem_available: Option<u64>,
    pub psi: Option<f64>,
}

/// What the rule remembers between calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hold {
    pub last_freeze_ms: Option<u64>,
    /// Since when pressure has been low (`None` while it is high).
    pub low_since_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Freeze(JobId),
    Thaw(JobId),
}

/// What is pressing, for the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cause {
    LowMemory { available: u64, low: u64 },
    Psi { avg10: f64, job: Option<JobId> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub action: Option<Action>,
    pub hold: Hold,
    /// `Some` while under pressure.
    pub cause: Option<Cause>,
}

/// Is the host under memory pressure, and why.
pub fn pressure_cause(t: &Thresholds, r: &Readings, jobs: &[RunningJob]) -> Option<Cause> {
    if let Some(available) = r.mem_available
        && available < t.mem_low
    {
        return Some(Cause::LowMemory {
            available,
            low: t.mem_low,
        });
    }
    let host = r.psi.map(|avg10| (avg10, None));
    let own = jobs
        .iter()
        .filter(|j| j.frozen == Frozen::No && !j.mem_limited)
        .filter_map(|j| j.psi.map(|avg10| (avg10, Some(j.id))));
    host.into_iter()
        .chain(own)
        .filter(|(avg10, _)| *avg10 > t.psi)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(avg10, job)| Cause::Psi { avg10, job })
}

/// The job the memory rule would freeze next, if any.
pub fn pressure_victim(jobs: &[RunningJob]) -> Option<JobId> {
    let running = |j: &&RunningJob| j.frozen == Frozen::No;
    jobs.iter()
        .filter(running)
        .filter(|j| j.preemptible && j.freezable)
        .filter(|j| {
            j.priority < PRIORITY_HIGH
                || !jobs.iter().filter(running).any(|o| o.priority < j.priority)
        })
        .min_by(|a, b| a.priority.cmp(&b.priority).then(b.seq.cmp(&a.seq)))
        .map(|j| j.id)
}

/// One step of the memory rule at `now_ms`.
pub fn decide_pressure(
    t: &Thresholds,
    r: &Readings,
    jobs: &[RunningJob],
    hold: Hold,
    now_ms: u64,
) -> Outcome {
    let cause = pressure_cause(t, r, jobs);
    let mut hold = hold;
    let action = if cause.is_some() {
        hold.low_since_ms = None;
        let gap_over = hold
            .last_freeze_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= t.freeze_gap_ms);
        let victim = if gap_over {
            pressure_victim(jobs)
        } else {
            None
        };
        if victim.is_some() {
            hold.last_freeze_ms = Some(now_ms);
        }
        victim.map(Action::Freeze)
    } else {
        let since = *hold.low_since_ms.get_or_insert(now_ms);
        let last_frozen = jobs
            .iter()
            .filter_map(|j| match j.frozen {
                Frozen::Pressure { at_ms } => Some((at_ms, j.seq, j.id)),
                _ => None,
            })
            .max();
        match last_frozen {
            Some((_, _, id)) if now_ms.saturating_sub(since) >= t.hold_down_ms => {
                // The next thaw needs pressure to stay low another period.
                hold.low_since_ms = Some(now_ms);
                Some(Action::Thaw(id))
            }
            _ => None,
        }
    };
    Outcome {
        action,
        hold,
        cause,
    }
}

/// The queued job at the head of the queue, waiting for CPUs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuWaiter {
    pub id: JobId,
    pub priority: i32,
    pub cpu_need: u32,
    pub cpu_free: u32,
}

/// The jobs to freeze so that `head` fits: none unless it is of priority
/// `high` or more and freezing running, preemptible jobs of lower priority
/// (lowest first, youngest first among equals) frees enough CPUs. Only as
/// many as needed are frozen; none if even all of them would not do.
pub fn decide_preemption(head: &CpuWaiter, jobs: &[RunningJob]) -> Vec<JobId> {
    if head.priority < PRIORITY_HIGH || head.cpu_need <= head.cpu_free {
        return Vec::new();
    }
    let mut candidates: Vec<&RunningJob> = jobs
        .iter()
        .filter(|j| j.frozen == Frozen::No && j.preemptible && j.freezable)
        .filter(|j| j.priority < head.priority && j.cpu_milli > 0)
        .collect();
    candidates.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.seq.cmp(&a.seq)));
    let mut free = u64::from(head.cpu_free);
    let mut victims = Vec::new();
    for j in candidates {
        if free >= u64::from(head.cpu_need) {
            break;
        }
        free += u64::from(j.cpu_milli);
        victims.push(j.id);
    }
    if free >= u64::from(head.cpu_need) {
        victims
    } else {
        Vec::new()
    }
}

/// Jobs preempted for a job that is gone (ended, cancelled, refused): thaw
/// them. `live` says whether a job is still in the table.
pub fn released_preemptions(jobs: &[RunningJob], live: impl Fn(JobId) -> bool) -> Vec<JobId> {
    jobs.iter()
        .filter(|j| matches!(j.frozen, Frozen::Preempted { for_job } if !live(for_job)))
        .map(|j| j.id)
        .collect()
}

#[cfg(test)]
#[path = "pressure_tests.rs"]
mod tests;
