//! Cgroups for sc: the daemon's own subtree ([`CgroupTree`]) and the job
//! and service groups in it ([`Cgroup`]), on cgroup v2, cgroup v1 (with the
//! hybrid unified tree for freeze/kill when present), or none. Everything is
//! plain reads and writes of cgroupfs files; the cgroupfs location always
//! comes from detection, so tests point it at a temp directory.
//!
//! Layout: `detect` (which hierarchies, where), `tree` (subtree: create,
//! open, list, cleanup), `group` (one group: processes, limits, usage,
//! removal), one file per controller (`memory`, `cpu`, `pids`, `freezer`),
//! `kill` (kill/signal every process) and `fsio` (file access).
//!
//! A group lives only in the hierarchies it needs (`Layout::hierarchies_for`):
//! on v1 every extra hierarchy costs a mkdir, a `cgroup.procs` write per
//! placed process and an rmdir. On a hybrid host a group without limits is
//! in memory (limits and accounting) and the unified tree (freeze, kill,
//! populated, CPU time from `cpu.stat`) only; v1 cpu and pids are added for
//! a CPU or pids limit, v1 cpuacct and freezer only without a usable unified
//! tree. Each [`Cgroup`] knows the hierarchies it is in and touches only those.
//!
//! Must not: write to any cgroup outside `<own cgroup>/<instance>` except
//! enabling controllers in the own cgroup's `cgroup.subtree_control` on v2
//! and, when asked (`leaf`), moving the daemon into `<own cgroup>/<leaf>`;
//! remove the own cgroup; use the network; or block for longer than the
//! bounded waits documented on each method (callers in async code should
//! use `spawn_blocking`).

mod cpu;
mod detect;
mod freezer;
mod fsio;
mod group;
mod kill;
mod leaf;
mod memory;
mod pids;
mod tree;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_leaf;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_placement;

use std::fmt;
use std::path::PathBuf;

pub use fsio::read_pseudo;
pub use group::Cgroup;
pub use leaf::{LeafMove, move_into_leaf, v2_path};
pub use tree::CgroupTree;

/// Resource limits for one group. `None` means "no limit" (written as
/// `max` / `-1`). `Default` is no limits at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Hard memory limit in bytes (v2 `memory.max`, v1 `memory.limit_in_bytes`
    /// and `memory.memsw.limit_in_bytes`).
    pub mem_max: Option<u64>,
    /// Reclaim threshold in bytes (v2 `memory.high`, v1
    /// `memory.soft_limit_in_bytes`).
    pub mem_high: Option<u64>,
    /// CPU bandwidth in thousandths of a CPU: 1500 = 1.5 CPUs. Values below
    /// 10 are raised to 10 (the kernel's minimum quota of 1 ms per 100 ms).
    /// On v1 only a group created with `Some` is in the cpu hierarchy, so it
    /// cannot be added later (see [`Cgroup::set_limits`]).
    pub cpu_milli: Option<u32>,
    /// Maximum number of tasks (`pids.max`). Like `cpu_milli`, on v1 it
    /// must be given at creation to be set later.
    pub pids_max: Option<u64>,
}

/// Accounting read from a group. `None` where the backend or kernel does
/// not provide the number (e.g. `memory.peak` before Linux 5.19).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Current memory use in bytes.
    pub mem_current: Option<u64>,
    /// Highest memory use in bytes since the group was created.
    pub mem_peak: Option<u64>,
    /// CPU time used by the group, in microseconds.
    pub cpu_time_us: Option<u64>,
    /// How many processes the kernel OOM-killed inside the group.
    pub oom_kills: Option<u64>,
}

/// Which cgroup backend the daemon runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Pure cgroup v2 (unified hierarchy with controllers).
    V2,
    /// cgroup v1 controllers; `unified` is true when a cgroup2 tree is also
    /// mounted and used for freeze/kill and CPU time (hybrid hosts).
    V1 { unified: bool },
    /// No usable cgroups: nothing is enforced.
    None,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::V2 => "cgroup v2",
            BackendKind::V1 { unified: true } => "cgroup v1 (+unified for freeze/kill)",
            BackendKind::V1 { unified: false } => "cgroup v1",
            BackendKind::None => "none",
        })
    }
}

