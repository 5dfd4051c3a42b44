//! The stopper: a job holding cluster resources runs on a lease, and its
//! `sc exec` stops it when the lease runs out.
//!
//! The daemon renews the lease (`Response::Lease`) while the cluster still
//! grants the job its resources. When renewals stop — the daemon was
//! killed, SIGSTOPped or cut off from the quorum — the other hosts will hand
//! the resources on once the lease has expired, so by then the job must be
//! gone. The stop therefore cannot depend on the daemon: `sc exec` is the
//! job's parent, keeps the deadline itself (on CLOCK_BOOTTIME, see
//! `crate::boottime`) and freezes, then kills, the job's processes with
//! nothing but signals and the cgroup's own files (DESIGN §6).
//!
//! [`Lease`] is the deadline and the wait for it; [`stop_job`] is the
//! freeze-then-kill; [`lost_lease`] is what `sc exec` does when the
//! deadline passes (stop, reap, report, exit 125).

use super::EXIT_SC_ERROR;
use super::child::Ended;
use super::reattach::report_exit;
use super::report::Reporter;
use crate::boottime;
use crate::client::Conn;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sc_protocol::{ChildExit, ExecRequest, JobId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest sleep between two looks at the clock while a lease runs. Tokio's
/// timers run on CLOCK_MONOTONIC, which stands still while the machine is
/// suspended: one long sleep could overshoot a BOOTTIME deadline by the
/// whole suspend.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Rounds of "list the job's processes, stop the new ones": each round
/// catches what forked during the previous one; a fork bomb outrunning
/// eight rounds is still killed through `cgroup.kill`.
const FREEZE_ROUNDS: usize = 8;

/// The deadline by which the job must be stopped unless the daemon renews
/// the lease. Unarmed (no deadline) for a job without cluster resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    until_ms: Option<u64>,
}

impl Lease {
    /// From `Granted.lease_until_ms`.
    pub fn new(until_ms: Option<u64>) -> Lease {
        Lease { until_ms }
    }

    /// A `Response::Lease`: the new deadline replaces the old one, even an
    /// earlier one — the daemon knows when the cluster will re-grant the
    /// resources, so it may also revoke early. It also arms a lease the
    /// grant did not carry (a daemon that adopted the job after a restart).
    pub fn set(&mut self, until_ms: u64) {
        self.until_ms = Some(until_ms);
    }

    pub fn deadline(&self) -> Option<u64> {
        self.until_ms
    }

    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.until_ms.is_some_and(|until| now_ms >= until)
    }

    /// Time left at `now_ms`; `None` without a lease.
    pub fn remaining_at(&self, now_ms: u64) -> Option<Duration> {
        self.until_ms
            .map(|until| Duration::from_millis(until.saturating_sub(now_ms)))
    }

    /// Time left now.
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining_at(boottime::now_ms())
    }

    /// Completes once CLOCK_BOOTTIME reaches the deadline; never without
    /// one. Cancel-safe: meant to be re-created on every turn of a select
    /// loop, so a renewal takes effect on the next turn.
    pub async fn expired(&self) {
        let Some(until) = self.until_ms else {
            return std::future::pending().await;
        };
        loop {
            let now = boottime::now_ms();
            if self.expired_at(now) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(until - now).min(CHECK_EVERY)).await;
        }
    }
}

/// A job whose lease ran out, for [`lost_lease`].
pub struct LostLease<'a> {
    pub job: JobId,
    pub pid: i32,
    pub cgroup: Option<&'a str>,
    pub exec: &'a ExecRequest,
    pub lease: Lease,
    /// The child was already stopped and reaped (by the stop guard, which
    /// keeps the same deadline): nothing left to stop, and its pid may
    /// already belong to someone else.
    pub ended: Option<Ended>,
}

