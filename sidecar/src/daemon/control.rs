//! The one-shot verbs: `ps`, `status`, `cancel`, `pause`, `resume`,
//! `history`.
//!
//! Each handler returns a `Response` (an error is data for the client, as in
//! pueue). Who may act on a job is decided from the peer's SO_PEERCRED uid:
//! its owner or root.

use super::Shared;
use super::lifecycle;
use super::session::Peer;
use super::state::{Ending, StopReason, reap, record_end};
use sc_protocol::{
    BackendView, ErrorKind, HostStatus, JobId, JobState, JobView, PauseReason, PauseView, Response,
};

/// Bytes of entries (as JSON, larger than their bincode) per history page:
/// one argv may be long, so pages are cut by size, not by count.
const HISTORY_PAGE_BYTES: usize = 1 << 20;

/// `sc history`: the last `limit` finished jobs, oldest first, in pages.
/// Anyone who may use the socket may read it, as with `sc ps`. Read on a
/// blocking thread: the whole store may be scanned.
pub async fn history(shared: &Shared, limit: u32) -> Vec<Response> {
    let store = shared.daemon().store.clone();
    let listed = tokio::task::spawn_blocking(move || store.history().map(|h| h.list(limit))).await;
    let entries = match listed {
        Ok(Some(Ok((entries, bad)))) => {
            if bad > 0 {
                tracing::warn!("history: skipped {bad} unreadable record(s)");
            }
            entries
        }
        Ok(Some(Err(e))) => return vec![Response::error(ErrorKind::Internal, e.to_string())],
        Ok(None) => Vec::new(),
        Err(e) => return vec![Response::error(ErrorKind::Internal, e.to_string())],
    };
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = serde_json::to_vec(&e).map(|v| v.len()).unwrap_or(0);
        if !page.is_empty() && bytes + size > HISTORY_PAGE_BYTES {
            pages.push(Response::HistoryPage {
                entries: std::mem::take(&mut page),
                more: true,
            });
            bytes = 0;
        }
        bytes += size;
        page.push(e);
    }
    pages.push(Response::HistoryPage {
        entries: page,
        more: false,
    });
    pages
}

pub fn ps(shared: &Shared) -> Response {
    let d = shared.daemon();
    let jobs = d
        .jobs
        .values()
        .map(|j| JobView {
            id: j.id,
            name: j.exec.name.clone(),
            owner: j.owner,
            argv: j.exec.argv.clone(),
            cwd: j.exec.cwd.clone(),
            requests: j.exec.requests.clone(),
            reserved: j.reserved,
            priority: j.exec.priority,
            state: j.state,
            waiting: j.last_wait.as_ref().map(|(r, _)| r.clone()),
            position: j.last_wait.as_ref().map(|(_, p)| *p),
            pid: j.pid,
            age_ms: j.queued_at.elapsed().as_millis() as u64,
            running_ms: j.started_at.map(|s| s.elapsed().as_millis() as u64),
            mem_current: j
                .cgroup
                .as_ref()
                .and_then(|c| c.usage().ok())
                .and_then(|u| u.mem_current),
            needs: j.exec.needs.clone(),
            fence_tokens: j
                .claim
                .as_ref()
                .and_then(|c| c.tokens.clone())
                .unwrap_or_default(),
            paused: j.paused.map(|(reason, since)| PauseView {
                reason,
                paused_ms: since.elapsed().as_millis() as u64,
            }),
            no_preempt: j.exec.no_preempt,
            ports: j.ports.clone(),
            mem_source: j.mem_source,
        })
        .collect();
    Response::Jobs {
        jobs,
        services: d.services.views(),
    }
}

pub fn status(shared: &Shared) -> Response {
    let d = shared.daemon();
    let snap = d.snapshot();
    let info = d.tree.info();
    let reserved: u64 = d
        .jobs
        .values()
        .filter(|j| j.holds_resources())
        .map(|j| j.reserved)
        .sum();
    let reserved_unused: u64 = snap
        .holders
        .iter()
        .map(|h| h.mem_reserved.saturating_sub(h.mem_used))
        .sum();
    let cpu_reserved: u64 = snap.holders.iter().map(|h| u64::from(h.cpu_milli)).sum();
    let status = HostStatus {
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_ms: d.started.elapsed().as_millis() as u64,
        socket: d.socket.display().to_string(),
        state_dir: d.store.dir().display().to_string(),
        cores: d.capacity.cores,
        overcommit: d.capacity.overcommit,
        mem_total: d.capacity.mem_total,
        mem_available: snap.host.map(|h| h.mem_available).unwrap_or(0),
        mem_reserve: d.capacity.reserve,
        reserved,
        reserved_unused,
        cpu_reserved_milli: cpu_reserved.min(u64::from(u32::MAX)) as u32,
        jobs_queued: d.jobs.values().filter(|j| j.is_queued()).count() as u32,
        jobs_running: d.jobs.values().filter(|j| j.holds_resources()).count() as u32,
        backend: BackendView {
            kind: info.kind.to_string(),
            enforced: info.enforced,
            not_enforced_reason: info.not_enforced_reason,
            subtree: info.root.iter().map(|p| p.display().to_string()).collect(),
        },
        capacity_overridden: d.capacity.overridden,
        services: d.services.views(),
        cluster: d.cluster.as_ref().map(|c| {
            let board = c.board();
            let live = board.hosts.iter().filter(|h| h.live && !h.is_self).count() as u32;
            let dead = board.hosts.iter().filter(|h| !h.live).count() as u32;
            let mut counters = c.counters();
            counters.push(("undecodable_board_values".into(), board.undecodable_values));
            if let Some(l) = &d.locks {
                let s = &l.engine.stats;
                counters.extend([
                    ("dlock_grants".to_string(), s.grants),
                    ("dlock_preemptions".to_string(), s.preemptions),
                    ("dlock_lost_leases".to_string(), s.lost_leases),
                    ("dlock_stale_values".to_string(), s.stale_values),
                    ("dlock_undecodable_values".to_string(), s.undecodable_values),
                    ("dlock_publishes".to_string(), s.publishes),
                    ("dlock_self_pauses".to_string(), s.self_pauses),
                ]);
            }
            sc_protocol::ClusterStatus {
                node_name: c.node_name.clone(),
                cluster_id: c.cluster_id.clone(),
                listen: c.listen.to_string(),
                advertise: c.advertise.to_string(),
                live_hosts: live,
                dead_hosts: dead,
                counters,
                resources: d.locks.as_ref().map(|l| l.status()).unwrap_or_default(),
            }
        }),
        draining: d.draining,
    };
    Response::Status(Box::new(status))
}

