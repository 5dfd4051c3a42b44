//! The leaf move for a delegated cgroup v2 group (systemd `Delegate=yes`):
//! cgroup v2's "no internal processes" rule forbids enabling controllers in
//! a group's `cgroup.subtree_control` while processes live in it, so the
//! daemon first moves itself into `<own>/<leaf>` (e.g. `…/sc.service/daemon`)
//! and then detects as if `<own>` were still its cgroup: the subtree
//! `<own>/<instance>` with `jobs/` and `services/` sits beside the leaf.
//!
//! Must not: write anywhere but `<own>/<leaf>` (created) and its
//! `cgroup.procs`; act on a v1 hierarchy (which has no such rule).

use std::path::{Path, PathBuf};

use super::detect::{parse_mountinfo, parse_proc_cgroup, v2_own};
use super::{CgroupTree, fsio};
use crate::Error;

/// The daemon's own cgroup v2 path (`0::/…` line of `/proc/self/cgroup`).
pub fn v2_path(proc_self_cgroup: &str) -> Option<String> {
    parse_proc_cgroup(proc_self_cgroup)
        .into_iter()
        .find(|p| p.controllers.is_empty())
        .map(|p| p.path)
}

/// What a leaf move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafMove {
    /// The delegated group, whose children are the leaf and the subtree.
    pub own: PathBuf,
    /// Where the process is now.
    pub leaf: PathBuf,
    /// `/proc/self/cgroup` as detection must read it: the v2 path is the
    /// delegated group's, not the leaf's.
    pub proc_self_cgroup: String,
}

/// Moves process `pid` into `<own v2 group>/<leaf>`, creating the leaf. A
/// process already in a group named `leaf` counts as moved (a daemon
/// restarted inside its leaf), its parent as the delegated group.
pub fn move_into_leaf(
    proc_self_cgroup: &str,
    mountinfo: &str,
    fs_prefix: &Path,
    leaf: &str,
    pid: u32,
) -> Result<LeafMove, Error> {
    let bad = |detail: String| Error::Parse {
        path: PathBuf::from("/proc/self/cgroup"),
        detail,
    };
    match fsio::validate_rel(leaf, false) {
        Ok(parts) if parts.len() == 1 => {}
        _ => {
            return Err(Error::InvalidName {
                name: leaf.to_string(),
                reason: "a leaf is one plain name",
            });
        }
    }
    let path = v2_path(proc_self_cgroup)
        .ok_or_else(|| bad("no cgroup v2 line in /proc/self/cgroup".into()))?;
    let procs = parse_proc_cgroup(proc_self_cgroup);
    let mounts = parse_mountinfo(mountinfo);
    let here = v2_own(&procs, &mounts, fs_prefix)
        .ok_or_else(|| bad(format!("the cgroup v2 group {path} is not mounted here")))?;
    let own_path = match path.strip_suffix(&format!("/{leaf}")) {
        Some(parent) if !parent.is_empty() => parent.to_string(),
        _ if path == "/" => return Err(bad("the daemon is in the root cgroup".into())),
        _ => path.clone(),
    };
    let (own, leaf_dir) = if own_path == path {
        (here.clone(), here.join(leaf))
    } else {
        let own = here
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| bad(format!("{} has no parent", here.display())))?;
        (own, here.clone())
    };
    if own_path == path {
        fsio::mkdir(&leaf_dir)?;
        fsio::write(&leaf_dir.join("cgroup.procs"), &pid.to_string())?;
    }
    let rewritten = proc_self_cgroup
        .lines()
        .map(|line| match line.strip_prefix("0::") {
            Some(_) => format!("0::{own_path}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    Ok(LeafMove {
        own,
        leaf: leaf_dir,
        proc_self_cgroup: rewritten,
    })
}

impl CgroupTree {
    /// [`detect`](Self::detect) for a daemon whose own cgroup v2 group is
    /// delegated to it: move into `<own>/<leaf>` first, then detect with
    /// `<own>` as the own group. If the move fails, detection runs as
    /// usual (and reports why controllers could not be enabled); the error
    /// is returned beside the tree for the caller to log.
    pub fn detect_delegated(
        instance: &str,
        leaf: &str,
    ) -> (CgroupTree, Option<LeafMove>, Option<Error>) {
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("read {p}: {e}"));
        let (cg, mi) = match (read("/proc/self/cgroup"), read("/proc/self/mountinfo")) {
            (Ok(cg), Ok(mi)) => (cg, mi),
            (Err(e), _) | (_, Err(e)) => return (Self::none(e), None, None),
        };
        match move_into_leaf(&cg, &mi, Path::new("/"), leaf, std::process::id()) {
            Ok(moved) => {
                let tree =
                    Self::detect_with(instance, &moved.proc_self_cgroup, &mi, Path::new("/"));
                (tree, Some(moved), None)
            }
            Err(e) => (
                Self::detect_with(instance, &cg, &mi, Path::new("/")),
                None,
                Some(e),
            ),
        }
    }
}
