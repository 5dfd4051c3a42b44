//! Floors under the hand-over, measured on the same machine in the same
//! run, without sc: what starting the tiny job costs, and what the chain
//! of wake-ups a hand-over between two hosts needs costs when nothing but
//! that chain runs.
//!
//! The chain is the least any peer-to-peer design with a daemon per host
//! and the job's parent as its supervisor can do: the job ends; its
//! parent reaps it and tells its daemon over a unix socket; that daemon
//! sends one UDP datagram to the next host's daemon; that daemon writes
//! the pipe the next job's pre-forked child blocks on; the child execs
//! the job. No TLS, no gossip, no bookkeeping, threads for the daemons and
//! the parents. sc does each of these steps too, plus the rest.

use super::{Res, STAMP, mono_ns, sorted};
use sc_tests::read_holds;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn temp_log(name: &str) -> Res<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("sc-bench-handover-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let log = dir.path().join(name);
    Ok((dir, log))
}

fn stamp(log: &std::path::Path, label: &str) -> Command {
    let mut c = Command::new(STAMP);
    c.arg(log).args([label, "0"]).stdin(Stdio::null());
    c
}

/// The bench spawns `sc-stamp` itself and waits for it; ms from the spawn
/// to its start record, sorted.
pub fn exec_floor(runs: usize) -> Res<Vec<f64>> {
    let (_dir, log) = temp_log("floor.log")?;
    let mut spawned = Vec::new();
    for i in 0..runs + 5 {
        let label = format!("f-{i}");
        let t0 = mono_ns();
        let st = stamp(&log, &label)
            .status()
            .map_err(|e| format!("cannot run {STAMP}: {e}"))?;
        if !st.success() {
            return Err(format!("{STAMP} exited with {st}"));
        }
        if i >= 5 {
            spawned.push((label, t0));
        }
    }
    let holds = read_holds(&log);
    let mut v = Vec::new();
    for (label, t0) in spawned {
        if let Some(h) = holds.iter().find(|h| h.label == label) {
            v.push(h.start_ns.saturating_sub(t0) as f64 / 1e6);
        }
    }
    Ok(sorted(v))
}

/// The chain described at the top, `runs` times: ms from one job's end
/// record to the next job's start record, sorted.
pub fn chain_floor(runs: usize) -> Res<Vec<f64>> {
    let (_dir, log) = temp_log("chain.log")?;
    let io = |e: std::io::Error| format!("chain floor: {e}");
    let sock_a = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
    let sock_b = UdpSocket::bind("127.0.0.2:0").map_err(io)?;
    let addr_b = sock_b.local_addr().map_err(io)?;
    let (mut to_daemon_a, mut daemon_a_in) = UnixStream::pair().map_err(io)?;
    // Daemon A: a byte from its client → one datagram to daemon B.
    let daemon_a = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while daemon_a_in.read_exact(&mut b).is_ok() {
            let _ = sock_a.send_to(&b, addr_b);
        }
    });
    sock_b
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut pairs = Vec::new();
    for i in 0..runs + 5 {
        let (held_label, job_label) = (format!("n-{i}"), format!("j-{i}"));
        // Client B: forks the held child, which blocks on the pipe until
        // daemon B writes it, then execs the next job.
        let (rx, tx) = pipe()?;
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let mut held = stamp(&log, &held_label);
        let rx_fd = rx.as_raw_fd();
        // SAFETY: the closure only calls read(2) on an inherited fd, which
        // is async-signal-safe.
        unsafe {
            held.pre_exec(move || {
                let mut b = 0u8;
                libc::read(rx_fd, (&raw mut b).cast(), 1);
                Ok(())
            });
        }
        let client_b = std::thread::spawn(move || {
            // spawn returns once the child has exec'd, i.e. after the
            // release; `rx` stays open until then so the fork inherits it.
            let r = held.spawn();
            drop(rx);
            let r = r.and_then(|mut c| c.wait());
            let _ = spawned_tx.send(r.map(|s| s.success()).unwrap_or(false));
        });
        std::thread::sleep(Duration::from_millis(20));
        // Client A: runs the job, reaps it, tells daemon A.
        let st = stamp(&log, &job_label)
            .status()
            .map_err(|e| format!("cannot run {STAMP}: {e}"))?;
        to_daemon_a.write_all(&[1]).map_err(io)?;
        // Daemon B: the datagram → the release.
        let mut b = [0u8; 1];
        sock_b
            .recv(&mut b)
            .map_err(|e| format!("chain floor: no datagram from daemon A: {e}"))?;
        let mut tx = std::fs::File::from(tx);
        tx.write_all(&b).map_err(io)?;
        let ok = spawned_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "chain floor: the held child never ran".to_string())?;
        let _ = client_b.join();
        if !st.success() || !ok {
            return Err(format!("chain floor: {STAMP} failed"));
        }
        if i >= 5 {
            pairs.push((job_label, held_label));
        }
    }
    drop(to_daemon_a);
    let _ = daemon_a.join();
    let holds = read_holds(&log);
    let find = |l: &str| holds.iter().find(|h| h.label == l);
    let mut v = Vec::new();
    for (job, next) in pairs {
        if let (Some(j), Some(n)) = (find(&job), find(&next)) {
            v.push(n.start_ns.saturating_sub(j.last_ns) as f64 / 1e6);
        }
    }
    Ok(sorted(v))
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just opened by pipe2 and are owned by nobody else.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    })
}
