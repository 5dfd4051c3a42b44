//! `sc exec`: queue, wait (saying why), start the command as our own child
//! inside its cgroup, wait for it, report, and exit with its status.
//!
//! The connection to the daemon stays open for the job's life: its closing
//! is how the daemon learns we died (and kills the job). If the daemon goes
//! away instead, the job keeps running and we re-attach to the next one —
//! unless it holds cluster resources (`--needs`): then it runs on a lease
//! that only the daemon renews, and when the lease runs out we stop the job
//! ourselves (`stopper.rs`), daemon or not.

use super::child::{self, Ended, HeldChild};
use super::reattach::{
    Attach, REQUEUE_PATIENCE, RETRY, Requeue, reattach_req, reconnect, report_exit,
    report_exit_quick, requeue, try_reattach,
};
use super::report::Reporter;
use super::stopper::{self, Lease};
use super::{EXIT_SC_ERROR, ExecArgs};
use crate::client::{self, Conn};
use anyhow::Result;
use sc_protocol::{ChildExit, ExecRequest, JobId, Need, Request, Requests, Response};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit status of a job stopped by `--timeout` (as timeout(1)).
const EXIT_TIMEOUT: u8 = 124;
/// After the command ended with no daemon, how long to wait for one to come back.
const REPORT_PATIENCE: Duration = Duration::from_secs(2);

pub fn main(args: ExecArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sc: cannot start: {e}");
            return ExitCode::from(EXIT_SC_ERROR);
        }
    };
    let code = rt.block_on(run(args));
    // Nothing is left to flush (stderr is unbuffered, stdout is the
    // command's): exit now rather than tear the runtime down.
    std::process::exit(i32::from(code))
}

fn request(args: &ExecArgs, pid: u32, needs: Vec<Need>) -> ExecRequest {
    ExecRequest {
        argv: args.command.clone(),
        cwd: std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        requests: Requests {
            mem: args.mem,
            mem_limit: args.mem_limit,
            mem_high: args.mem_high,
            cpu_milli: args.cpus,
            pids: args.pids,
        },
        priority: args.priority,
        name: args.name.clone(),
        uid: nix::unistd::getuid().as_raw(),
        client_pid: std::process::id(),
        timeout_ms: args.timeout.map(|d| d.as_millis() as u64),
        pid,
        wait_for: args.wait_for.clone(),
        wait_timeout_ms: args.wait_timeout.map(|d| d.as_millis() as u64),
        needs,
        no_preempt: args.no_preempt,
        ports: args.ports.clone(),
    }
}

async fn run(args: ExecArgs) -> u8 {
    let mut rep = Reporter::new(args.json);
    if let Err(e) = crate::ports::check_names(&args.ports) {
        rep.error(&format!("--port: {e}"));
        return EXIT_SC_ERROR;
    }
    rep.explain = args.explain;
    let needs = match super::needs::merge_needs(&args.needs) {
        Ok(n) => n,
        Err(e) => {
            rep.error(&e);
            return EXIT_SC_ERROR;
        }
    };
    // Fork first: the held child costs nothing while we queue, and the
    // daemon can place it the moment it grants.
    let mut held = match child::fork_held(&args.command) {
        Ok(h) => h,
        Err(e) => {
            rep.error(&format!("cannot start {:?}: {e}", args.command[0]));
            return EXIT_SC_ERROR;
        }
    };
    // The second stopper of a job holding cluster resources (cli/guard.rs),
    // started now so that its process start overlaps with the queueing.
    let guard = if needs.is_empty() {
        None
    } else {
        super::guard::Guard::spawn(args.json)
    };
    let exec = request(&args, held.pid as u32, needs);
    let first = Request::Exec(exec.clone());
    let mut conn = match client::connect_with_fd(Some(&first), held.release_fd()).await {
        Ok(c) => c,
        Err(e) => {
            held.abort();
            rep.error(&format!("{e:#}"));
            return EXIT_SC_ERROR;
        }
    };
    let grant = match wait_for_grant(&mut conn, &exec, &mut rep).await {
        Ok(g) => g,
        Err(code) => {
            held.abort();
            return code;
        }
    };
    if let Err(code) = start(&mut conn, &grant, &exec, &mut held, &mut rep).await {
        return code;
    }
    supervise(conn, &grant, &exec, held, guard, &mut rep).await
}

