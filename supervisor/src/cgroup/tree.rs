//! [`CgroupTree`]: the daemon's own subtree `<own cgroup>/<instance>` in
//! every hierarchy it uses. Detection, backend info, and creating, opening,
//! listing and finally removing groups below it.
//!
//! Must not: touch anything above the subtree (detection in `detect` is the
//! one place allowed to write the own cgroup's `cgroup.subtree_control`), or
//! remove a group that still holds processes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::detect::{self, Reason};
use super::{BackendInfo, BackendKind, Cgroup, Layout, Limits, fsio};
use crate::Error;

/// The daemon's own subtree. Always below the cgroup the daemon process is
/// in (per controller on v1, read from `/proc/self/cgroup`), never at a
/// hierarchy root.
#[derive(Clone, Debug)]
pub struct CgroupTree {
    kind: BackendKind,
    /// `None` exactly when `kind` is [`BackendKind::None`].
    layout: Option<Arc<Layout>>,
    reasons: Vec<Reason>,
}

const FEATURES: [&str; 5] = ["memory", "cpu", "pids", "freeze", "kill"];

impl CgroupTree {
    /// Detects from `/proc/self/cgroup` and `/proc/self/mountinfo` and
    /// creates (or reuses) `<own cgroup>/<instance>` in every hierarchy.
    /// `instance` is a short name unique per daemon instance (e.g.
    /// `"sc-1a2b3c4d"`). A host without usable cgroups (not root, no write
    /// access, no mounts) gives [`BackendKind::None`] with a reason.
    pub fn detect(instance: &str) -> CgroupTree {
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("read {p}: {e}"));
        match (read("/proc/self/cgroup"), read("/proc/self/mountinfo")) {
            (Ok(cg), Ok(mi)) => Self::detect_with(instance, &cg, &mi, Path::new("/")),
            (Err(e), _) | (_, Err(e)) => Self::none(e),
        }
    }

    /// [`detect`](Self::detect) with explicit inputs: the text of
    /// `/proc/self/cgroup` and `/proc/self/mountinfo`, and a prefix put in
    /// front of every mount point (a temp dir in tests, `/` for real).
    pub fn detect_with(
        instance: &str,
        proc_self_cgroup: &str,
        mountinfo: &str,
        fs_prefix: &Path,
    ) -> CgroupTree {
        match fsio::validate_rel(instance, false) {
            Ok(parts) if parts.len() == 1 => {}
            _ => return Self::none(format!("invalid instance name {instance:?}")),
        }
        match detect::detect(instance, proc_self_cgroup, mountinfo, fs_prefix) {
            Ok((layout, reasons)) => {
                let kind = if layout.v2 {
                    BackendKind::V2
                } else {
                    BackendKind::V1 {
                        unified: layout.core.is_some(),
                    }
                };
                tracing::debug!(%kind, ?layout, ?reasons, "cgroup backend detected");
                CgroupTree {
                    kind,
                    layout: Some(Arc::new(layout)),
                    reasons,
                }
            }
            Err(reason) => Self::none(reason),
        }
    }

    /// A tree without cgroups: nothing is enforced, `create` fails with
    /// [`Error::NoBackend`], `open` finds nothing and `list` is empty.
    pub fn none(reason: impl Into<String>) -> CgroupTree {
        CgroupTree {
            kind: BackendKind::None,
            layout: None,
            reasons: vec![("all", reason.into())],
        }
    }

    /// Backend kind, what is enforced, why not the rest, and the subtree dirs.
    pub fn info(&self) -> BackendInfo {
        let Some(l) = &self.layout else {
            let reason = self
                .reasons
                .iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>();
            return BackendInfo {
                kind: BackendKind::None,
                enforced: Vec::new(),
                not_enforced_reason: Some(reason.join("; ")),
                root: Vec::new(),
            };
        };
        let have = [
            l.memory.is_some(),
            l.cpu.is_some(),
            l.pids.is_some(),
            l.can_freeze(),
            l.kill2 || l.can_freeze(),
        ];
        let enforced: Vec<String> = FEATURES
            .iter()
            .zip(have)
            .filter(|(_, on)| *on)
            .map(|(f, _)| (*f).to_owned())
            .collect();
        let missing: Vec<String> = self
            .reasons
            .iter()
            .filter(|(f, _)| !enforced.iter().any(|e| e == f))
            .map(|(f, r)| format!("{f}: {r}"))
            .collect();
        BackendInfo {
            kind: self.kind,
            enforced,
            not_enforced_reason: (!missing.is_empty()).then(|| missing.join("; ")),
            root: l.hierarchies(),
        }
    }

    fn layout(&self) -> Result<&Arc<Layout>, Error> {
        self.layout.as_ref().ok_or_else(|| Error::NoBackend {
            reason: self.info().not_enforced_reason.unwrap_or_default(),
        })
    }

    /// Creates (or reuses) `<subtree>/<rel>`, e.g. `rel = "jobs/17"`,
    /// parents included, and applies `limits`. On v2 the enforced
    /// controllers are enabled in each new parent's `cgroup.subtree_control`.
    /// Controllers that are not enforced (see [`info`](Self::info)) are
    /// skipped silently.
    ///
    /// The group is created only in the hierarchies `limits` needs: on pure
    /// v2 the one tree; on v1 / hybrid memory and the unified tree always,
    /// v1 cpu only with `cpu_milli`, v1 pids only with `pids_max`, v1
    /// cpuacct and freezer only without a unified tree providing `cpu.stat`
    /// and `cgroup.freeze`. A CPU or pids limit can therefore not be added
    /// later with [`Cgroup::set_limits`]. Hierarchies where `rel` already
    /// exists (a reused name) are included too, and `limits` are applied
    /// there, so nothing of the old group is left out of `remove`. When
    /// every directory is new, only the limits that are set are written
    /// (a new group already has no limits).
    pub fn create(&self, rel: &str, limits: &Limits) -> Result<Cgroup, Error> {
        let layout = self.layout()?;
        let parts = fsio::validate_rel(rel, false)?;
        let needed = layout.hierarchies_for(limits);
        let roots: Vec<PathBuf> = layout
            .hierarchies()
            .into_iter()
            .filter(|r| needed.contains(r) || r.join(rel).is_dir())
            .collect();
        // Whether any / every leaf directory was created by this call.
        let (mut created_leaf, mut all_fresh) = (false, true);
        for (n, root) in roots.iter().enumerate() {
            match make_dirs(layout, root, &parts) {
                Ok(created) => {
                    created_leaf |= created;
                    all_fresh &= created;
                }
                Err(e) => {
                    if created_leaf {
                        let done = roots[..n].to_vec();
                        let _ = Cgroup::new(rel, Arc::clone(layout), done).remove();
                    }
                    return Err(e);
                }
            }
        }
        let group = Cgroup::new(rel, Arc::clone(layout), roots);
        if let Err(e) = group.apply_limits(limits, all_fresh) {
            if created_leaf {
                let _ = group.remove();
            }
            return Err(e);
        }
        Ok(group)
    }

    /// Starts the kernel's slow path of a cgroup migration ahead of time.
    ///
    /// Moving a process between cgroups takes `cgroup_threadgroup_rwsem` for
    /// writing, which waits for an RCU grace period (6-13 ms measured here)
    /// unless another migration happened within the last grace period. This
    /// writes the daemon's own pid to the `cgroup.procs` of the cgroup it is
    /// already in (a no-op move that changes nothing), so that wait overlaps
    /// with whatever comes before the real migration, and the real one a few
    /// milliseconds later is fast. Blocks for up to a grace period: call it
    /// from a blocking thread. Errors are ignored: it is only an optimisation.
    pub fn prime_migration(&self) {
        let Some(layout) = &self.layout else { return };
        let Some(own) = layout
            .hierarchies()
            .first()
            .and_then(|r| r.parent().map(Path::to_path_buf))
        else {
            return;
        };
        let _ = std::fs::write(own.join("cgroup.procs"), std::process::id().to_string());
    }

    /// Opens an existing group (adoption after a daemon restart); `Ok(None)`
    /// if it exists in no hierarchy. The group is in exactly the hierarchies
    /// where its directory exists, so groups made by `create` with any
    /// limits (or by an older daemon, in every hierarchy) open alike.
    pub fn open(&self, rel: &str) -> Result<Option<Cgroup>, Error> {
        let Some(layout) = &self.layout else {
            return Ok(None);
        };
        fsio::validate_rel(rel, false)?;
        let roots: Vec<PathBuf> = layout
            .hierarchies()
            .into_iter()
            .filter(|r| r.join(rel).is_dir())
            .collect();
        Ok((!roots.is_empty()).then(|| Cgroup::new(rel, Arc::clone(layout), roots)))
    }

    /// Names of the existing child groups of `rel` (`""` is the subtree
    /// root), sorted as strings, e.g. `list("jobs")` → `["17", "18"]`.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, Error> {
        let Some(layout) = &self.layout else {
            return Ok(Vec::new());
        };
        fsio::validate_rel(rel, true)?;
        let mut names = Vec::new();
        for root in layout.hierarchies() {
            names.extend(fsio::child_dirs(&root.join(rel))?);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// At shutdown: removes the whole subtree (every group below it, then
    /// the subtree dir itself) if no group in it holds a process. Leaves
    /// everything in place if one does. Best effort: tries every directory
    /// and returns the first error. Never touches the own cgroup.
    pub fn remove_subtree_if_empty(&self) -> Result<(), Error> {
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        let roots = layout.hierarchies();
        let mut all: Vec<PathBuf> = Vec::new();
        for root in &roots {
            all.extend(fsio::descendants_deepest_first(root)?);
            all.push(root.clone());
        }
        for dir in &all {
            let procs = fsio::read_opt(&dir.join("cgroup.procs"))?;
            if procs.is_some_and(|p| !p.trim().is_empty()) {
                tracing::debug!(dir = %dir.display(), "subtree still populated; kept");
                return Ok(());
            }
        }
        let mut first = None;
        for dir in &all {
            if let Err(e) = fsio::rmdir(dir, Duration::from_millis(500)) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Creates `root/<parts…>` one level at a time (existing levels are reused),
/// on v2 enabling the layout's controllers in every intermediate level.
/// Returns whether it created the last level.
fn make_dirs(layout: &Layout, root: &Path, parts: &[&str]) -> Result<bool, Error> {
    let mut dir = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        dir.push(part);
        let created = fsio::mkdir(&dir)?;
        if i + 1 == parts.len() {
            return Ok(created);
        }
        if !layout.v2 {
            continue;
        }
        let failed = detect::enable_controllers(&dir, &layout.v2_controllers);
        if let Some((_, e)) = failed.into_iter().next() {
            return Err(e);
        }
    }
    Ok(false)
}
