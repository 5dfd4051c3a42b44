//! One client connection: the hello exchange, then either a single `exec`
//! job's whole life or any number of one-shot verbs (`ps`, `cancel`, ...).
//!
//! Replies go out through a [`Replies`] handle, which the job table keeps
//! too, so the scheduler can push `Waiting`/`Granted` to a job's client at
//! once, in order, without owning its socket. Bad input gets an error frame
//! naming the problem, then the connection closes; nothing here can take
//! the daemon down.

use super::replies::Replies;
use super::state::{
    ClientLink, Ending, Job, StopReason, account, cleanup, reap, record_end, times_of, wall_ms,
};
use super::{Shared, control, lifecycle, services};
use crate::wire::{FdReader, FrameReader, WireError};
use sc_protocol::codec::{CodecError, FrameKind};
use sc_protocol::{
    ChildExit, ErrorKind, ExecRequest, JobId, JobState, PROTOCOL_VERSION, Request, Response,
};
use std::time::Instant;
use tokio::net::UnixStream;

/// Who is on the other end, from SO_PEERCRED (never from the messages).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<u32>,
}

pub async fn serve(shared: Shared, stream: UnixStream) {
    let peer = match stream.peer_cred() {
        Ok(c) => Peer {
            uid: c.uid(),
            pid: c.pid().map(|p| p as u32),
        },
        Err(e) => {
            tracing::warn!("cannot read peer credentials, closing: {e}");
            return;
        }
    };
    let (r, w) = stream.into_split();
    let (tx, writer) = Replies::new(w);
    let writer = tokio::spawn(writer);
    let mut reader = FrameReader::new(FdReader::new(r), FrameKind::Request);
    run(&shared, peer, &mut reader, &tx).await;
    drop(tx);
    let _ = writer.await;
}

fn error_for(e: &WireError) -> Option<Response> {
    match e {
        WireError::Io(_) => None,
        WireError::Codec(c) => {
            let kind = match c {
                CodecError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
                CodecError::TooLarge { .. } => ErrorKind::TooLarge,
                _ => ErrorKind::BadFrame,
            };
            Some(Response::error(kind, c.to_string()))
        }
    }
}

async fn next(reader: &mut FrameReader<FdReader>, tx: &Replies) -> Option<Request> {
    match reader.next::<Request>().await {
        Ok(Some(r)) => Some(r),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("bad input from a client: {e}");
            if let Some(resp) = error_for(&e) {
                let _ = tx.send(resp);
            }
            None
        }
    }
}

