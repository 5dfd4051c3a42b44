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
//! So `sc exec` starts a guard process as soon as it knows the job needs
//! cluster resources, while the job queues: forked (or, when it cannot
//! fork safely or `SC_STOP_GUARD=exec` says so, `sc stop-guard`), in its
//! own process group so that
//! terminal signals meant for the job do not reach it. It arms it at the
//! grant with the job's cgroup directories and lease, then feeds it every
//! renewal on a pipe. Armed, the guard stops the job's cgroup — freeze, then kill,
//! through the cgroup's own files, like the stopper — when the lease runs
//! out or when the pipe closes without a last `end` line (the kernel closes
//! it when `sc exec` dies). Unarmed, a closed pipe just ends it. It never
//! touches a pid it did not find in the job's cgroup directories.
//!
//! The pipe carries lines: `job N`, `dir PATH` (repeated), `lease MS` (arms
//! the guard, then renews), `end`.

use super::stopper::{cgroup_dirs, stop_group};
use crate::boottime;
use clap::Args;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Longest sleep between two looks at CLOCK_BOOTTIME (see the stopper).
const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// `sc exec --json`: say it as a JSON event.
    #[arg(long)]
    json: bool,
}

/// `sc exec`'s end of a running guard.
pub struct Guard {
    pipe: Option<std::fs::File>,
    /// An exec'd guard, kept so that it is not reaped before we are gone
    /// (init reaps it, as it reaps a forked one).
    _process: Option<Child>,
}

impl Guard {
    /// Start an unarmed guard. `None` (after a warning) when it cannot
    /// start: the stopper in `sc exec` and the daemon remain.
    ///
    /// Forked without exec when this process has a single thread (as
    /// `sc exec` has when it queues: its runtime is current-thread), else
    /// `sc stop-guard` is started. A fork costs a fraction of starting the
    /// `sc` binary again, and every `--needs` job pays it while another
    /// host's job is handing its resource over on the same cores.
    pub fn spawn(json: bool) -> Option<Guard> {
        // `SC_STOP_GUARD=exec` takes the fallback on purpose, so that it can
        // be tested (and ruled out when chasing a problem).
        let exec_only = std::env::var_os("SC_STOP_GUARD").is_some_and(|v| v == "exec");
        if !exec_only && single_threaded() {
            // A failed fork falls through to starting `sc stop-guard`.
            if let Ok(pipe) = fork_guard(json) {
                return Some(Guard {
                    pipe: Some(pipe),
                    _process: None,
                });
            }
        }
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("stop-guard");
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
                pipe: process
                    .stdin
                    .take()
                    .map(|w| std::fs::File::from(std::os::fd::OwnedFd::from(w))),
                _process: Some(process),
            }),
            Err(e) => {
                eprintln!("sc: warning: cannot start the stop guard: {e}");
                None
            }
        }
    }

    /// The job was granted: its child `child` runs in `cgroup` (the
    /// directory the grant named) on a lease until `until_ms`.
    pub fn arm(&mut self, job: u64, child: i32, cgroup: Option<&str>, until_ms: u64) {
        let dirs = cgroup_dirs(job, child, cgroup.map(std::path::Path::new));
        let mut msg = format!("job {job}\n");
        for d in &dirs {
            msg.push_str(&format!("dir {}\n", d.display()));
        }
        msg.push_str(&format!("lease {until_ms}\n"));
        self.send(&msg);
    }

    /// Pass a lease renewal on.
    pub fn renew(&mut self, until_ms: u64) {
        self.send(&format!("lease {until_ms}\n"));
    }

    /// The job's command has ended and `sc exec` reports it: the guard
    /// leaves without touching the group (what the command left behind is
    /// the daemon's to clean up, as for any job).
    pub fn finish(mut self) {
        self.send("end\n");
    }

    fn send(&mut self, msg: &str) {
        if let Some(w) = self.pipe.as_mut() {
            let _ = w.write_all(msg.as_bytes());
        }
    }
}

