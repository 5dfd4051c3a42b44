//! A job's way through the daemon: accepted and recorded, re-attached after
//! a restart, placed into its cgroup, stopped on cancel or timeout.
//!
//! Each step changes the table under the lock and acknowledges only after
//! the effect has happened (record written, pid in its cgroup).

use super::Shared;
use super::release::{Release, release_pipe};
use super::replies::Replies;
use super::session::{Peer, new_job};
use super::state::{ClientLink, Daemon, StopReason, wall_ms};
use crate::admission::impossible;
use sc_protocol::{ErrorKind, ExecRequest, JobId, JobState, PRIORITY_MAX_ABS, Response};
use sc_supervisor::Limits;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub fn limits_of(exec: &ExecRequest) -> Limits {
    let r = &exec.requests;
    Limits {
        // --mem is also the hard limit unless --mem-limit says otherwise.
        mem_max: r.mem_limit.or(r.mem),
        mem_high: r.mem_high,
        cpu_milli: r.cpu_milli,
        pids_max: r.pids,
    }
}

fn validate(exec: &ExecRequest, peer: Peer) -> Result<(), String> {
    if exec.argv.is_empty() || exec.argv[0].is_empty() {
        return Err("no command given".into());
    }
    if peer.pid.is_none() || parent_pid(exec.pid) != peer.pid {
        return Err(format!(
            "process {} is not a child of the calling sc exec",
            exec.pid
        ));
    }
    if exec.uid != peer.uid {
        return Err(format!(
            "request claims uid {} but the socket says uid {}",
            exec.uid, peer.uid
        ));
    }
    if exec.priority.abs() > PRIORITY_MAX_ABS {
        return Err(format!(
            "priority {} is out of range (-{PRIORITY_MAX_ABS}..={PRIORITY_MAX_ABS})",
            exec.priority
        ));
    }
    let r = &exec.requests;
    if r.mem == Some(0) || r.mem_limit == Some(0) {
        return Err("a memory size of 0 is not a request".into());
    }
    if let (Some(m), Some(l)) = (r.mem, r.mem_limit)
        && l < m
    {
        return Err(
            "--mem-limit is smaller than --mem: the job could never use its reservation".into(),
        );
    }
    if r.cpu_milli == Some(0) {
        return Err("--cpus must be more than 0".into());
    }
    if r.pids == Some(0) {
        return Err("--pids must be at least 1".into());
    }
    crate::ports::check_names(&exec.ports).map_err(|e| format!("--port: {e}"))?;
    Ok(())
}

/// The memory reservation of a new job: its `--mem`, what earlier runs of
/// the same command here taught (an in-memory lookup: this runs under the
/// daemon lock on the enqueue path), or the default.
fn reservation_of(d: &Daemon, exec: &ExecRequest) -> sc_protocol::Reservation {
    let history = d.store.history();
    let params = history.map(|h| h.params().clone()).unwrap_or_default();
    let learned = match (exec.requests.mem, history) {
        (None, Some(h)) if params.enabled => h.learned(&exec.argv, &exec.cwd),
        _ => None,
    };
    crate::learning::choose(
        exec.requests.mem,
        learned,
        d.capacity.default_mem,
        d.capacity.mem_total.saturating_sub(d.capacity.reserve),
        &exec.argv,
        &exec.cwd,
        &params,
    )
}

/// Most release pipes kept at once (see `daemon/release.rs`).
const MAX_RELEASE_PIPES: usize = 256;