/// What the daemon said when it let the job start.
struct Grant {
    job: JobId,
    env: Vec<(String, String)>,
    cgroup: Option<String>,
    enforced: Vec<String>,
    /// CLOCK_BOOTTIME deadline of the job's lease on cluster resources.
    lease_until_ms: Option<u64>,
    /// The daemon released the child itself.
    released: bool,
}

/// Queued until granted; re-attaches if the daemon restarts meanwhile.
async fn wait_for_grant(
    conn: &mut Conn,
    exec: &ExecRequest,
    rep: &mut Reporter,
) -> Result<Grant, u8> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut job: Option<JobId> = None;
    loop {
        let resp = tokio::select! {
            r = conn.recv() => r,
            _ = tick.tick() => { rep.refresh(); continue; }
        };
        match resp {
            Ok(Response::Queued {
                job: j,
                position,
                reservation,
            }) => {
                job = Some(j);
                rep.queued(j, position);
                rep.explain_reservation(j, reservation.as_ref());
            }
            Ok(Response::Reattached { job: j }) => job = Some(j),
            Ok(Response::Waiting {
                job: j,
                reason,
                position,
                waited_ms,
            }) => rep.waiting(j, &reason, position, waited_ms),
            Ok(Response::Granted {
                job: j,
                env,
                cgroup,
                enforced,
                lease_until_ms,
                released,
            }) => {
                return Ok(Grant {
                    job: j,
                    env,
                    cgroup,
                    enforced,
                    lease_until_ms,
                    released,
                });
            }
            // A lease means nothing before the grant that starts it.
            Ok(Response::Lease { .. }) => {}
            Ok(Response::Cancelled { reason, .. }) => {
                rep.error(&format!("job {}: {reason}", job.unwrap_or(0)));
                return Err(EXIT_SC_ERROR);
            }
            Ok(Response::Error { message, .. }) => {
                rep.error(&message);
                return Err(EXIT_SC_ERROR);
            }
            Ok(other) => {
                rep.error(&format!("unexpected answer from the daemon: {other:?}"));
                return Err(EXIT_SC_ERROR);
            }
            Err(e) => {
                let Some(j) = job else {
                    rep.error(&format!("{e:#}"));
                    return Err(EXIT_SC_ERROR);
                };
                rep.say(&format!(
                    "lost the daemon while job {j} was queued; re-attaching"
                ));
                let waited = rep.since.elapsed().as_millis() as u64;
                let req = Request::Reattach {
                    exec: exec.clone(),
                    job: j,
                    running: false,
                    waited_ms: waited,
                };
                match requeue(&req, exec.pid as i32, REQUEUE_PATIENCE).await {
                    Ok(c) => *conn = c,
                    Err(Requeue::NoDaemon) => {
                        rep.error(&format!(
                            "the sc daemon went away while job {j} was queued and did not come back"
                        ));
                        return Err(EXIT_SC_ERROR);
                    }
                    Err(Requeue::HeldChildGone(said)) => {
                        let why = said.unwrap_or_else(|| {
                            "the restarted sc daemon stopped it: the previous daemon had granted it cluster resources just before it went away".into()
                        });
                        rep.error(&format!("job {j} never started: {why}; run it again"));
                        return Err(EXIT_SC_ERROR);
                    }
                }
            }
        }
    }
}