/// Does this process run a single thread? Only then may a child forked
/// from it run ordinary code (allocate, take std's locks) without exec:
/// no other thread can have held a lock at the fork.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Fork the guard: its stdin is the read end of a new pipe, stdout is
/// /dev/null, every other descriptor but stderr is closed (the held
/// child's release pipe above all: a copy here would keep the held child
/// waiting after `sc exec` died), and it runs [`main`] in a process group
/// of its own, then `_exit`s. Returns the pipe's write end.
fn fork_guard(json: bool) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: this process has a single thread (checked by the caller), so
    // the child may run ordinary code; it ends in `_exit`, never returning
    // into the caller's runtime.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => unsafe {
            libc::setpgid(0, 0);
            // Its command line is `sc exec`'s; `ps -o comm` and top tell it.
            libc::prctl(libc::PR_SET_NAME, c"sc-stop-guard".as_ptr());
            if libc::dup2(r.as_raw_fd(), 0) < 0 || libc::dup2(devnull.as_raw_fd(), 1) < 0 {
                libc::_exit(0);
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let code = main(GuardArgs { json });
            libc::_exit(i32::from(code));
        },
        nix::unistd::ForkResult::Parent { .. } => Ok(std::fs::File::from(w)),
    }
}

/// What the guard has been told.
#[derive(Debug, Default)]
struct Orders {
    job: u64,
    dirs: Vec<PathBuf>,
    until_ms: Option<u64>,
    ended: bool,
}

impl Orders {
    fn take(&mut self, line: &str) {
        let line = line.trim_end_matches('\n');
        if line == "end" {
            self.ended = true;
        } else if let Some(n) = line.strip_prefix("job ") {
            self.job = n.trim().parse().unwrap_or(0);
        } else if let Some(d) = line.strip_prefix("dir ") {
            self.dirs.push(PathBuf::from(d));
        } else if let Some(ms) = line.strip_prefix("lease ")
            && let Ok(ms) = ms.trim().parse()
        {
            self.until_ms = Some(ms);
        }
    }

    fn armed(&self) -> bool {
        self.until_ms.is_some() && !self.dirs.is_empty()
    }
}

/// `sc stop-guard`: wait for orders; once armed, for the deadline or the
/// pipe's end, then stop the group.
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
    let mut orders = Orders::default();
    let stdin = std::io::stdin();
    let mut pending = Vec::new();
    // Only a stop after `sc exec` died is ours to tell: at the lease's end
    // `sc exec` reports the lost lease itself.
    let gone = loop {
        let wait = match orders.until_ms.filter(|_| orders.armed()) {
            Some(until) => {
                let now = boottime::now_ms();
                if now >= until {
                    break false;
                }
                let ms = Duration::from_millis(until - now)
                    .min(CHECK_EVERY)
                    .as_millis();
                nix::poll::PollTimeout::try_from(ms as i32).unwrap_or(nix::poll::PollTimeout::NONE)
            }
            None => nix::poll::PollTimeout::NONE,
        };
        let mut fds = [nix::poll::PollFd::new(
            stdin.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break true,
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    orders.take(&String::from_utf8_lossy(&line));
                }
                if orders.ended {
                    return 0;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => break true,
        }
    };
    if !orders.armed() {
        // Never granted: nothing of the job runs.
        return 0;
    }
    let stopped = stop_group(&orders.dirs);
    if gone && stopped.pids > 0 {
        let why = "its sc exec went away while it held cluster resources";
        let line = if args.json {
            serde_json::json!({"event": "guard_stopped", "job": orders.job, "reason": why, "stopped_pids": stopped.pids})
                .to_string()
        } else {
            format!(
                "sc: job {}: {why}; stopped its {} process(es)",
                orders.job, stopped.pids
            )
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::Orders;

    #[test]
    fn orders_arm_only_with_a_lease_and_a_group() {
        let mut o = Orders::default();
        o.take("job 7\n");
        o.take("lease 1000\n");
        assert!(!o.armed(), "no group yet");
        o.take("dir /sys/fs/cgroup/x/jobs/7\n");
        assert!(o.armed());
        assert_eq!(o.job, 7);
        o.take("lease 2000\n");
        assert_eq!(o.until_ms, Some(2000));
        o.take("lease nonsense\n");
        assert_eq!(o.until_ms, Some(2000), "a bad line changes nothing");
        o.take("end\n");
        assert!(o.ended);
    }
}
