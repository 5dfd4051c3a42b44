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
    usage: bool,
) -> (Option<JobUsage>, Vec<Response>) {
    let mut late = Vec::new();
    let fut = async {
        conn.send(&Request::Exited { job, exit, usage })
            .await
            .ok()?;
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

/// Report the exit without waiting for the daemon's answer, when nothing
/// in it is needed: the command exited by itself (no signal: no OOM kill,
/// no cancel or timeout that killed it) and no accounting is shown.
/// `Exited` is in the socket before we exit, and the daemon handles it
/// like any other (the socket's end after it is no "client gone"). This
/// saves a round trip — the daemon's wake-up and ours — on every such
/// job. Returns the notices already received (a cancel notice that raced
/// the command's own exit).
pub(super) async fn report_exit_quick(
    conn: &mut Conn,
    job: JobId,
    exit: ChildExit,
) -> Vec<Response> {
    let mut late = Vec::new();
    if conn
        .send(&Request::Exited {
            job,
            exit,
            usage: false,
        })
        .await
        .is_err()
    {
        return late;
    }
    // Only what is readable now: each receive is polled once. (A zero
    // `tokio::time::timeout` would wait for the timer's next millisecond.)
    while let Some(Ok(resp)) = poll_once(conn.recv()) {
        if matches!(resp, Response::Finished { .. } | Response::Error { .. }) {
            break;
        }
        late.push(resp);
    }
    late
}

/// `fut`'s output if it is ready at its first poll. Data the reactor has
/// already seen arrive is read; nothing is waited for.
fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
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

/// Retry re-attaching a running job until `patience` runs out (a queued
/// job goes through [`requeue`], which may also start a private daemon).
pub(super) async fn reconnect(req: &Request, patience: Duration) -> Option<Conn> {
    let deadline = Instant::now() + patience;
    loop {
        tokio::time::sleep(RETRY).await;
        if let Attach::Done(c) = try_reattach(req).await {
            return Some(c);
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

/// Why a queued job could not get back to a daemon.
pub(super) enum Requeue {
    /// No daemon took it back within the patience.
    NoDaemon,
    /// Its held process is gone: a restarted daemon stopped it (the old
    /// daemon had granted the job cluster resources just before it died),
    /// with the daemon's last word on it if it said one.
    HeldChildGone(Option<String>),
}

/// [`reconnect`] for a job still queued (its child held before exec, a
/// private daemon may be started again), giving up at once when the held
/// child has died: queued again, it would be "started" with nothing to run.
pub(super) async fn requeue(req: &Request, held: i32, patience: Duration) -> Result<Conn, Requeue> {
    let deadline = Instant::now() + patience;
    let mut said = None;
    loop {
        tokio::time::sleep(RETRY).await;
        if !alive(held) {
            return Err(Requeue::HeldChildGone(said));
        }
        if let Ok(mut c) = client::connect().await {
            match c.call(req).await {
                Ok(Response::Reattached { .. } | Response::Queued { .. }) => {
                    // Killed between our look and the daemon's answer?
                    if alive(held) {
                        return Ok(c);
                    }
                    return Err(Requeue::HeldChildGone(said));
                }
                Ok(Response::Error { message, .. }) => said = Some(message),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return Err(Requeue::NoDaemon);
        }
    }
}

/// Is our child `pid` still alive (not a zombie)? Read from
/// `/proc/PID/stat` so that the child is not reaped here.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

#[cfg(test)]
mod tests {
    use super::alive;

    #[test]
    fn a_dead_but_unreaped_child_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        assert!(alive(pid));
        // SIGKILL, not reaped: a zombie, as a held child killed by a
        // restarted daemon is until `sc exec` waits for it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut dead = false;
        for _ in 0..200 {
            if !alive(pid) {
                dead = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(dead, "a zombie counts as gone");
        let _ = child.wait();
        assert!(!alive(pid), "a reaped pid is gone too");
    }
}