/// The daemon has placed the child: release it into exec (unless the
/// daemon already did), and learn whether the exec worked.
async fn start(
    conn: &mut Conn,
    grant: &Grant,
    exec: &ExecRequest,
    held: &mut HeldChild,
    rep: &mut Reporter,
) -> Result<(), u8> {
    if let Err(errno) = held.release(&grant.env, grant.released) {
        let _ = child::wait(held.pid);
        let err = std::io::Error::from_raw_os_error(errno);
        rep.error(&format!("cannot run {:?}: {err}", exec.argv[0]));
        let _ = conn
            .call(&Request::Exited {
                job: grant.job,
                exit: ChildExit::SpawnFailed { errno },
                usage: false,
            })
            .await;
        return Err(if errno == libc::ENOENT { 127 } else { 126 });
    }
    rep.started(
        grant.job,
        held.pid,
        grant.cgroup.as_deref(),
        &grant.enforced,
        &sc_protocol::fence_tokens_of_env(&grant.env),
    );
    Ok(())
}

/// Is our process group the terminal's foreground group? Then the terminal
/// already delivers Ctrl-C and Ctrl-\ to the child, and we must not repeat them.
fn terminal_delivers_signals() -> bool {
    let pgrp = nix::unistd::getpgrp();
    [0, 1, 2].iter().any(|fd| {
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
        nix::unistd::tcgetpgrp(fd).is_ok_and(|fg| fg == pgrp)
    })
}

