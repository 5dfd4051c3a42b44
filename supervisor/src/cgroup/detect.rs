//! Backend detection: parses `/proc/self/cgroup` and `/proc/self/mountinfo`
//! (pure functions), then probes the found hierarchies by creating the
//! daemon's subtree `<own cgroup>/<instance>` in each, and on v2 enabling the
//! memory, cpu and pids controllers for it. The result is a [`Layout`] plus
//! the reasons for anything not enforced, or the reason nothing works.
//!
//! Must not: write anywhere but the subtree and (v2 only) the own cgroup's
//! `cgroup.subtree_control`; fail hard (every problem becomes a reason);
//! assume a mount location (everything is relative to `fs_prefix`).

use std::path::{Component, Path, PathBuf};

use super::{Layout, fsio};
use crate::Error;

/// One line of `/proc/self/cgroup`: `id:controllers:path`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// Empty for the v2 line (`0::/…`); may hold `name=systemd`.
    pub controllers: Vec<String>,
    pub path: String,
}

/// The fields of one `/proc/self/mountinfo` line that matter here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Root of the mount within its filesystem (not always `/`).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_opts: Vec<String>,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for space and so on).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|d| (b'0'..=b'7').contains(d)));
        if let (b'\\', Some(o)) = (b[i], oct) {
            let v = o.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if sep < 6 || f.len() < sep + 4 {
                return None;
            }
            Some(Mount {
                root: unescape(f[3]),
                mount_point: PathBuf::from(unescape(f[4])),
                fstype: f[sep + 1].to_owned(),
                super_opts: f[sep + 3].split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The own cgroup's directory: mount point (under `prefix`) plus the cgroup
/// path relative to the mount's root. `None` if the cgroup is not visible
/// through this mount or was deleted.
fn own_dir(m: &Mount, cgroup_path: &str, prefix: &Path) -> Option<PathBuf> {
    if cgroup_path.ends_with(" (deleted)") {
        return None;
    }
    let rel = Path::new(cgroup_path).strip_prefix(&m.root).ok()?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let point = m.mount_point.strip_prefix("/").unwrap_or(&m.mount_point);
    Some(prefix.join(point).join(rel))
}

/// Own cgroup dir in the v1 hierarchy holding `controller`.
fn v1_own(
    procs: &[ProcCgroup],
    mounts: &[Mount],
    controller: &str,
    prefix: &Path,
) -> Option<PathBuf> {
    let line = procs
        .iter()
        .find(|p| p.controllers.iter().any(|c| c == controller))?;
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == controller))
        .find_map(|m| own_dir(m, &line.path, prefix))
}

/// Own cgroup dir in the cgroup2 tree.
pub(crate) fn v2_own(procs: &[ProcCgroup], mounts: &[Mount], prefix: &Path) -> Option<PathBuf> {
    let line = procs.iter().find(|p| p.controllers.is_empty())?;
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .find_map(|m| own_dir(m, &line.path, prefix))
}

/// Why a feature (`memory`, `cpu`, `pids`, `freeze`, `kill`) is missing.
pub(crate) type Reason = (&'static str, String);

/// Result of probing: a usable layout with reasons for gaps, or why nothing
/// is usable.
pub(crate) type Detected = Result<(Layout, Vec<Reason>), String>;

/// Detects and probes. `instance` must already be a valid single name.
pub(crate) fn detect(
    instance: &str,
    proc_cgroup: &str,
    mountinfo: &str,
    prefix: &Path,
) -> Detected {
    let procs = parse_proc_cgroup(proc_cgroup);
    let mounts = parse_mountinfo(mountinfo);
    let v1 = ["memory", "cpu", "cpuacct", "pids", "freezer"]
        .map(|c| v1_own(&procs, &mounts, c, prefix).map(|own| own.join(instance)));
    let unified = v2_own(&procs, &mounts, prefix).map(|own| (own.join(instance), own));
    if v1.iter().any(Option::is_some) {
        probe_v1(v1, unified.map(|(sub, _)| sub))
    } else if let Some((subtree, own)) = unified {
        probe_v2(&own, subtree)
    } else {
        Err("no cgroup v1 or v2 hierarchy of this process is mounted \
             (checked /proc/self/cgroup against /proc/self/mountinfo)"
            .to_owned())
    }
}

fn mkdir_reason(e: &Error) -> String {
    format!("{e} (needs root or a delegated cgroup, e.g. systemd Delegate=yes)")
}

fn probe_v1(dirs: [Option<PathBuf>; 5], unified: Option<PathBuf>) -> Detected {
    let mut reasons: Vec<Reason> = Vec::new();
    let mut mkdir_errors = Vec::new();
    let [memory, cpu, cpuacct, pids, freezer] = dirs;
    // Per role: the subtree dir if it exists (created or reused) and has the
    // interface file proving the controller is there.
    let mut role = |dir: Option<PathBuf>, name: &'static str, file: &str| -> Option<PathBuf> {
        let feature = if name == "freezer" { "freeze" } else { name };
        let Some(dir) = dir else {
            reasons.push((
                feature,
                format!("no v1 {name} hierarchy mounted for this process"),
            ));
            return None;
        };
        if let Err(e) = fsio::mkdir(&dir) {
            reasons.push((feature, mkdir_reason(&e)));
            mkdir_errors.push(e);
            return None;
        }
        if !dir.join(file).exists() {
            reasons.push((feature, format!("{} missing", dir.join(file).display())));
            return None;
        }
        Some(dir)
    };
    let mut layout = Layout {
        memory: role(memory, "memory", "memory.limit_in_bytes"),
        cpu: role(cpu, "cpu", "cpu.cfs_quota_us"),
        cpuacct: role(cpuacct, "cpuacct", "cpuacct.usage"),
        pids: role(pids, "pids", "pids.max"),
        freezer: role(freezer, "freezer", "freezer.state"),
        ..Layout::default()
    };
    if let Some(dir) = unified {
        match fsio::mkdir(&dir) {
            Ok(created) => {
                layout.freeze2 = dir.join("cgroup.freeze").exists();
                layout.kill2 = dir.join("cgroup.kill").exists();
                if layout.freeze2 || layout.kill2 {
                    layout.cpu_stat2 = dir.join("cpu.stat").exists();
                    layout.core = Some(dir);
                } else if created {
                    // Old kernel: the unified tree adds nothing; leave no trace.
                    let _ = fsio::rmdir(&dir, std::time::Duration::ZERO);
                }
            }
            Err(e) => reasons.push(("kill", format!("unified tree: {}", mkdir_reason(&e)))),
        }
    }
    if layout.hierarchies().is_empty() {
        let why = match mkdir_errors.first() {
            Some(e) => mkdir_reason(e),
            None => "no usable v1 controller (memory, cpu, pids, freezer)".to_owned(),
        };
        return Err(why);
    }
    if !layout.kill2 {
        let how = if layout.can_freeze() {
            "freeze + SIGKILL each process"
        } else {
            "SIGKILL each process, racy"
        };
        reasons.push(("kill", format!("no cgroup.kill; kill_all uses {how}")));
    }
    Ok((layout, reasons))
}

/// Tokens of a `cgroup.controllers` / `cgroup.subtree_control` file. A
/// leading `+` is dropped so a fake file written by us reads back the same.
fn tokens(path: &Path) -> Vec<String> {
    fsio::read(path)
        .map(|t| {
            t.split_whitespace()
                .map(|s| s.trim_start_matches('+').to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Enables `controllers` in `dir/cgroup.subtree_control` (only those not
/// enabled yet): one write for all, and if the kernel refuses that, one
/// write each to find out which ones fail. Returns those, with why.
pub(crate) fn enable_controllers(
    dir: &Path,
    controllers: &[&'static str],
) -> Vec<(&'static str, Error)> {
    let file = dir.join("cgroup.subtree_control");
    let have = tokens(&file);
    let todo: Vec<&'static str> = controllers
        .iter()
        .copied()
        .filter(|c| !have.iter().any(|h| h == c))
        .collect();
    if todo.is_empty() {
        return Vec::new();
    }
    let all: Vec<String> = todo.iter().map(|c| format!("+{c}")).collect();
    if fsio::write(&file, &all.join(" ")).is_ok() {
        return Vec::new();
    }
    todo.into_iter()
        .filter_map(|c| fsio::write(&file, &format!("+{c}")).err().map(|e| (c, e)))
        .collect()
}

fn explain(e: &Error) -> String {
    let busy =
        matches!(e, Error::Write { source, .. } if source.raw_os_error() == Some(libc::EBUSY));
    if busy {
        format!(
            "{e} (the own cgroup holds processes: cgroup v2 \"no internal processes\" rule; \
             move the daemon into a child group, e.g. …/daemon, to enable it)"
        )
    } else {
        e.to_string()
    }
}

fn probe_v2(own: &Path, subtree: PathBuf) -> Detected {
    fsio::mkdir(&subtree).map_err(|e| mkdir_reason(&e))?;
    let mut reasons: Vec<Reason> = Vec::new();
    let available = tokens(&own.join("cgroup.controllers"));
    let mut usable: Vec<&'static str> = Vec::new();
    for c in ["memory", "cpu", "pids"] {
        if available.iter().any(|a| a == c) {
            usable.push(c);
        } else {
            let file = own.join("cgroup.controllers");
            reasons.push((c, format!("not in {} (not delegated)", file.display())));
        }
    }
    for (c, e) in enable_controllers(own, &usable) {
        reasons.push((c, explain(&e)));
        usable.retain(|u| *u != c);
    }
    for (c, e) in enable_controllers(&subtree, &usable) {
        reasons.push((c, e.to_string()));
        usable.retain(|u| *u != c);
    }
    // Ground truth: the controller's file exists in the subtree and the
    // subtree passes it on to its children.
    let passed_on = tokens(&subtree.join("cgroup.subtree_control"));
    let mut on = |c: &'static str, file: &str| {
        if !usable.contains(&c) {
            return None;
        }
        if subtree.join(file).exists() && passed_on.iter().any(|p| p == c) {
            return Some(subtree.clone());
        }
        reasons.push((c, format!("not enabled in {}", subtree.display())));
        None
    };
    let mut layout = Layout {
        v2: true,
        memory: on("memory", "memory.max"),
        cpu: on("cpu", "cpu.max"),
        pids: on("pids", "pids.max"),
        freeze2: subtree.join("cgroup.freeze").exists(),
        kill2: subtree.join("cgroup.kill").exists(),
        cpu_stat2: subtree.join("cpu.stat").exists(),
        ..Layout::default()
    };
    let roles = [
        ("memory", &layout.memory),
        ("cpu", &layout.cpu),
        ("pids", &layout.pids),
    ];
    layout.v2_controllers = roles
        .into_iter()
        .filter_map(|(c, p)| p.as_ref().map(|_| c))
        .collect();
    if !layout.freeze2 {
        reasons.push((
            "freeze",
            "cgroup.freeze missing (kernel older than 5.2)".to_owned(),
        ));
    }
    if !layout.kill2 {
        reasons.push((
            "kill",
            "cgroup.kill missing (kernel older than 5.14)".to_owned(),
        ));
    }
    layout.core = Some(subtree);
    Ok((layout, reasons))
}