/// Accept an `Exec`: check it, record it, queue it, answer `Queued`.
/// Returns the job id and connection number, or `None` after an error reply.
pub fn enqueue(
    shared: &Shared,
    peer: Peer,
    exec: ExecRequest,
    release: Option<OwnedFd>,
    tx: Replies,
) -> Option<(JobId, u64)> {
    if let Err(msg) = validate(&exec, peer) {
        let _ = tx.send(Response::error(ErrorKind::BadRequest, msg));
        return None;
    }
    let mut d = shared.daemon();
    let reservation = reservation_of(&d, &exec);
    if let Some(msg) = impossible(
        d.capacity.mem_total,
        d.capacity.reserve,
        d.capacity.cpu_capacity_milli(),
        reservation.mem,
        exec.requests.cpu_milli.unwrap_or(0),
    ) {
        let _ = tx.send(Response::error(ErrorKind::Impossible, msg));
        return None;
    }
    let id = d.alloc_id();
    let seq = d.alloc_seq();
    d.next_conn += 1;
    let conn = d.next_conn;
    let link = ClientLink {
        conn,
        peer_pid: peer.pid,
        tx: tx.clone(),
    };
    let mut job = new_job(id, seq, peer.uid, exec, &reservation, link);
    // Each kept pipe is a descriptor held while the job waits: past a
    // bound (a private daemon often runs with a soft limit of 1024 open
    // files), later jobs are released by their clients instead.
    let kept = d.jobs.values().filter(|j| j.release.is_some()).count();
    if kept < MAX_RELEASE_PIPES {
        job.release = release.and_then(release_pipe);
    }
    if let Err(e) = d.store.create_job(&job.persisted()) {
        let _ = tx.send(Response::error(
            ErrorKind::Internal,
            format!("cannot record the job, not accepting it: {e}"),
        ));
        return None;
    }
    tracing::info!(job = id, owner = peer.uid, argv = ?job.exec.argv, "job queued");
    d.jobs.insert(id, job);
    let position = d.jobs.values().filter(|j| j.is_queued()).count() as u32;
    drop(d);
    let _ = tx.send(Response::Queued {
        job: id,
        position,
        reservation: Some(reservation),
    });
    // Decide right away rather than on the scheduler's next turn: an idle
    // host grants in the same step. Anything the pass leaves (abandoned
    // jobs) is the scheduler's to clean up.
    let (_, abandoned) = super::scheduler::pass(shared, Instant::now());
    if !abandoned.is_empty() {
        shared
            .daemon()
            .jobs
            .extend(abandoned.into_iter().map(|j| (j.id, j)));
    }
    // A job that has to wait gets its group made meanwhile; one granted in
    // the pass above has it already (a blocking thread making it too would
    // only race the grant for the same directories).
    prepare_cgroup(shared, id);
    shared.kick();
    Some((id, conn))
}

/// Place a job (see [`place`]), send its `Granted`, then release its held
/// child directly when its client passed the pipe: the child starts without
/// waiting for its `sc exec` to wake up. `Granted` goes first, so the
/// client's lease watch is armed no later than the job runs.
pub fn grant(d: &mut Daemon, id: JobId) -> Result<Placed, String> {
    let (granted, placed, release) = place(d, id)?;
    if let Some(job) = d.jobs.get(&id) {
        job.send(granted);
    }
    if let Some(r) = release {
        r.fire();
    }
    Ok(placed)
}

/// Create a waiting job's cgroup ahead of its placement, off the critical
/// path: the mkdirs and limit writes overlap with the wait. `place` creates
/// it itself if this has not finished by then.
fn prepare_cgroup(shared: &Shared, id: JobId) {
    let needs_group = move |d: &Daemon| {
        d.jobs.get(&id).is_some_and(|job| {
            job.cgroup.is_none()
                && job.is_queued()
                && !matches!(d.tree.info().kind, sc_supervisor::BackendKind::None)
        })
    };
    if !needs_group(&shared.daemon()) {
        return;
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let (tree, limits) = {
            let d = shared.daemon();
            if !needs_group(&d) {
                return;
            }
            let Some(job) = d.jobs.get(&id) else { return };
            (d.tree.clone(), job.limits.clone())
        };
        match tree.create(&format!("jobs/{id}"), &limits) {
            Ok(cg) => {
                let mut d = shared.daemon();
                match d.jobs.get_mut(&id) {
                    Some(job) if job.cgroup.is_none() => job.cgroup = Some(cg),
                    Some(_) => {}
                    // The job ended (cancelled, client gone) meanwhile.
                    None => {
                        drop(d);
                        let _ = cg.remove();
                    }
                }
            }
            Err(e) => tracing::debug!(job = id, "cannot prepare cgroup yet: {e}"),
        }
    });
}

