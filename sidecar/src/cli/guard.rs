//! The stop guard: a second stopper for a job holding cluster resources,
//! in a process of its own, so that the job cannot outlive both of its
//! supervisors at once.
//!
//! The stopper in `sc exec` ([`super::stopper`]) covers a daemon that is
//! killed, stopped or cut off; the daemon covers an `sc exec` that is
//! killed (it kills the job's cgroup when the connection drops). With both
//! gone at once — `sc exec` SIGKILLed while its daemon is SIGSTOPped, as
//! the 5-host chaos run with seed 2026 did — the job ran on unsupervised
//! while the other hosts, after T_down, granted its resource again.
//!
//! So `sc exec` starts `sc stop-guard` next to the job (in its own process
//! group, so terminal signals meant for the job do not reach it) and feeds
//! it every lease renewal on a pipe. The guard stops the job's cgroup —
//! freeze, then kill, through the cgroup's own files, like the stopper —
//! when the lease runs out or when the pipe closes without a last `end`
//! line (the kernel closes it when `sc exec` dies); `sc exec` writes `end`
//! when the command has ended. It never touches a pid it did not find in
//! the job's cgroup directories.

use super::stopper::{cgroup_dirs, stop_group};
use crate::boottime;
use clap::Args;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// Longest sleep between two looks at CLOCK_BOOTTIME (see the stopper).
const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The job, for messages.
    #[arg(long)]
    job: u64,
    /// The lease's deadline on CLOCK_BOOTTIME, in ms.
    #[arg(long)]
    until_ms: u64,
    /// The job's cgroup directories (repeated).
    #[arg(long = "dir", required = true)]
    dirs: Vec<PathBuf>,
    /// `sc exec --json`: say it as a JSON event.
    #[arg(long)]
    json: bool,
}

/// `sc exec`'s end of a running guard.
pub struct Guard {
    renewals: Option<ChildStdin>,
    process: Child,
}

impl Guard {
    /// Start a guard for job `job` whose child `child` runs in `cgroup` (the
    /// directory the grant named) on a lease until `until_ms`. `None` (after
    /// a warning) when it cannot start or the job has no cgroup: the
    /// stopper in `sc exec` and the daemon remain.
    pub fn spawn(
        job: u64,
        child: i32,
        cgroup: Option<&str>,
        until_ms: u64,
        json: bool,
    ) -> Option<Guard> {
        let dirs = cgroup_dirs(job, child, cgroup.map(std::path::Path::new));
        if dirs.is_empty() {
            return None;
        }
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("stop-guard")
            .arg("--job")
            .arg(job.to_string())
            .arg("--until-ms")
            .arg(until_ms.to_string());
        for d in &dirs {
            cmd.arg("--dir").arg(d);
        }
        if json {
            cmd.arg("--json");
        }
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0);
        match cmd.spawn() {
            Ok(mut process) => Some(Guard {
                renewals: process.stdin.take(),
                process,
            }),
            Err(e) => {
                eprintln!("sc: warning: cannot start the stop guard of job {job}: {e}");
                None
            }
        }
    }

    /// Pass a lease renewal on.
    pub fn renew(&mut self, until_ms: u64) {
        if let Some(w) = self.renewals.as_mut() {
            let _ = writeln!(w, "{until_ms}");
        }
    }

    /// The job's command has ended and `sc exec` reports it: the guard
    /// leaves without touching the group (what the command left behind is
    /// the daemon's to clean up, as for any job).
    pub fn finish(mut self) {
        if let Some(w) = self.renewals.as_mut() {
            let _ = writeln!(w, "end");
        }
    }
}

impl Drop for Guard {
    /// Closing the pipe without `end` (sc exec leaving on another path)
    /// makes the guard sweep the group and exit. Reaped if it already has;
    /// otherwise init reaps it once we are gone.
    fn drop(&mut self) {
        self.renewals.take();
        for _ in 0..20 {
            if !matches!(self.process.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `sc stop-guard`: wait for the deadline or the pipe's end, then stop the
/// group. Renewals are decimal deadlines, one per line.
pub fn main(args: GuardArgs) -> u8 {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // Only the lease or the pipe may end us, not a signal meant for the job.
    for sig in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut until = args.until_ms;
    let stdin = std::io::stdin();
    let mut pending = Vec::new();
    // Only a stop after `sc exec` died is ours to tell: at the lease's end
    // `sc exec` reports the lost lease itself.
    let gone = loop {
        let now = boottime::now_ms();
        if now >= until {
            break false;
        }
        let wait = Duration::from_millis(until - now).min(CHECK_EVERY);
        let mut fds = [nix::poll::PollFd::new(
            stdin.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(wait.as_millis() as i32)
            .unwrap_or(nix::poll::PollTimeout::NONE);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break true,
        }
        let mut buf = [0u8; 256];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line);
                    if line.trim() == "end" {
                        return 0;
                    }
                    if let Ok(ms) = line.trim().parse::<u64>() {
                        until = ms;
                    }
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => break true,
        }
    };
    let stopped = stop_group(&args.dirs);
    if gone && stopped.pids > 0 {
        let why = "its sc exec went away while it held cluster resources";
        let line = if args.json {
            serde_json::json!({"event": "guard_stopped", "job": args.job, "reason": why, "stopped_pids": stopped.pids})
                .to_string()
        } else {
            format!(
                "sc: job {}: {why}; stopped its {} process(es)",
                args.job, stopped.pids
            )
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    0
}
