//! The lab: everything one run created (run dir, network, daemons,
//! clients) and its orderly removal, which also runs when the run is
//! interrupted or panics (`Drop`). Removal doubles as invariant (e): after
//! the daemons stopped, nothing of ours may be left running, and no job
//! cgroup may be left in the daemons' subtrees.

use crate::check::Verdict;
use crate::guard;
use crate::hosts::Host;
use crate::net::Net;
use crate::workload::Workload;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Lab {
    pub dir: Option<tempfile::TempDir>,
    pub net: Option<Arc<Mutex<Net>>>,
    pub hosts: Vec<Host>,
    pub workload: Option<Workload>,
    /// Every cgroup subtree a daemon reported.
    pub subtrees: Vec<PathBuf>,
    pub keep: bool,
    done: bool,
}

impl Lab {
    pub fn new(keep: bool) -> Result<Lab, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sc-chaos-{}-", std::process::id()))
            .tempdir()
            .map_err(|e| format!("create run dir: {e}"))?;
        // Daemons and jobs all run as root here, but keep it readable for a
        // person inspecting a kept run.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        Ok(Lab {
            dir: Some(dir),
            net: None,
            hosts: Vec::new(),
            workload: None,
            subtrees: Vec::new(),
            keep,
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("run dir").path()
    }

    /// Stop clients, then daemons (SIGTERM, SIGKILL after `grace`).
    pub fn stop_all(&mut self, grace: Duration) {
        if let Some(w) = self.workload.as_mut() {
            w.kill_all_and_reap(Duration::from_secs(5));
            w.finish();
        }
        for h in &mut self.hosts {
            h.stop(grace);
        }
    }

    /// (e): what is left of ours after the daemons stopped.
    pub fn orphans(&self) -> Verdict {
        let mut v = Verdict {
            name: "(e) no orphan process or cgroup",
            pass: true,
            summary: String::new(),
            details: Vec::new(),
            kinds: Default::default(),
            notes: Vec::new(),
        };
        // A moment for the kernel to finish killing what the daemons killed.
        std::thread::sleep(Duration::from_millis(300));
        let procs = guard::processes_mentioning(self.path());
        for (pid, cmd) in &procs {
            v.pass = false;
            v.details
                .push(format!("process {pid} still running: {cmd}"));
        }
        let mut job_groups = 0;
        for s in &self.subtrees {
            for (dir, pids) in cgroups_below(s) {
                let rel = dir
                    .strip_prefix(s)
                    .unwrap_or(&dir)
                    .to_string_lossy()
                    .into_owned();
                let is_job = rel.starts_with("jobs/");
                if is_job {
                    job_groups += 1;
                }
                if !pids.is_empty() || is_job {
                    v.pass = false;
                    *v.kinds.entry("cgroup left").or_default() += 1;
                    v.details.push(format!(
                        "cgroup {} left{}",
                        dir.display(),
                        if pids.is_empty() {
                            String::new()
                        } else {
                            format!(" with processes {pids:?}")
                        }
                    ));
                } else if rel.contains('/') {
                    v.notes.push(format!(
                        "empty cgroup {} left by a stopped daemon",
                        dir.display()
                    ));
                }
            }
        }
        v.summary = format!(
            "{} processes and {job_groups} job cgroups left after teardown, {} subtrees checked",
            procs.len(),
            self.subtrees.len()
        );
        v
    }

    /// Remove everything (idempotent).
    pub fn teardown(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.stop_all(Duration::from_secs(5));
        if let Some(dir) = &self.dir {
            let n = guard::kill_processes_mentioning(dir.path());
            if n > 0 {
                eprintln!("sc-chaos: killed {n} leftover processes");
            }
        }
        for s in &self.subtrees {
            guard::remove_cgroup_tree(s);
        }
        // Namespaces go with the last reference to the net.
        if let Some(net) = self.net.take() {
            match Arc::try_unwrap(net) {
                Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()).teardown(),
                Err(arc) => arc.lock().unwrap_or_else(|p| p.into_inner()).teardown(),
            }
        }
        if let Some(dir) = self.dir.take() {
            if self.keep {
                let kept = dir.keep();
                // Renamed out of the `sc-chaos-<pid>-` pattern, so stale
                // cleanup leaves it alone.
                let name = kept.file_name().unwrap().to_string_lossy().replacen(
                    "sc-chaos-",
                    "sc-chaos-kept-",
                    1,
                );
                let to = kept.with_file_name(name);
                let shown = if std::fs::rename(&kept, &to).is_ok() {
                    to
                } else {
                    kept
                };
                eprintln!("sc-chaos: run dir kept at {}", shown.display());
            } else if let Err(e) = dir.close() {
                eprintln!("sc-chaos: cannot remove the run dir: {e}");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sc-chaos: panicked; cleaning up");
        }
        self.teardown();
    }
}

/// Every cgroup dir strictly below `root`, with the pids in it.
fn cgroups_below(root: &Path) -> Vec<(PathBuf, Vec<u32>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let p = e.path();
                let pids = std::fs::read_to_string(p.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                out.push((p.clone(), pids));
                todo.push(p);
            }
        }
    }
    out
}