/// The lease ran out without a renewal: stop the job without the daemon
/// (freeze, kill, reap), say so, tell the daemon if it still listens, and
/// exit 125 — the command did not end, sc ended it.
pub async fn lost_lease<W>(
    stop: LostLease<'_>,
    waiter: W,
    conn: Option<&mut Conn>,
    rep: &mut Reporter,
) -> u8
where
    W: std::future::Future<Output = std::io::Result<Ended>> + Unpin,
{
    let LostLease {
        job,
        pid,
        cgroup,
        exec,
        lease,
        ended,
    } = stop;
    let late_ms = lease
        .deadline()
        .map(|d| crate::boottime::now_ms().saturating_sub(d));
    let (stopped, ended) = match ended {
        Some(e) => (Stopped::default(), Ok(Ok(e))),
        None => {
            let stopped = stop_job(job, pid, cgroup.map(std::path::Path::new));
            // SIGKILL ends even stopped processes at once; only a task stuck
            // in the kernel (D state) could outlast this, and then we leave
            // it to init.
            (
                stopped,
                tokio::time::timeout(Duration::from_secs(5), waiter).await,
            )
        }
    };
    let exit = match ended {
        Ok(Ok(Ended::Code(c))) => ChildExit::Code(c),
        Ok(Ok(Ended::Signal(s))) => ChildExit::Signal(s),
        _ => ChildExit::Signal(libc::SIGKILL),
    };
    let resources: Vec<String> = exec.needs.iter().map(|n| n.name.clone()).collect();
    rep.lost_lease(
        job,
        &resources,
        serde_json::json!({
            "deadline_ms": lease.deadline(), "late_ms": late_ms,
            "stopped_pids": stopped.pids, "cgroup_kill": stopped.cgroup_kill,
            "reaped": matches!(ended, Ok(Ok(_))),
        }),
    );
    if let Some(c) = conn {
        // Best effort: a stopped or partitioned daemon would hold us here.
        let _ =
            tokio::time::timeout(Duration::from_secs(1), report_exit(c, job, exit, false)).await;
    }
    EXIT_SC_ERROR
}

/// What [`stop_job`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Processes stopped and then killed.
    pub pids: usize,
    /// A `cgroup.kill` accepted our write.
    pub cgroup_kill: bool,
}

/// Freeze, then kill, every process of job `job`: the child `child`, the
/// pids in its cgroup (`cgroup`, the directory the grant named, plus the
/// job's cgroup in the unified hierarchy on a hybrid host), and its
/// descendants (all a host without cgroups lets us find).
///
/// Freezing first (SIGSTOP) stops every side effect at once, before the
/// slower work of listing and killing; SIGKILL then ends stopped processes
/// too. The cgroup freezer is not used: on cgroup v1 a frozen task does
/// not die of SIGKILL until thawed. Synchronous and quick on purpose: it
/// runs on the CLI's own thread, which does nothing else by then.
pub fn stop_job(job: u64, child: i32, cgroup: Option<&Path>) -> Stopped {
    let dirs = cgroup_dirs(job, child, cgroup);
    stop_all(&dirs, || job_pids(child, &dirs))
}

/// Freeze, then kill, every process listed in `dirs` (the job's cgroup
/// directories), and nothing else: for the stop guard, which outlives
/// `sc exec` and so cannot trust the child's pid any more.
pub fn stop_group(dirs: &[PathBuf]) -> Stopped {
    stop_all(dirs, || group_pids(dirs))
}

fn stop_all(dirs: &[PathBuf], list: impl Fn() -> BTreeSet<i32>) -> Stopped {
    let mut stopped = BTreeSet::new();
    for _ in 0..FREEZE_ROUNDS {
        let new: Vec<i32> = list()
            .into_iter()
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
    // A job paused through the v1 freezer would not die of SIGKILL until
    // thawed; thawing is safe now that every process is SIGSTOPped. (v2's
    // cgroup.freeze lets SIGKILL through.) Only if the file is ours to write.
    for dir in dirs {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("freezer.state"))
        {
            let _ = std::io::Write::write_all(&mut f, b"THAWED");
        }
    }
    let mut cgroup_kill = false;
    for dir in dirs {
        // Only an existing cgroup.kill (v2, Linux 5.14+), and only if we may
        // write it: a system daemon's job cgroups belong to root.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.kill"));
        if let Ok(mut f) = file {
            cgroup_kill |= std::io::Write::write_all(&mut f, b"1").is_ok();
        }
    }
    stopped.extend(list());
    for pid in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    Stopped {
        pids: stopped.len(),
        cgroup_kill,
    }
}