/// An `sc exec` comes back after a daemon restart (or a lost connection).
pub fn reattach(
    shared: &Shared,
    peer: Peer,
    exec: ExecRequest,
    id: JobId,
    running: bool,
    waited_ms: u64,
    tx: Replies,
) -> Option<(JobId, u64)> {
    let pid = running.then_some(exec.pid);
    let mut d = shared.daemon();
    d.next_conn += 1;
    let conn = d.next_conn;
    let link = ClientLink {
        conn,
        peer_pid: peer.pid,
        tx: tx.clone(),
    };
    let Some(job) = d.jobs.get_mut(&id) else {
        drop(d);
        if running {
            let _ = tx.send(Response::error(
                ErrorKind::NotFound,
                format!("this daemon has no record of job {id}; it runs on unsupervised"),
            ));
            return None;
        }
        // A queued job this daemon never saw (another state dir): queue it anew.
        let _ = waited_ms;
        return enqueue(shared, peer, exec, None, tx);
    };
    if job.owner != peer.uid && peer.uid != 0 {
        let _ = tx.send(Response::error(
            ErrorKind::PermissionDenied,
            format!("job {id} belongs to uid {}", job.owner),
        ));
        return None;
    }
    // The record may predate the placement (it is written after `Placed`):
    // then the job's own cgroup vouches for the pid.
    if job.pid.is_none()
        && let (Some(p), Some(cg)) = (pid, &job.cgroup)
        && cg.pids().is_ok_and(|pids| pids.contains(&p))
    {
        job.pid = Some(p);
    }
    if job.pid != pid {
        let _ = tx.send(Response::error(
            ErrorKind::BadRequest,
            format!("job {id} has pid {:?} on record, not {pid:?}", job.pid),
        ));
        return None;
    }
    if !running && job.pid.is_some() {
        // The previous daemon granted it and died before its sc exec heard:
        // with cluster resources, `adopt` has stopped the held process.
        let msg = match &job.stopping {
            Some(StopReason::Cluster(_)) => format!(
                "job {id} was granted cluster resources by the previous sc daemon just before it stopped, and was stopped so they could be released safely; its command never ran"
            ),
            _ => format!("job {id} was already started; its sc exec says it is queued"),
        };
        let _ = tx.send(Response::error(ErrorKind::BadRequest, msg));
        return None;
    }
    // A queued job's held process is the new connection's, and so is its
    // release: a re-attach passes no pipe, so its `sc exec` writes it.
    job.exec.pid = exec.pid;
    job.release = None;
    job.client = Some(link);
    job.detached_until = None;
    job.last_wait = None;
    job.state = match (pid, &job.cgroup) {
        (None, _) => JobState::Queued,
        (Some(_), Some(cg)) if cg.is_frozen().unwrap_or(false) => JobState::Paused,
        (Some(_), _) => JobState::Running,
    };
    // Frozen by the previous daemon: for the reason its record gives
    // (memory pressure, a preemption: thawed again when that passes), else
    // taken for a pause by hand, which only `sc resume` ends.
    if job.state != JobState::Paused {
        job.paused = None;
    } else if job.paused.is_none() {
        job.paused = Some((sc_protocol::PauseReason::User, Instant::now()));
    }
    // Granted by the previous daemon just before it died (its record still
    // said queued): it held cluster resources under a generation that is
    // gone, so it is stopped like the ones `adopt` stopped.
    if running && !job.exec.needs.is_empty() && job.stopping.is_none() {
        if let Some(cg) = &job.cgroup {
            let _ = cg.kill_all();
        }
        job.stopping = Some(StopReason::Cluster(
            "the sc daemon restarted while the job held cluster resources; it was stopped so its claim could be released safely".into(),
        ));
    }
    // Stopped for the cluster (here, or by `adopt` before the client came
    // back): its `sc exec` must say why, not just report a SIGKILL.
    let stopped_why = match &job.stopping {
        Some(StopReason::Cluster(why)) => Some(why.clone()),
        _ => None,
    };
    tracing::info!(job = id, state = %job.state, "sc exec re-attached");
    // A --timeout keeps counting from the job's start, across restarts.
    let timeout = match (job.exec.timeout_ms, job.started_at) {
        (Some(ms), Some(started)) => {
            Some(Duration::from_millis(ms)).map(|t| (t, t.saturating_sub(started.elapsed())))
        }
        _ => None,
    };
    drop(d);
    if let Some((after, left)) = timeout {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(left).await;
            stop(&shared, id, StopReason::TimedOut { after }).await;
        });
    }
    let _ = tx.send(Response::Reattached { job: id });
    if let Some(reason) = stopped_why {
        let _ = tx.send(Response::Cancelled {
            job: id,
            reason,
            timed_out: false,
        });
    }
    shared.kick();
    Some((id, conn))
}

/// What remains to do after a job was placed, once the lock is released.
pub struct Placed {
    pub id: JobId,
    pub record: super::store::PersistedJob,
    pub timeout: Option<Duration>,
}

