//! What a run owns outside its namespaces, and how a later run finds what a
//! crashed one left behind.
//!
//! Everything a run creates on disk is in one directory,
//! `$TMPDIR/sc-chaos-<pid>-XXXX`: configs, certificates, state dirs,
//! sockets, logs, the stamp log. Every process it starts (daemons, clients,
//! jobs, the service) has that path on its command line, so "our processes"
//! are exactly those; the cgroup subtrees the daemons reported are listed in
//! `cgroups.txt` there. A run whose harness pid is no longer an `sc-chaos`
//! is stale: its processes are killed, its cgroups and directory removed.

pub use sc_tests::processes_mentioning;
use std::path::{Path, PathBuf};

/// Whether `pid` is a running sc-chaos (not a reused pid).
pub fn harness_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim() == "sc-chaos")
        .unwrap_or(false)
}

/// SIGKILL every process mentioning `dir`, until none is left (a daemon
/// may start a service while we kill; a few rounds settle it).
pub fn kill_processes_mentioning(dir: &Path) -> usize {
    let mut killed = 0;
    for _ in 0..20 {
        let procs = processes_mentioning(dir);
        if procs.is_empty() {
            break;
        }
        for (pid, _) in &procs {
            crate::util::signal(*pid, libc::SIGKILL);
        }
        killed += procs.len();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed
}

/// Whether a cgroup path is one we may remove: below /sys/fs/cgroup, not a
/// hierarchy root, and a daemon's `sc-<hash>` subtree or below.
pub fn removable_cgroup(p: &Path) -> bool {
    p.starts_with("/sys/fs/cgroup")
        && p.components().count() > 5
        && p.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with("sc-"))
}

/// Kill what is left in the cgroup tree at `dir`, then remove it (deepest
/// first).
pub fn remove_cgroup_tree(dir: &Path) {
    if !removable_cgroup(dir) {
        return;
    }
    sc_tests::kill_cgroup_procs(dir);
    std::thread::sleep(std::time::Duration::from_millis(20));
    sc_tests::remove_cgroup_tree(dir);
}

/// Record a daemon's cgroup subtree in the run dir (for stale cleanup).
pub fn note_cgroups(run_dir: &Path, subtrees: &[PathBuf]) {
    let f = run_dir.join("cgroups.txt");
    let mut known: Vec<String> = std::fs::read_to_string(&f)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for s in subtrees {
        let s = s.to_string_lossy().into_owned();
        if !known.contains(&s) {
            known.push(s);
        }
    }
    let _ = std::fs::write(&f, known.join("\n"));
}

pub fn noted_cgroups(run_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(run_dir.join("cgroups.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Remove what crashed runs left: run dirs (with their processes and
/// cgroups) and namespaces of harness pids that are gone. Returns a line
/// per thing removed.
pub fn clean_stale() -> Vec<String> {
    let mut done = Vec::new();
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("sc-chaos-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if harness_alive(pid) {
                continue;
            }
            let dir = e.path();
            let killed = kill_processes_mentioning(&dir);
            for cg in noted_cgroups(&dir) {
                remove_cgroup_tree(&cg);
            }
            let _ = std::fs::remove_dir_all(&dir);
            done.push(format!(
                "run dir {} ({killed} processes killed)",
                dir.display()
            ));
        }
    }
    for ns in crate::net::remove_stale_namespaces() {
        done.push(format!("namespace {ns}"));
    }
    done
}