/// What `sc status` shows about cgroups on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// Subset of `["memory", "cpu", "pids", "freeze", "kill"]` that works
    /// for groups created in this tree.
    pub enforced: Vec<String>,
    /// Why something from that list is missing; `None` when all of it works.
    pub not_enforced_reason: Option<String>,
    /// The daemon's subtree directory in every hierarchy used.
    pub root: Vec<PathBuf>,
}

/// Where the daemon's subtree lives in each hierarchy, per role, and which
/// features work there. Every `Some` path is a subtree root
/// (`<own cgroup dir>/<instance>`); a group's directory is `root.join(rel)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// True on pure v2: controller files have v2 names and formats.
    pub v2: bool,
    /// Memory controller (v2: the one tree, only if enabled for us).
    pub memory: Option<PathBuf>,
    /// CPU bandwidth controller.
    pub cpu: Option<PathBuf>,
    /// v1 cpuacct (CPU time accounting); `None` on v2.
    pub cpuacct: Option<PathBuf>,
    /// pids controller.
    pub pids: Option<PathBuf>,
    /// v1 freezer hierarchy; `None` on v2.
    pub freezer: Option<PathBuf>,
    /// v2 tree, or the hybrid unified tree: `cgroup.procs`, `cgroup.events`,
    /// `cgroup.freeze`, `cgroup.kill`, `cpu.stat`.
    pub core: Option<PathBuf>,
    /// `cgroup.freeze` exists in `core`.
    pub freeze2: bool,
    /// `cgroup.kill` exists in `core`.
    pub kill2: bool,
    /// `cpu.stat` exists in `core` (cgroup2 keeps `usage_usec` in every
    /// non-root group, cpu controller or not): CPU time without v1 cpuacct.
    pub cpu_stat2: bool,
    /// v2 controllers to enable in intermediate groups' `cgroup.subtree_control`.
    pub v2_controllers: Vec<&'static str>,
}

impl Layout {
    /// Every role's subtree root in a fixed order: memory, cpu, cpuacct,
    /// pids, freezer, core.
    fn roles(&self) -> [&Option<PathBuf>; 6] {
        [
            &self.memory,
            &self.cpu,
            &self.cpuacct,
            &self.pids,
            &self.freezer,
            &self.core,
        ]
    }

    /// Every distinct hierarchy's subtree root (co-mounted controllers share
    /// one), memory first when present.
    pub(crate) fn hierarchies(&self) -> Vec<PathBuf> {
        self.select(|_| true)
    }

    /// Distinct roots of the roles for which `keep(role index)` holds, in
    /// [`roles`](Self::roles) order.
    fn select(&self, keep: impl Fn(usize) -> bool) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (i, role) in self.roles().into_iter().enumerate() {
            if let Some(p) = role
                && keep(i)
                && !out.contains(p)
            {
                out.push(p.clone());
            }
        }
        out
    }

    /// The hierarchies a new group with `limits` must be created in: memory
    /// and the core (v2 / unified) tree always; v1 cpu only for a CPU limit
    /// and pids only for a pids limit; v1 cpuacct only when the core tree
    /// has no `cpu.stat`, the v1 freezer only when the core tree cannot
    /// freeze. Never empty on a usable layout: with none of those present,
    /// the first hierarchy, so the group still tracks its processes. On v2
    /// this is the one tree.
    pub(crate) fn hierarchies_for(&self, limits: &Limits) -> Vec<PathBuf> {
        let unified_cpu = self.core.is_some() && self.cpu_stat2;
        let need = [
            true,
            limits.cpu_milli.is_some(),
            !unified_cpu,
            limits.pids_max.is_some(),
            !self.freeze2,
            true,
        ];
        let out = self.select(|i| need[i]);
        if out.is_empty() {
            return self.hierarchies().into_iter().take(1).collect();
        }
        out
    }

    /// Whether any freezer (v2/unified `cgroup.freeze` or v1 freezer) exists.
    pub(crate) fn can_freeze(&self) -> bool {
        self.freeze2 || self.freezer.is_some()
    }
}