/// Put a job's held process in its cgroup with its limits and mark it
/// running. [`grant`] sends the returned `Granted` and carries out the
/// release (else the client releases the process into exec); the caller
/// carries out [`after_placed`].
fn place(d: &mut Daemon, id: JobId) -> Result<(Response, Placed, Option<Release>), String> {
    let backend = d.tree.info();
    let enforcing = !matches!(backend.kind, sc_supervisor::BackendKind::None);
    let Some(job) = d.jobs.get(&id) else {
        return Err(format!("no job {id}"));
    };
    let ports = match (job.exec.ports.is_empty(), job.ports.is_empty()) {
        (false, true) => {
            let names = job.exec.ports.clone();
            let leased = d.lease_ports(&names)?;
            tracing::info!(job = id, ports = ?leased, "ports leased");
            leased
        }
        _ => job.ports.clone(),
    };
    let Some(job) = d.jobs.get(&id) else {
        return Err(format!("no job {id}"));
    };
    let pid = job.exec.pid;
    // Only the caller's own child may be placed: otherwise anyone could move
    // someone else's process under a job's limits. Checked again here because
    // a held child that died while queued may have had its pid reused.
    let peer_pid = job.client.as_ref().and_then(|c| c.peer_pid);
    if peer_pid.is_none() || parent_pid(pid) != peer_pid {
        return Err(format!(
            "process {pid} is no longer a child of the calling sc exec; not starting job {id}"
        ));
    }
    let cgroup = if enforcing {
        let group = match job.cgroup.clone() {
            Some(cg) => Ok(cg),
            None => d.tree.create(&format!("jobs/{id}"), &job.limits),
        };
        // A job that waited for cluster resources was moved into its group
        // when it began to wait (`pre_place`): nothing to migrate now. A
        // group that only exists (prepared at enqueue) is still empty.
        let moved = job.held_in_group && job.cgroup.is_some();
        match group.and_then(|cg| {
            if moved {
                Ok(cg)
            } else {
                cg.add_pid(pid).map(|()| cg)
            }
        }) {
            Ok(cg) => Some(cg),
            Err(e) => {
                return Err(format!(
                    "cannot place job {id} in its cgroup, not starting it: {e}"
                ));
            }
        }
    } else {
        None
    };
    let Some(job) = d.jobs.get_mut(&id) else {
        return Err(format!("no job {id}"));
    };
    job.pid = Some(pid);
    job.cgroup = cgroup;
    job.state = JobState::Running;
    d.metrics.record_admission(job.queued_at.elapsed());
    job.started_at = Some(Instant::now());
    job.started_wall = Some(wall_ms());
    job.last_wait = None;
    job.ports = ports;
    let mut env = vec![("SC_JOB_ID".to_string(), id.to_string())];
    if let Some(name) = &job.exec.name {
        env.push(("SC_JOB_NAME".to_string(), name.clone()));
    }
    env.extend(crate::ports::env_of(&job.ports));
    let lease_until_ms = job.claim.as_ref().and_then(|c| {
        env.extend(fence_env(c.tokens.as_deref()?));
        c.lease_until
    });
    let release = job
        .release
        .take()
        .and_then(|pipe| Release::new(id, pipe, crate::cli::child::release_message(&env)));
    let cgroup_path = job
        .cgroup
        .as_ref()
        .and_then(|c| c.paths().first().map(|p| p.display().to_string()));
    let released_by_daemon = release.is_some();
    tracing::info!(job = id, pid, cgroup = ?cgroup_path, released_by_daemon, "job started");
    let granted = Response::Granted {
        job: id,
        env,
        cgroup: cgroup_path,
        enforced: backend.enforced,
        lease_until_ms,
        released: released_by_daemon,
    };
    let placed = Placed {
        id,
        record: job.persisted(),
        timeout: job.exec.timeout_ms.map(Duration::from_millis),
    };
    Ok((granted, placed, release))
}

/// A job about to wait for cluster resources: create its group and move
/// its held process in now, so the grant only has to say go. Migrating a
/// process waits on the kernel (an RCU grace period, several ms), so it
/// runs on a blocking thread without the daemon's lock: under the lock it
/// would hold up every other job's grant and release meanwhile. A grant
/// that comes first moves the child itself (`place`).
pub fn pre_place_in_background(shared: &Shared, id: JobId) {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(msg) = pre_place(&shared, id) {
            // The grant will try again (and fail the job then).
            tracing::warn!(job = id, "{msg}");
        }
    });
}