fn check_owner(peer: Peer, owner: u32, id: JobId, verb: &str) -> Result<(), Response> {
    if peer.uid == 0 || peer.uid == owner {
        Ok(())
    } else {
        Err(Response::error(
            ErrorKind::PermissionDenied,
            format!(
                "permission denied: job {id} belongs to uid {owner}; only its owner or root may {verb} it"
            ),
        ))
    }
}

fn not_found(id: JobId) -> Response {
    Response::error(ErrorKind::NotFound, format!("no job {id} on this host"))
}

pub async fn cancel(shared: &Shared, peer: Peer, id: JobId) -> Response {
    let queued = {
        let mut d = shared.daemon();
        let Some(job) = d.jobs.get(&id) else {
            return not_found(id);
        };
        if let Err(e) = check_owner(peer, job.owner, id, "cancel") {
            return e;
        }
        if job.pid.is_none() {
            let store = d.store.clone();
            d.take(id).map(|j| (j, store))
        } else {
            None
        }
    };
    match queued {
        Some((job, store)) => {
            let reason = format!("cancelled by uid {} before it started", peer.uid);
            job.send(Response::Cancelled {
                job: id,
                reason: reason.clone(),
                timed_out: false,
            });
            shared.kick();
            let usage = reap(&job);
            record_end(
                &store,
                &job,
                &Ending {
                    outcome: "cancelled",
                    reason: Some(reason),
                    ..Default::default()
                },
                &usage,
            );
            Response::Ok {
                message: format!("job {id} cancelled (it had not started)"),
            }
        }
        None => {
            lifecycle::stop(shared, id, StopReason::Cancelled { by: peer.uid }).await;
            Response::Ok {
                message: format!("job {id} cancelled"),
            }
        }
    }
}

pub fn pause(shared: &Shared, peer: Peer, id: JobId, by: &str) -> Response {
    let mut d = shared.daemon();
    let Some(job) = d.jobs.get_mut(&id) else {
        return not_found(id);
    };
    if let Err(e) = check_owner(peer, job.owner, id, "pause") {
        return e;
    }
    // Frozen by the daemon already: from now on only `sc resume` thaws it.
    if job.state == JobState::Paused
        && let Some((reason, since)) = job.paused
        && reason != PauseReason::User
    {
        job.paused = Some((PauseReason::User, since));
        tracing::info!(job = id, by, was = %reason, "frozen job now paused by hand");
        d.persist_later(id);
        return Response::Ok {
            message: format!(
                "job {id} was frozen for {reason}; it now stays paused until sc resume"
            ),
        };
    }
    if job.state != JobState::Running {
        return Response::error(
            ErrorKind::BadRequest,
            format!(
                "job {id} is {}; only a running job can be paused",
                job.state
            ),
        );
    }
    let Some(cg) = &job.cgroup else {
        return Response::error(
            ErrorKind::BadRequest,
            format!("job {id} cannot be paused: this host has no cgroup freezer (backend none)"),
        );
    };
    if let Err(e) = cg.freeze() {
        return Response::error(ErrorKind::Internal, format!("cannot freeze job {id}: {e}"));
    }
    job.state = JobState::Paused;
    shared.metrics.record_freeze();
    job.paused = Some((PauseReason::User, std::time::Instant::now()));
    job.send(Response::Paused {
        job: id,
        by: by.to_string(),
    });
    tracing::info!(job = id, by, "job paused");
    d.persist_later(id);
    Response::Ok {
        message: format!("job {id} paused"),
    }
}

pub fn resume(shared: &Shared, peer: Peer, id: JobId) -> Response {
    let mut d = shared.daemon();
    let Some(job) = d.jobs.get_mut(&id) else {
        return not_found(id);
    };
    if let Err(e) = check_owner(peer, job.owner, id, "resume") {
        return e;
    }
    if job.state != JobState::Paused {
        return Response::error(
            ErrorKind::BadRequest,
            format!("job {id} is {}, not paused", job.state),
        );
    }
    if let Some(cg) = &job.cgroup
        && let Err(e) = cg.thaw()
    {
        return Response::error(ErrorKind::Internal, format!("cannot thaw job {id}: {e}"));
    }
    job.state = JobState::Running;
    shared.metrics.record_thaw();
    job.paused = None;
    job.send(Response::Resumed { job: id });
    tracing::info!(job = id, "job resumed");
    Response::Ok {
        message: format!("job {id} resumed"),
    }
}

pub fn board(shared: &Shared) -> Response {
    match &shared.daemon().cluster {
        Some(c) => Response::Board(Box::new(c.board())),
        None => Response::error(
            ErrorKind::BadRequest,
            "this host is not in a cluster: add a [cluster] section to its config",
        ),
    }
}
