//! The daemon side of the pressure rules (`crate::pressure`): the loop that
//! reads MemAvailable and memory PSI (the host's and each running job's
//! cgroup's `memory.pressure`) and freezes or thaws jobs, and the
//! scheduler's hooks that preempt lower-priority jobs for a waiting
//! high-priority one and thaw them once it is gone.
//!
//! A freeze is marked in the job table first (state `Paused`, with its
//! reason, and the client told), and the kernel freeze, which may wait up
//! to a second, runs outside the lock; a freeze that fails is undone.

use super::Shared;
use super::state::Daemon;
use crate::config::PressureConfig;
use crate::pressure::{
    Action, CpuWaiter, Frozen, Hold, Readings, RunningJob, Thresholds, decide_preemption,
    decide_pressure, released_preemptions,
};
use sc_protocol::{JobId, JobState, PauseReason, Response, WaitReason};
use sc_supervisor::Cgroup;
use std::time::Instant;

/// A freeze marked in the table, to carry out outside the lock.
pub struct MarkedFreeze {
    id: JobId,
    reason: PauseReason,
    cgroup: Cgroup,
}

fn ms_since(d: &Daemon, t: Instant) -> u64 {
    t.saturating_duration_since(d.started).as_millis() as u64
}

/// A job cgroup's own memory PSI (`memory.pressure`, in any hierarchy of
/// the group that has one: cgroup v2 or a hybrid host's unified tree).
fn job_psi(cg: &Cgroup) -> Option<f64> {
    cg.paths().iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("memory.pressure")).ok()?;
        sc_supervisor::host::parse_psi_some_avg10(&text)
    })
}

/// The jobs that have their process, as the rules see them.
fn running_jobs(d: &Daemon, with_psi: bool) -> Vec<RunningJob> {
    let can_freeze = d.tree.info().enforced.iter().any(|f| f == "freeze");
    d.jobs
        .values()
        .filter(|j| j.pid.is_some() && j.stopping.is_none())
        .filter(|j| matches!(j.state, JobState::Running | JobState::Paused))
        .map(|j| {
            let frozen = match (j.state, j.paused) {
                (JobState::Running, _) => Frozen::No,
                (_, Some((PauseReason::MemoryPressure, at))) => Frozen::Pressure {
                    at_ms: ms_since(d, at),
                },
                (_, Some((PauseReason::Preempted { for_job }, _))) => Frozen::Preempted { for_job },
                _ => Frozen::User,
            };
            RunningJob {
                id: j.id,
                priority: j.exec.priority,
                seq: j.seq,
                preemptible: !j.exec.no_preempt,
                freezable: can_freeze && j.cgroup.is_some(),
                frozen,
                psi: match (&j.cgroup, with_psi && frozen == Frozen::No) {
                    (Some(cg), true) => job_psi(cg),
                    _ => None,
                },
                mem_limited: j.limits.mem_max.is_some(),
                cpu_milli: j.exec.requests.cpu_milli.unwrap_or(0),
            }
        })
        .collect()
}

/// Mark a running job frozen and tell its client; the kernel freeze is the
/// caller's to do (outside the lock) with [`freeze_marked`].
fn mark_frozen(d: &mut Daemon, id: JobId, reason: PauseReason) -> Option<MarkedFreeze> {
    let job = d.jobs.get_mut(&id)?;
    if job.state != JobState::Running || job.stopping.is_some() {
        return None;
    }
    let cgroup = job.cgroup.clone()?;
    job.state = JobState::Paused;
    job.paused = Some((reason, Instant::now()));
    job.send(Response::Paused {
        job: id,
        by: reason.to_string(),
    });
    tracing::info!(job = id, reason = %reason, "freezing job");
    Some(MarkedFreeze { id, reason, cgroup })
}

/// Thaw a job the daemon froze for `reason`, unless it is now paused for
/// another (by hand) or gone.
fn thaw(d: &mut Daemon, id: JobId, why: &str, expect: impl Fn(PauseReason) -> bool) {
    let Some(job) = d.jobs.get_mut(&id) else {
        return;
    };
    let Some((reason, since)) = job.paused else {
        return;
    };
    if job.state != JobState::Paused || !expect(reason) {
        return;
    }
    if let Some(cg) = &job.cgroup
        && let Err(e) = cg.thaw()
    {
        tracing::warn!(job = id, "cannot thaw job: {e}");
        return;
    }
    job.state = JobState::Running;
    job.paused = None;
    job.send(Response::Resumed { job: id });
    tracing::info!(
        job = id,
        was = %reason,
        frozen_ms = since.elapsed().as_millis() as u64,
        "thawed job: {why}"
    );
    d.metrics.record_thaw();
    d.persist_later(id);
}