fn pre_place(shared: &Shared, id: JobId) -> Result<(), String> {
    let (tree, existing, limits, pid) = {
        let d = shared.daemon();
        if matches!(d.tree.info().kind, sc_supervisor::BackendKind::None) {
            return Ok(());
        }
        let Some(job) = d.jobs.get(&id) else {
            return Ok(());
        };
        if job.held_in_group || !job.is_queued() {
            return Ok(());
        }
        let pid = job.exec.pid;
        let peer_pid = job.client.as_ref().and_then(|c| c.peer_pid);
        if peer_pid.is_none() || parent_pid(pid) != peer_pid {
            return Err(format!(
                "process {pid} is no longer a child of the calling sc exec"
            ));
        }
        (d.tree.clone(), job.cgroup.clone(), job.limits.clone(), pid)
    };
    // The group may exist already: prepared empty at enqueue, or holding
    // the child since the previous daemon placed it early. Either way the
    // child is moved (again): writing a member's pid is harmless, and a
    // group that exists is no proof that the child is in it.
    let (cg, created) = match existing {
        Some(cg) => (cg, false),
        None => (
            tree.create(&format!("jobs/{id}"), &limits)
                .map_err(|e| format!("cannot create the group of job {id}: {e}"))?,
            true,
        ),
    };
    if let Err(e) = cg.add_pid(pid) {
        if created {
            let _ = cg.remove();
        }
        return Err(format!("cannot move job {id} into its group: {e}"));
    }
    let mut d = shared.daemon();
    match d.jobs.get_mut(&id) {
        // Still waiting: the grant need not move it.
        Some(job) if job.is_queued() => {
            job.cgroup.get_or_insert(cg);
            job.held_in_group = true;
        }
        // Granted meanwhile (`place` moved it and set its group) or gone.
        Some(_) => {}
        None => {
            drop(d);
            if created {
                let _ = cg.remove();
            }
        }
    }
    Ok(())
}

/// `SC_RESOURCE` and `SC_FENCE_TOKEN` (comma-separated, in the same order,
/// for jobs needing several resources) and `SC_FENCE_TOKEN_<NAME>` each.
fn fence_env(tokens: &[(String, u64)]) -> Vec<(String, String)> {
    let join = |f: &dyn Fn(&(String, u64)) -> String| -> String {
        tokens.iter().map(f).collect::<Vec<_>>().join(",")
    };
    let mut env = vec![
        (
            sc_protocol::ENV_RESOURCE.to_string(),
            join(&|(r, _)| r.clone()),
        ),
        (
            sc_protocol::ENV_FENCE_TOKEN.to_string(),
            join(&|(_, t)| t.to_string()),
        ),
    ];
    for (r, t) in tokens {
        env.push((sc_protocol::fence_token_var(r), t.to_string()));
    }
    env
}

/// After a placement, without the lock: write the record (with the pid; a
/// restarted daemon finds the job through its cgroup until then, see
/// `adopt`) and arm the `--timeout`.
pub fn after_placed(shared: &Shared, store: super::store::Store, placed: Placed) {
    let Placed {
        id,
        record,
        timeout,
    } = placed;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.save_job(&record) {
            tracing::error!(job = id, "cannot persist job: {e}");
        }
    });
    if let Some(after) = timeout {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            stop(&shared, id, StopReason::TimedOut { after }).await;
        });
    }
}

/// The parent of `pid`, from `/proc/PID/stat` (field 4, after the command
/// name in parentheses, which may itself contain spaces and parentheses).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat =
        sc_supervisor::cgroup::read_pseudo(std::path::Path::new(&format!("/proc/{pid}/stat")))
            .ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Stop a running job: tell its client why, SIGTERM every process of it,
/// SIGKILL what is left after the grace period. Its `sc exec` then sees the
/// child die and reports the exit as usual.
pub async fn stop(shared: &Shared, id: JobId, reason: StopReason) {
    let (cgroup, pid, grace) = {
        let mut d = shared.daemon();
        let grace = d.kill_grace;
        let Some(job) = d.jobs.get_mut(&id) else {
            return;
        };
        if job.stopping.is_some() || !matches!(job.state, JobState::Running | JobState::Paused) {
            return;
        }
        let (msg, timed_out) = match &reason {
            StopReason::Cancelled { by } => (format!("cancelled by uid {by}"), false),
            StopReason::Cluster(why) => (why.clone(), false),
            StopReason::TimedOut { after } => (
                format!(
                    "timed out after {}",
                    sc_protocol::units::format_duration(*after)
                ),
                true,
            ),
        };
        tracing::info!(job = id, "stopping job: {msg}");
        job.send(Response::Cancelled {
            job: id,
            reason: msg,
            timed_out,
        });
        job.stopping = Some(reason);
        (job.cgroup.clone(), job.pid, grace)
    };
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _ = tokio::task::spawn_blocking(move || {
        match &cgroup {
            Some(cg) => {
                let _ = cg.signal_all(Signal::SIGTERM);
                // A frozen job cannot act on SIGTERM.
                let _ = cg.thaw();
            }
            None => {
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            let alive = match &cgroup {
                Some(cg) => cg.is_populated().unwrap_or(false),
                None => pid.is_some_and(|p| kill(Pid::from_raw(p as i32), None).is_ok()),
            };
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match &cgroup {
            Some(cg) => {
                let _ = cg.kill_all();
            }
            None => {
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
    })
    .await;
}