async fn run(shared: &Shared, peer: Peer, reader: &mut FrameReader<FdReader>, tx: &Replies) {
    match next(reader, tx).await {
        Some(Request::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {
            let _ = tx.send(Response::Hello {
                protocol: PROTOCOL_VERSION,
                daemon: format!("sc {}", env!("CARGO_PKG_VERSION")),
            });
        }
        Some(Request::Hello { protocol, .. }) => {
            let _ = tx.send(Response::error(
                ErrorKind::UnsupportedVersion,
                format!("client speaks protocol {protocol}, this daemon speaks {PROTOCOL_VERSION}"),
            ));
            return;
        }
        Some(_) => {
            let _ = tx.send(Response::error(
                ErrorKind::BadRequest,
                "the first message on a connection must be Hello",
            ));
            return;
        }
        None => return,
    }
    while let Some(req) = next(reader, tx).await {
        match req {
            Request::Exec(exec) => {
                let release = reader.get_mut().take_fd();
                let job = lifecycle::enqueue(shared, peer, exec, release, tx.clone());
                if let Some(job) = job {
                    exec_loop(shared, job, reader, tx).await;
                }
                return;
            }
            Request::Reattach {
                exec,
                job,
                running,
                waited_ms,
            } => {
                let job =
                    lifecycle::reattach(shared, peer, exec, job, running, waited_ms, tx.clone());
                if let Some(job) = job {
                    exec_loop(shared, job, reader, tx).await;
                }
                return;
            }
            Request::Ps => {
                let _ = tx.send(control::ps(shared));
            }
            Request::Status => {
                let _ = tx.send(control::status(shared));
            }
            Request::Cancel { job } => {
                let _ = tx.send(control::cancel(shared, peer, job).await);
            }
            Request::Pause { job } => {
                let _ = tx.send(control::pause(shared, peer, job, "sc pause"));
            }
            Request::Resume { job } => {
                let _ = tx.send(control::resume(shared, peer, job));
            }
            Request::ServiceAdd { spec, start } => {
                let _ = tx.send(services::verbs::add(shared, peer, *spec, start));
            }
            Request::ServiceStart { name } => {
                let _ = tx.send(services::verbs::control(
                    shared,
                    peer,
                    &name,
                    services::Control::Start,
                ));
            }
            Request::ServiceStop { name } => {
                let _ = tx.send(services::verbs::control(
                    shared,
                    peer,
                    &name,
                    services::Control::Stop,
                ));
            }
            Request::ServiceRestart { name } => {
                let _ = tx.send(services::verbs::control(
                    shared,
                    peer,
                    &name,
                    services::Control::Restart,
                ));
            }
            Request::ServiceRemove { name } => {
                let _ = tx.send(services::verbs::remove(shared, peer, &name).await);
            }
            Request::Drain => {
                let _ = tx.send(super::drain::drain(shared, peer));
            }
            Request::Undrain => {
                let _ = tx.send(super::drain::undrain(shared, peer));
            }
            Request::Board => {
                let _ = tx.send(control::board(shared));
            }
            Request::ServiceList => {
                let _ = tx.send(services::verbs::list(shared));
            }
            Request::History { limit } => {
                for resp in control::history(shared, limit).await {
                    let _ = tx.send(resp);
                }
            }
            Request::Logs {
                name,
                lines,
                follow,
            } => {
                stream_logs(shared, peer, &name, lines, follow, reader, tx).await;
                return;
            }
            Request::Hello { .. } | Request::Exited { .. } => {
                let _ = tx.send(Response::error(
                    ErrorKind::BadRequest,
                    "this message is only valid on an exec connection, after Exec",
                ));
                return;
            }
        }
    }
}

/// The rest of an `sc exec` connection: placement, exit, or the client going away.
async fn exec_loop(
    shared: &Shared,
    (job, conn): (JobId, u64),
    reader: &mut FrameReader<FdReader>,
    tx: &Replies,
) {
    let mut finished = false;
    while let Some(req) = next(reader, tx).await {
        match req {
            Request::Exited {
                job: j,
                exit,
                usage,
            } if j == job && !finished => {
                finished = finish(shared, (job, conn), exit, usage, tx);
            }
            other => {
                let _ = tx.send(Response::error(
                    ErrorKind::BadRequest,
                    format!("unexpected message on the connection of job {job}: {other:?}"),
                ));
                break;
            }
        }
    }
    if !finished {
        client_gone(shared, job, conn).await;
    }
}

/// The job's child ended: release, answer, account, record; clean up after.
/// The answer waits for the accounting only when the client asked for it
/// (`usage`): reading the cgroup is most of the time between a job's end
/// and its `sc exec` returning. Returns `false` (after an error reply) if
/// the job is not ours.
fn finish(
    shared: &Shared,
    (id, conn): (JobId, u64),
    exit: ChildExit,
    usage_wanted: bool,
    tx: &Replies,
) -> bool {
    let (job, store) = {
        let mut d = shared.daemon();
        let ours = d
            .jobs
            .get(&id)
            .is_some_and(|j| j.client.as_ref().is_some_and(|c| c.conn == conn));
        let job = if ours { d.take(id) } else { None };
        let Some(job) = job else {
            let _ = tx.send(Response::error(
                ErrorKind::NotFound,
                format!("job {id} is not attached here"),
            ));
            return false;
        };
        (job, d.store.clone())
    };
    shared.kick();
    // Cluster units go back as soon as nothing of the job can run: with an
    // empty group that is now, first (another host is waiting on them),
    // before the accounting and the slower removal below.
    let mut job = job;
    if job.claim.is_some() {
        let empty = match &job.cgroup {
            Some(cg) => cg.is_populated().is_ok_and(|p| !p),
            None => true,
        };
        if empty {
            job.claim = None;
            tracing::info!(job = id, "cluster units released: the job exited");
        }
    }
    let usage = usage_wanted.then(|| account(&job));
    let _ = tx.send(Response::Finished {
        job: id,
        usage: usage.clone().unwrap_or_else(|| times_of(&job)),
    });
    // The history line (an fsync) and the cgroup's removal (which may have
    // to kill what the command left behind) follow on a blocking thread.
    // Only a daemon crash in between could leave the job recorded as
    // abandoned instead of with its exit; its `sc exec` has the exit either
    // way.
    let metrics = shared.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let usage = usage.unwrap_or_else(|| account(&job));
        metrics.record_oom_kills(usage.oom_kills);
        let ending = ending_of(&job, exit, &usage);
        record_end(&store, &job, &ending, &usage);
        cleanup(&job);
    });
    true
}

