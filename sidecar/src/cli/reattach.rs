//! Getting back to a daemon: re-attaching a job after the daemon went away
//! (restarted, or killed and auto-started again), and reporting the job's
//! end once it is back.
//!
//! A re-attach is not abandoned half-way on a connection the daemon may
//! already have acted on: dropping it would look to the daemon like `sc exec`
//! dying, and it would kill the job. The one exception is a job whose
//! cluster-resource lease runs out meanwhile: it is being stopped anyway.

use crate::client::{self, Conn};
use sc_protocol::{ChildExit, ExecRequest, JobId, JobUsage, Request, Response};
use std::time::{Duration, Instant};

/// Between two attempts to reach a daemon.
pub(super) const RETRY: Duration = Duration::from_millis(200);
/// How long a queued job keeps trying to get back to a daemon that went away.
pub(super) const REQUEUE_PATIENCE: Duration = Duration::from_secs(30);

pub(super) fn reattach_req(exec: &ExecRequest, job: JobId, started: Instant) -> Request {
    Request::Reattach {
        exec: exec.clone(),
        job,
        running: true,
        waited_ms: started.elapsed().as_millis() as u64,
    }
}

/// Report the exit and wait for the daemon's accounting. Also returns the
/// notices that were still queued ahead of it.
pub(super) async fn report_exit(
    conn: &mut Conn,
    job: JobId,
    exit: ChildExit,
) -> (Option<JobUsage>, Vec<Response>) {
    let mut late = Vec::new();
    let fut = async {
        conn.send(&Request::Exited { job, exit }).await.ok()?;
        loop {
            match conn.recv().await.ok()? {
                Response::Finished { usage, .. } => return Some(usage),
                Response::Error { .. } => return None,
                other => late.push(other),
            }
        }
    };
    let usage = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten();
    (usage, late)
}

pub(super) enum Attach {
    Done(Conn),
    Refused(String),
    NoDaemon,
}

pub(super) async fn try_reattach(req: &Request) -> Attach {
    let path = client::choose_socket().path;
    let Ok(mut c) = client::connect_to(&path).await else {
        return Attach::NoDaemon;
    };
    match c.call(req).await {
        Ok(Response::Reattached { .. }) | Ok(Response::Queued { .. }) => Attach::Done(c),
        Ok(Response::Error { message, .. }) => Attach::Refused(message),
        _ => Attach::NoDaemon,
    }
}

/// Retry re-attaching until `patience` runs out. With `autostart`, a private
/// daemon may be started again (a queued job has nothing running yet).
pub(super) async fn reconnect(req: &Request, autostart: bool, patience: Duration) -> Option<Conn> {
    let deadline = Instant::now() + patience;
    loop {
        tokio::time::sleep(RETRY).await;
        if autostart {
            if let Ok(mut c) = client::connect().await
                && let Ok(Response::Reattached { .. } | Response::Queued { .. }) = c.call(req).await
            {
                return Some(c);
            }
        } else if let Attach::Done(c) = try_reattach(req).await {
            return Some(c);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}
