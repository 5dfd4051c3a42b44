//! [`Cgroup`]: one job or service group below the daemon's subtree, in
//! every hierarchy the tree uses. Membership, limits, usage, freeze, kill
//! and removal; controller details live in the controller files.
//!
//! Must not: be constructed for a path outside the subtree (only
//! [`CgroupTree`](super::CgroupTree) builds one, from a validated name), or
//! signal the daemon's own process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Layout, Limits, Usage, cpu, freezer, fsio, kill, memory, pids};
use crate::Error;

/// One group, e.g. `jobs/17`. Cheap to clone; holds no file descriptors.
#[derive(Clone, Debug)]
pub struct Cgroup {
    rel: String,
    layout: Arc<Layout>,
}

impl Cgroup {
    pub(crate) fn new(rel: &str, layout: Arc<Layout>) -> Cgroup {
        Cgroup {
            rel: rel.to_owned(),
            layout,
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This group's directory below a subtree root.
    pub(crate) fn dir(&self, root: &std::path::Path) -> PathBuf {
        root.join(&self.rel)
    }

    /// The name relative to the subtree, as given to `create`/`open`.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The group's directory in every hierarchy used.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.layout
            .hierarchies()
            .iter()
            .map(|r| self.dir(r))
            .collect()
    }

    /// Moves process `pid` into the group: writes `cgroup.procs` in every
    /// hierarchy (v1: memory, cpu, cpuacct, pids, freezer; plus the unified
    /// tree when present).
    pub fn add_pid(&self, pid: u32) -> Result<(), Error> {
        for dir in self.paths() {
            fsio::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies `limits`; `None` fields remove that limit. Controllers that
    /// are not enforced in this tree are skipped.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), Error> {
        memory::apply(self, limits)?;
        cpu::apply(self, limits)?;
        pids::apply(self, limits)
    }

    /// Every process directly in the group (union over hierarchies, sorted).
    /// A hierarchy where the group does not exist contributes nothing.
    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        for dir in self.paths() {
            let path = dir.join("cgroup.procs");
            let Some(text) = fsio::read_opt(&path)? else {
                continue;
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                out.push(line.trim().parse().map_err(|_| Error::Parse {
                    path: path.clone(),
                    detail: format!("expected a pid, got {line:?}"),
                })?);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Whether any process is in the group: `cgroup.events` `populated`
    /// (recursive) on v2 and the unified tree, `cgroup.procs` on v1.
    pub fn is_populated(&self) -> Result<bool, Error> {
        if let Some(core) = &self.layout.core {
            let path = self.dir(core).join("cgroup.events");
            let text = fsio::read_opt(&path)?;
            if text.is_some_and(|t| fsio::keyed(&t, "populated") == Some("1")) {
                return Ok(true);
            }
        }
        for dir in self.layout.v1_hierarchies() {
            let path = self.dir(&dir).join("cgroup.procs");
            if fsio::read_opt(&path)?.is_some_and(|t| !t.trim().is_empty()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Freezes every process: v2/unified `cgroup.freeze`, else the v1
    /// freezer. Waits up to 1 s for the kernel to report frozen; on timeout
    /// returns [`Error::Timeout`] with the freeze still requested.
    pub fn freeze(&self) -> Result<(), Error> {
        freezer::freeze(self)
    }

    /// Thaws the group (does not wait).
    pub fn thaw(&self) -> Result<(), Error> {
        freezer::thaw(self)
    }

    /// Whether the kernel reports the group frozen (`false` without a freezer).
    pub fn is_frozen(&self) -> Result<bool, Error> {
        freezer::is_frozen(self)
    }

    /// Kills every process: `cgroup.kill` where present, else freeze,
    /// SIGKILL each process, thaw, repeated. Returns `Ok` once the group is
    /// empty, [`Error::Timeout`] if it is not after about 2 s.
    pub fn kill_all(&self) -> Result<(), Error> {
        kill::kill_all(self)
    }

    /// Sends `sig` to every process in the group (processes that already
    /// exited are skipped). For SIGTERM-then-SIGKILL stops.
    pub fn signal_all(&self, sig: Signal) -> Result<(), Error> {
        kill::signal_all(self, sig)
    }

    /// Reads memory, CPU and OOM accounting; missing files give `None`.
    pub fn usage(&self) -> Result<Usage, Error> {
        let mut usage = memory::usage(self)?;
        usage.cpu_time_us = cpu::usage_us(self)?;
        Ok(usage)
    }

    /// Removes the group in every hierarchy (child groups first), killing
    /// any remaining processes first. Idempotent: a missing group is `Ok`.
    pub fn remove(&self) -> Result<(), Error> {
        let mut kill_err = None;
        if self.is_populated()? {
            kill_err = self.kill_all().err();
        }
        let mut first = None;
        for dir in self.paths() {
            let mut dirs = fsio::descendants_deepest_first(&dir)?;
            dirs.push(dir);
            for d in dirs {
                if let Err(e) = fsio::rmdir(&d, Duration::from_secs(1)) {
                    first.get_or_insert(e);
                }
            }
        }
        // A kill that timed out explains a failed rmdir better than EBUSY.
        match first {
            None => Ok(()),
            Some(e) => Err(kill_err.unwrap_or(e)),
        }
    }
}