fn ending_of(job: &Job, exit: ChildExit, usage: &sc_protocol::JobUsage) -> Ending {
    let mut ending = match exit {
        ChildExit::Code(c) => Ending {
            outcome: "exited",
            code: Some(c),
            ..Default::default()
        },
        ChildExit::Signal(s) => Ending {
            outcome: "signal",
            signal: Some(s),
            ..Default::default()
        },
        ChildExit::SpawnFailed { errno } => Ending {
            outcome: "spawn-failed",
            reason: Some(std::io::Error::from_raw_os_error(errno).to_string()),
            ..Default::default()
        },
    };
    match &job.stopping {
        Some(StopReason::Cancelled { by }) => {
            ending.outcome = "cancelled";
            ending.reason = Some(format!("cancelled by uid {by}"));
        }
        Some(StopReason::TimedOut { after }) => {
            ending.outcome = "timed-out";
            ending.reason = Some(format!("timed out after {after:?}"));
        }
        Some(StopReason::Cluster(why)) => {
            ending.outcome = "stopped";
            ending.reason = Some(why.clone());
        }
        None => {}
    }
    if usage.oom_kills > 0 {
        ending.reason = Some(format!("{} OOM kill(s)", usage.oom_kills));
    }
    ending
}

/// The `sc exec` connection closed before the job's end was reported: the
/// job has lost its supervisor, so it is killed and recorded.
async fn client_gone(shared: &Shared, id: JobId, conn: u64) {
    let taken = {
        let mut d = shared.daemon();
        let ours = d
            .jobs
            .get(&id)
            .is_some_and(|j| j.client.as_ref().is_some_and(|c| c.conn == conn));
        if !ours {
            return;
        }
        let store = d.store.clone();
        d.take(id).map(|j| (j, store))
    };
    let Some((job, store)) = taken else { return };
    shared.kick();
    let was = job.state;
    tracing::info!(job = id, state = %was, "sc exec went away; ending its job");
    let metrics = std::sync::Arc::clone(&shared.metrics);
    let _ = tokio::task::spawn_blocking(move || {
        let usage = reap(&job);
        metrics.record_oom_kills(usage.oom_kills);
        let ending = Ending {
            outcome: "client-gone",
            reason: Some(format!(
                "the sc exec process went away while the job was {was}"
            )),
            ..Default::default()
        };
        record_end(&store, &job, &ending, &usage);
    })
    .await;
}

/// Build a fresh job from an exec request (shared by enqueue and reattach).
pub fn new_job(
    id: JobId,
    seq: u64,
    owner: u32,
    exec: ExecRequest,
    reservation: &sc_protocol::Reservation,
    client: ClientLink,
) -> Job {
    let limits = lifecycle::limits_of(&exec);
    Job {
        id,
        seq,
        owner,
        exec,
        reserved: reservation.mem,
        mem_source: Some(reservation.source),
        limits,
        state: JobState::Queued,
        queued_at: Instant::now(),
        queued_wall: wall_ms(),
        started_at: None,
        started_wall: None,
        pid: None,
        cgroup: None,
        client: Some(client),
        last_wait: None,
        detached_until: None,
        stopping: None,
        claim: None,
        held_in_group: false,
        release: None,
        paused: None,
        ports: Vec::new(),
    }
}

/// `sc logs`: the tail, then (with `follow`) new output until the client
/// goes away.
async fn stream_logs(
    shared: &Shared,
    peer: Peer,
    name: &str,
    lines: u32,
    follow: bool,
    reader: &mut FrameReader<FdReader>,
    tx: &Replies,
) {
    let dir = match services::verbs::log_location(shared, peer, name) {
        Ok(d) => d,
        Err(resp) => {
            let _ = tx.send(resp);
            return;
        }
    };
    let (tail_dir, tail_name, n) = (dir.clone(), name.to_string(), lines as usize);
    // The tail and the follower start from one file handle and length:
    // nothing is shown twice or missed between them.
    let read = tokio::task::spawn_blocking(move || {
        if follow {
            super::logs::tail_and_follow(&tail_dir, &tail_name, n).map(|(t, f)| (t, Some(f)))
        } else {
            super::logs::tail_lines(&tail_dir, &tail_name, n).map(|t| (t, None))
        }
    })
    .await;
    let (data, follower) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = tx.send(Response::error(
                ErrorKind::Internal,
                format!("cannot read the log of {name}: {e}"),
            ));
            return;
        }
        Err(e) => {
            let _ = tx.send(Response::error(ErrorKind::Internal, e.to_string()));
            return;
        }
    };
    if !data.is_empty() {
        let _ = tx.send(Response::LogData { data });
    }
    let Some(mut follower) = follower else {
        let _ = tx.send(Response::LogEnd);
        return;
    };
    loop {
        tokio::select! {
            chunk = follower.next_chunk() => match chunk {
                Ok(data) if !data.is_empty() => {
                    if tx.send(Response::LogData { data }).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Response::error(ErrorKind::Internal, format!("log of {name}: {e}")));
                    return;
                }
            },
            // Anything from the client, or its going away, ends the stream.
            _ = reader.next::<Request>() => return,
        }
    }
}