/// The command runs: forward signals, relay pause/cancel notices, survive a
/// daemon restart, then report the exit.
async fn supervise(
    conn: Conn,
    grant: &Grant,
    exec: &ExecRequest,
    held: HeldChild,
    mut guard: Option<super::guard::Guard>,
    rep: &mut Reporter,
) -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let job = grant.job;
    let mut lease = Lease::new(grant.lease_until_ms);
    let pid = held.pid;
    // Arm the second stopper, which outlives us (cli/guard.rs): with this
    // process SIGKILLed while the daemon is stopped, nobody else would stop
    // the job.
    match (guard.as_mut(), grant.lease_until_ms) {
        (Some(g), Some(until)) => g.arm(job, pid, grant.cgroup.as_deref(), until),
        _ => guard = None,
    }
    let mut waiter = Box::pin(child::wait_async(pid));
    let mut sigs = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ] {
        if let Ok(s) = signal(kind) {
            sigs.push((kind, s));
        }
    }
    let from_tty = terminal_delivers_signals();
    let mut conn = Some(conn);
    let mut timed_out = false;
    let mut unsupervised = false;
    let mut retry = tokio::time::interval(RETRY);
    // Redraws a paused job's status line (a no-op otherwise).
    let mut status_tick = tokio::time::interval(Duration::from_secs(1));
    let started = Instant::now();
    let ended = loop {
        let signal_fut = async {
            let futs = sigs.iter_mut().map(|(k, s)| {
                let k = *k;
                Box::pin(async move {
                    s.recv().await;
                    k
                })
            });
            futures_select_all(futs).await
        };
        tokio::select! {
            // The child's end wins a tie with the lease: it stopped by itself.
            biased;
            res = &mut waiter => break res,
            () = lease.expired() => {
                let stop = stopper::LostLease { job, pid, cgroup: grant.cgroup.as_deref(), exec, lease, ended: None };
                return stopper::lost_lease(stop, waiter, conn.as_mut(), rep).await;
            }
            kind = signal_fut => {
                let tty_signal = kind == SignalKind::interrupt() || kind == SignalKind::quit();
                if !(tty_signal && from_tty) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::try_from(kind.as_raw_value()).unwrap_or(nix::sys::signal::Signal::SIGTERM));
                }
            }
            resp = async { match conn.as_mut() { Some(c) => c.recv().await, None => std::future::pending().await } } => {
                match resp {
                    Ok(Response::Paused { by, .. }) => rep.paused(job, &by),
                    Ok(Response::Resumed { .. }) => rep.resumed(job),
                    Ok(Response::Cancelled { reason, timed_out: t, .. }) => {
                        timed_out |= t;
                        rep.say(&format!("job {job} {reason}"));
                        rep.event("cancelled", job, serde_json::json!({"reason": reason, "timed_out": t}));
                    }
                    Ok(Response::Lease { job: j, until_ms }) if j == job => {
                        lease.set(until_ms);
                        if let Some(g) = guard.as_mut() {
                            g.renew(until_ms);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        conn = None;
                        let until = if lease.deadline().is_some() { " until its lease on cluster resources runs out" } else { "" };
                        rep.warn(&format!("lost the sc daemon; job {job} keeps running{until}, re-attaching when it is back"));
                    }
                }
            }
            _ = status_tick.tick() => rep.refresh(),
            _ = retry.tick(), if conn.is_none() && !unsupervised => {
                let req = reattach_req(exec, job, started);
                // A daemon that accepts but does not answer (stopped, or
                // still starting) must not hold the loop past the lease.
                let attach = match lease.remaining() {
                    Some(left) => tokio::time::timeout(left, try_reattach(&req)).await.unwrap_or(Attach::NoDaemon),
                    None => try_reattach(&req).await,
                };
                match attach {
                    Attach::Done(c) => { conn = Some(c); rep.warn(&format!("re-attached job {job} to the sc daemon")); }
                    Attach::Refused(msg) => { unsupervised = true; rep.warn(&format!("warning: {msg}")); }
                    Attach::NoDaemon => {}
                }
            }
        }
    };
    if let Some(g) = guard.take() {
        g.finish();
    }
    let ended = match ended {
        Ok(e) => e,
        Err(e) => {
            rep.error(&format!("cannot wait for the command: {e}"));
            return EXIT_SC_ERROR;
        }
    };
    // Killed at the lease's end by the stop guard, which keeps the same
    // deadline and may get there first: the lease was lost all the same.
    if ended == Ended::Signal(libc::SIGKILL) && lease.expired_at(crate::boottime::now_ms()) {
        let stop = stopper::LostLease {
            job,
            pid,
            cgroup: grant.cgroup.as_deref(),
            exec,
            lease,
            ended: Some(ended),
        };
        let never = Box::pin(std::future::pending::<std::io::Result<Ended>>());
        return stopper::lost_lease(stop, never, conn.as_mut(), rep).await;
    }
    if conn.is_none() && !unsupervised {
        conn = reconnect(&reattach_req(exec, job, started), REPORT_PATIENCE).await;
    }
    let (code, signal, exit) = match ended {
        Ended::Code(c) => (Some(c), None, ChildExit::Code(c)),
        Ended::Signal(s) => (None, Some(s), ChildExit::Signal(s)),
    };
    let usage = match conn.as_mut() {
        Some(c) => {
            let want = rep.shows_usage(signal);
            // A timeout's exit status (124) depends on the daemon's notice.
            let (usage, late) = if want || signal.is_some() || exec.timeout_ms.is_some() {
                report_exit(c, job, exit, want).await
            } else {
                (None, report_exit_quick(c, job, exit).await)
            };
            // The child's end can win the race against a notice sent before
            // it (a timeout's SIGTERM follows its notice): handle those now.
            for resp in late {
                if let Response::Cancelled {
                    reason,
                    timed_out: t,
                    ..
                } = resp
                {
                    timed_out |= t;
                    rep.say(&format!("job {job} {reason}"));
                    rep.event(
                        "cancelled",
                        job,
                        serde_json::json!({"reason": reason, "timed_out": t}),
                    );
                }
            }
            usage
        }
        None => {
            rep.warn(&format!(
                "warning: the sc daemon went away while job {job} ran and did not come back; the job ran to its end unsupervised"
            ));
            None
        }
    };
    rep.exited(job, code, signal, &usage.unwrap_or_default());
    if timed_out {
        return EXIT_TIMEOUT;
    }
    match ended {
        Ended::Code(c) => (c & 0xff) as u8,
        Ended::Signal(s) => (128 + s).clamp(0, 255) as u8,
    }
}

/// The first of several futures to finish (a tiny `select_all`).
async fn futures_select_all<F, T>(futs: impl Iterator<Item = std::pin::Pin<Box<F>>>) -> T
where
    F: std::future::Future<Output = T> + ?Sized,
{
    let mut futs: Vec<_> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