/// The job's cgroup directories: the one the grant named and, on a v1 or
/// hybrid host (where that one is one v1 hierarchy), the job's group in the
/// unified hierarchy (it has `cgroup.kill`) and in the v1 freezer. Those
/// are taken from `/proc/<child>/cgroup` only if they are the job's own
/// group (`…/jobs/<job>`): a child without a job cgroup sits in the user's
/// session group, which must not be killed.
pub fn cgroup_dirs(job: u64, child: i32, granted: Option<&Path>) -> Vec<PathBuf> {
    let Some(granted) = granted else {
        return Vec::new();
    };
    let mut dirs = vec![granted.to_path_buf()];
    let own = format!("/jobs/{job}");
    let text = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap_or_default();
    for line in text.lines() {
        // `ID:CONTROLLERS:PATH`; the unified hierarchy is `0::PATH`.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(rel)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !rel.ends_with(&own) {
            continue;
        }
        let roots: &[&str] = match (id, controllers) {
            ("0", "") => &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
            (_, c) if c.split(',').any(|c| c == "freezer") => &["/sys/fs/cgroup/freezer"],
            _ => &[],
        };
        for root in roots {
            let dir = Path::new(root).join(rel.trim_start_matches('/'));
            if dir.join("cgroup.procs").exists() && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// The child, the pids listed in `dirs`' `cgroup.procs`, and the child's
/// descendants; never init or ourselves.
fn job_pids(child: i32, dirs: &[PathBuf]) -> BTreeSet<i32> {
    let mut pids = group_pids(dirs);
    pids.insert(child);
    pids.extend(descendants(child));
    let me = std::process::id() as i32;
    pids.retain(|p| *p > 1 && *p != me);
    pids
}

/// The pids listed in `dirs`' `cgroup.procs`; never init or ourselves.
fn group_pids(dirs: &[PathBuf]) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    let me = std::process::id() as i32;
    pids.retain(|p| *p > 1 && *p != me);
    pids
}

/// Every process below `root`, from the parent pids in `/proc/*/stat`.
fn descendants(root: i32) -> Vec<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = parent_of_stat(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// The parent pid in a `/proc/<pid>/stat` line: `pid (comm) state ppid …`,
/// where comm may hold spaces and parentheses, so read after the last ')'.
fn parent_of_stat(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn lease_deadline_moves_with_renewals() {
        let mut l = Lease::default();
        assert!(!l.expired_at(u64::MAX));
        assert_eq!(l.remaining_at(5), None);
        l = Lease::new(Some(1000));
        assert!(!l.expired_at(999) && l.expired_at(1000));
        assert_eq!(l.remaining_at(400), Some(Duration::from_millis(600)));
        assert_eq!(l.remaining_at(4000), Some(Duration::ZERO));
        l.set(3000);
        assert!(!l.expired_at(2999));
        l.set(2000);
        assert_eq!(l.deadline(), Some(2000));
    }

    #[tokio::test]
    async fn expiry_wakes_at_the_deadline() {
        let until = boottime::now_ms() + 60;
        let lease = Lease::new(Some(until));
        tokio::time::timeout(Duration::from_secs(5), lease.expired())
            .await
            .unwrap();
        assert!(boottime::now_ms() >= until);
        let unarmed = Lease::default();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), unarmed.expired())
                .await
                .is_err()
        );
    }

    #[test]
    fn stat_parent_survives_odd_names() {
        assert_eq!(parent_of_stat("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of_stat("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent_of_stat("garbage"), None);
    }

    /// Without a cgroup the stopper still finds and kills the child's
    /// whole tree.
    #[test]
    fn stops_a_process_tree_without_cgroup() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while descendants(pid).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "sleeps not started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchildren = descendants(pid);
        let stopped = stop_job(1, pid, None);
        assert_eq!(stopped.pids, 3, "{stopped:?}");
        assert!(!stopped.cgroup_kill);
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        for g in grandchildren {
            // Reparented to init (or a subreaper) and killed: soon gone, or
            // a zombie waiting to be reaped (SIGKILL is delivered async).
            loop {
                let state = std::fs::read_to_string(format!("/proc/{g}/stat")).unwrap_or_default();
                if state.is_empty() || state.contains(") Z") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{g} alive: {state}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The pids in the cgroup are killed and `cgroup.kill` is written when
    /// present (a fake cgroup directory stands in for cgroupfs).
    #[test]
    fn stops_the_processes_of_the_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep").arg("300").spawn().unwrap();
        let mut other = Command::new("sleep").arg("300").spawn().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), format!("{}\n", other.id())).unwrap();
        std::fs::write(dir.path().join("cgroup.kill"), "").unwrap();
        let stopped = stop_job(1, child.id() as i32, Some(dir.path()));
        assert_eq!(stopped.pids, 2);
        assert!(stopped.cgroup_kill);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.kill")).unwrap(),
            "1"
        );
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(other.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
