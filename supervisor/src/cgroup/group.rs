//! [`Cgroup`]: one job or service group below the daemon's subtree, in the
//! hierarchies it was created in (or, when opened, found in). Membership,
//! limits, usage, freeze, kill and removal; controller details live in the
//! controller files, which reach a controller's directory only through
//! [`Cgroup::root`], so a hierarchy the group is not in is never touched.
//!
//! Must not: be constructed for a path outside the subtree (only
//! [`CgroupTree`](super::CgroupTree) builds one, from a validated name), or
//! signal the daemon's own process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Layout, Limits, Usage, cpu, freezer, fsio, kill, memory, pids};
use crate::Error;

/// One group, e.g. `jobs/17`. Cheap to clone; holds no file descriptors.
/// The set of hierarchies it is in is fixed when it is built (by `create`
/// or `open`); clones share it.
#[derive(Clone, Debug)]
pub struct Cgroup {
    rel: String,
    layout: Arc<Layout>,
    /// Subtree roots of the hierarchies the group is in, a subset of
    /// `layout.hierarchies()` in the same order (memory first).
    roots: Arc<[PathBuf]>,
}

impl Cgroup {
    pub(crate) fn new(rel: &str, layout: Arc<Layout>, roots: Vec<PathBuf>) -> Cgroup {
        Cgroup {
            rel: rel.to_owned(),
            layout,
            roots: roots.into(),
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This group's directory below a subtree root.
    pub(crate) fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.rel)
    }

    /// A role's subtree root (e.g. `&layout.cpu`) if the host has that
    /// controller and the group is in its hierarchy; `None` otherwise.
    pub(crate) fn root<'a>(&self, role: &'a Option<PathBuf>) -> Option<&'a PathBuf> {
        role.as_ref().filter(|r| self.roots.contains(r))
    }

    /// Whether the group can be frozen: in the core tree with
    /// `cgroup.freeze`, or in the v1 freezer.
    pub(crate) fn can_freeze(&self) -> bool {
        let l = &self.layout;
        (l.freeze2 && self.root(&l.core).is_some()) || self.root(&l.freezer).is_some()
    }

    /// The name relative to the subtree, as given to `create`/`open`.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// The group's directory in every hierarchy it is in, memory first when
    /// present. On a hybrid host a group created without CPU or pids limits
    /// has two: memory and the unified tree.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|r| self.dir(r)).collect()
    }

    /// Moves process `pid` into the group: writes `cgroup.procs` in every
    /// hierarchy the group is in (see [`paths`](Self::paths)).
    pub fn add_pid(&self, pid: u32) -> Result<(), Error> {
        for dir in self.paths() {
            fsio::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies `limits`; `None` fields remove that limit. Controllers that
    /// are not enforced in this tree are skipped.
    ///
    /// Limits cannot be added after creation for a controller whose v1
    /// hierarchy the group was not created in: a group created without a
    /// CPU (or pids) limit on a v1/hybrid host is not in the cpu (pids)
    /// hierarchy, and setting one later fails with [`Error::Unsupported`]
    /// before anything is written (pass every limit the group will ever need
    /// to [`CgroupTree::create`](super::CgroupTree::create)). Changing or
    /// clearing limits it was created with always works, and so does
    /// anything on pure v2 (one hierarchy).
    pub fn set_limits(&self, limits: &Limits) -> Result<(), Error> {
        self.apply_limits(limits, false)
    }

    /// [`set_limits`](Self::set_limits); with `fresh` (every directory of
    /// the group was just created, so it holds the kernel's defaults, which
    /// are "no limit") the writes for `None` fields are skipped: on v1 they
    /// cost about 0.1 ms for nothing.
    pub(crate) fn apply_limits(&self, limits: &Limits, fresh: bool) -> Result<(), Error> {
        let l = &self.layout;
        let missing = [
            ("memory", &l.memory, limits.mem_max.or(limits.mem_high)),
            ("cpu", &l.cpu, limits.cpu_milli.map(u64::from)),
            ("pids", &l.pids, limits.pids_max),
        ]
        .into_iter()
        .find(|(_, role, limit)| limit.is_some() && role.is_some() && self.root(role).is_none());
        if let Some((name, _, _)) = missing {
            return Err(Error::Unsupported {
                what: "adding a limit after creation",
                backend: format!(
                    "cgroup v1: group {} was created without a {name} limit, so it is not in \
                     the {name} hierarchy; pass the limit to create()",
                    self.rel
                ),
            });
        }
        memory::apply(self, limits, fresh)?;
        cpu::apply(self, limits, fresh)?;
        pids::apply(self, limits, fresh)
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
    /// (recursive) on v2 and the unified tree, `cgroup.procs` on v1 (each
    /// hierarchy the group is in).
    pub fn is_populated(&self) -> Result<bool, Error> {
        let core = self.root(&self.layout.core);
        if let Some(core) = core {
            let path = self.dir(core).join("cgroup.events");
            let text = fsio::read_opt(&path)?;
            if text.is_some_and(|t| fsio::keyed(&t, "populated") == Some("1")) {
                return Ok(true);
            }
        }
        for root in self.roots.iter().filter(|r| Some(*r) != core) {
            let path = self.dir(root).join("cgroup.procs");
            if fsio::read_opt(&path)?.is_some_and(|t| !t.trim().is_empty()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Freezes every process: v2/unified `cgroup.freeze`, else the v1
    /// freezer, whichever the group is in ([`Error::Unsupported`] if in
    /// neither). Waits up to 1 s for the kernel to report frozen; on timeout
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

    /// Reads memory, CPU and OOM accounting; missing files give `None`. CPU
    /// time comes from the v2 / unified `cpu.stat` `usage_usec` when the
    /// group is in that tree, else from v1 `cpuacct.usage`.
    /// Memory in use now; `None` without a memory controller.
    pub fn mem_current(&self) -> Result<Option<u64>, Error> {
        memory::current(self)
    }

    pub fn usage(&self) -> Result<Usage, Error> {
        let mut usage = memory::usage(self)?;
        usage.cpu_time_us = cpu::usage_us(self)?;
        Ok(usage)
    }

    /// Removes the group in every hierarchy it is in (child groups first),
    /// killing any remaining processes first. Idempotent: a missing group is
    /// `Ok`.
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