/// Freeze the marked jobs (blocking: up to a second each). A freeze that
/// fails is undone in the table; a job resumed by hand meanwhile is thawed.
fn freeze_marked(shared: &Shared, marked: Vec<MarkedFreeze>) {
    for m in marked {
        let result = m.cgroup.freeze();
        let mut d = shared.daemon();
        let Some(job) = d.jobs.get_mut(&m.id) else {
            continue;
        };
        let still_ours = job.state == JobState::Paused
            && job.paused.is_some_and(|(reason, _)| reason == m.reason);
        match result {
            Ok(()) if !still_ours && job.state == JobState::Running => {
                let _ = m.cgroup.thaw();
            }
            Ok(()) => {
                d.metrics.record_freeze();
                d.persist_later(m.id);
            }
            Err(e) => {
                tracing::warn!(job = m.id, "cannot freeze job: {e}");
                let _ = m.cgroup.thaw();
                if still_ours {
                    job.state = JobState::Running;
                    job.paused = None;
                    job.send(Response::Resumed { job: m.id });
                }
            }
        }
    }
}

/// Carry out marked freezes on a blocking thread, then ask the scheduler
/// for a pass (a preemptor may fit now).
pub fn freeze_in_background(shared: &Shared, marked: Vec<MarkedFreeze>) {
    if marked.is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        freeze_marked(&shared, marked);
        shared.kick();
    });
}

/// Scheduler hook, before admission: thaw jobs preempted for a job that is
/// no longer in the table (it ended, was cancelled or refused).
pub fn release_preempted(d: &mut Daemon) {
    let jobs = running_jobs(d, false);
    for id in released_preemptions(&jobs, |j| d.jobs.contains_key(&j)) {
        thaw(d, id, "the job it was preempted for is gone", |r| {
            matches!(r, PauseReason::Preempted { .. })
        });
    }
}

/// Scheduler hook, after admission: when the head of the queue is a
/// high-priority job waiting for CPUs only, mark the lower-priority jobs
/// whose CPUs it needs frozen for it.
pub fn preempt_for_head(d: &mut Daemon, wait: &[crate::admission::Wait]) -> Vec<MarkedFreeze> {
    let Some(head) = wait.first().filter(|w| w.position == 1) else {
        return Vec::new();
    };
    let WaitReason::Cpu { need, free } = head.reason else {
        return Vec::new();
    };
    let Some(priority) = d.jobs.get(&head.id).map(|j| j.exec.priority) else {
        return Vec::new();
    };
    let waiter = CpuWaiter {
        id: head.id,
        priority,
        cpu_need: need,
        cpu_free: free,
    };
    let victims = decide_preemption(&waiter, &running_jobs(d, false));
    let reason = PauseReason::Preempted { for_job: head.id };
    victims
        .into_iter()
        .filter_map(|id| mark_frozen(d, id, reason))
        .collect()
}

/// The memory-pressure loop: one reading and one decision per `poll`.
pub async fn run(shared: Shared, cfg: PressureConfig) {
    if !cfg.enabled {
        return;
    }
    let thresholds = {
        let d = shared.daemon();
        Thresholds {
            mem_low: cfg.mem_low_for(d.capacity.mem_total),
            psi: cfg.psi,
            hold_down_ms: cfg.hold_down.as_millis() as u64,
            freeze_gap_ms: cfg.freeze_gap.as_millis() as u64,
        }
    };
    tracing::info!(
        mem_low = thresholds.mem_low,
        psi = thresholds.psi,
        hold_down = ?cfg.hold_down,
        freeze_gap = ?cfg.freeze_gap,
        "memory pressure rule on"
    );
    let mut hold = Hold::default();
    let mut pressed = false;
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let marked = {
            let mut d = shared.daemon();
            let jobs = running_jobs(&d, true);
            if jobs.is_empty() {
                hold = Hold::default();
                pressed = false;
                continue;
            }
            let used: u64 = d
                .jobs
                .values()
                .filter(|j| j.holds_resources())
                .map(|j| j.mem_used())
                .sum();
            let readings = Readings {
                mem_available: d.capacity.mem_available(used),
                psi: sc_supervisor::host::read_memory_psi(),
            };
            let now_ms = ms_since(&d, Instant::now());
            let out = decide_pressure(&thresholds, &readings, &jobs, hold, now_ms);
            hold = out.hold;
            if out.cause.is_some() != pressed {
                pressed = out.cause.is_some();
                match out.cause {
                    Some(cause) => tracing::warn!(?cause, "memory pressure"),
                    None => tracing::info!("memory pressure is over"),
                }
            }
            match out.action {
                Some(Action::Freeze(id)) => mark_frozen(&mut d, id, PauseReason::MemoryPressure),
                Some(Action::Thaw(id)) => {
                    thaw(&mut d, id, "memory pressure stayed low", |r| {
                        r == PauseReason::MemoryPressure
                    });
                    None
                }
                None => None,
            }
        };
        if let Some(m) = marked {
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || freeze_marked(&s, vec![m])).await;
        }
    }
}
