//! Unit tests for detection and the tree on a fake cgroupfs (see
//! `fixture`): mountinfo shapes (v2, v1 co-mounted, hybrid), the subtree is
//! always below the own cgroup, v2 controller enabling and its degrade path.
//!
//! Must not: touch the real cgroupfs (that is `tests/real_cgroup.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use super::detect::{parse_mountinfo, parse_proc_cgroup};
use super::fixture::{self, read};
use super::{BackendKind, CgroupTree, Limits};
use crate::Error;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn parses_proc_cgroup() {
    let p = parse_proc_cgroup(fixture::PROC_V1_COMOUNT);
    assert_eq!(p.len(), 5);
    assert_eq!(p[4].controllers, strs(&["cpu", "cpuacct"]));
    assert_eq!(p[3].path, "/process_api/x");
    let v2 = parse_proc_cgroup("0::/a/b:c\n");
    assert!(v2[0].controllers.is_empty());
    assert_eq!(v2[0].path, "/a/b:c");
}

#[test]
fn parses_mountinfo_escapes_and_optional_fields() {
    let m = parse_mountinfo(
        "40 31 0:37 /docker/abc /sys/fs/my\\040cg rw,relatime shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n\
         garbage line\n",
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].root, "/docker/abc");
    assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/my cg"));
    assert_eq!(m[0].fstype, "cgroup");
    assert_eq!(m[0].super_opts, strs(&["rw", "cpu", "cpuacct"]));
}

#[test]
fn detects_v2_and_enables_controllers() {
    let t = tmp();
    let sub = fixture::v2(t.path(), &[]);
    let own = sub.parent().map(Path::to_path_buf).unwrap_or_default();
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V2);
    assert_eq!(info.kind.to_string(), "cgroup v2");
    assert_eq!(
        info.enforced,
        strs(&["memory", "cpu", "pids", "freeze", "kill"])
    );
    assert_eq!(info.not_enforced_reason, None);
    assert_eq!(info.root, vec![sub.clone()]);
    // Enabled in the own cgroup (the one allowed write outside the subtree)
    // and in the subtree root, in one write each.
    assert_eq!(
        read(own.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(sub.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
}

#[test]
fn v2_degrades_when_own_cgroup_refuses_controllers() {
    let t = tmp();
    let sub = fixture::v2(t.path(), &["jobs/1"]);
    let own = sub.parent().map(Path::to_path_buf).unwrap_or_default();
    // A directory where the file should be: every write fails.
    fs::remove_file(own.join("cgroup.subtree_control")).expect("rm");
    fs::create_dir(own.join("cgroup.subtree_control")).expect("mkdir");
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V2);
    assert_eq!(info.enforced, strs(&["freeze", "kill"]));
    let reason = info.not_enforced_reason.unwrap_or_default();
    assert!(
        reason.contains("memory") && reason.contains("cgroup.subtree_control"),
        "{reason}"
    );
    // Limits for controllers we don't have are skipped, not errors.
    let limits = Limits {
        mem_max: Some(1 << 20),
        ..Limits::default()
    };
    tree.create("jobs/1", &limits).expect("create degraded");
    assert_eq!(read(sub.join("jobs/1/memory.max")), "max", "untouched");
}

#[test]
fn v2_controller_not_delegated() {
    let t = tmp();
    let sub = fixture::v2(t.path(), &[]);
    let own = sub.parent().map(Path::to_path_buf).unwrap_or_default();
    fs::write(own.join("cgroup.controllers"), "cpu pids").expect("write");
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    let info = tree.info();
    assert_eq!(info.enforced, strs(&["cpu", "pids", "freeze", "kill"]));
    assert!(
        info.not_enforced_reason
            .unwrap_or_default()
            .contains("not delegated")
    );
}

#[test]
fn detects_v1_comounted_cpu_cpuacct() {
    let t = tmp();
    let mem = t.path().join("sys/fs/cgroup/memory/process_api/x");
    let cpu = t.path().join("sys/fs/cgroup/cpu,cpuacct");
    let pids = t.path().join("sys/fs/cgroup/pids");
    let freezer = t.path().join("sys/fs/cgroup/freezer");
    for sub in ["sc-1", "sc-1/jobs", "sc-1/jobs/1"] {
        fixture::files(&mem.join(sub), fixture::V1_MEMORY);
        fixture::files(&cpu.join(sub), fixture::V1_CPU_CPUACCT);
        fixture::files(&pids.join(sub), fixture::V1_PIDS);
        fixture::files(&freezer.join(sub), fixture::V1_FREEZER);
    }
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_V1_COMOUNT,
        fixture::MOUNTINFO_V1_COMOUNT,
        t.path(),
    );
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V1 { unified: false });
    assert_eq!(info.kind.to_string(), "cgroup v1");
    assert_eq!(
        info.enforced,
        strs(&["memory", "cpu", "pids", "freeze", "kill"])
    );
    assert_eq!(info.not_enforced_reason, None);
    // cpu and cpuacct share one directory; memory sits under the own
    // memory cgroup, never at the hierarchy root.
    assert_eq!(
        info.root,
        vec![
            mem.join("sc-1"),
            cpu.join("sc-1"),
            pids.join("sc-1"),
            freezer.join("sc-1"),
        ]
    );
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    assert_eq!(g.paths().len(), 4);
    assert!(g.paths()[0].ends_with("memory/process_api/x/sc-1/jobs/1"));
}

#[test]
fn detects_hybrid_with_subtree_below_own_cgroup() {
    let t = tmp();
    let roots = fixture::hybrid(t.path(), &[]);
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_HYBRID,
        fixture::MOUNTINFO_HYBRID,
        t.path(),
    );
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V1 { unified: true });
    assert_eq!(
        info.kind.to_string(),
        "cgroup v1 (+unified for freeze/kill)"
    );
    assert_eq!(
        info.enforced,
        strs(&["memory", "cpu", "pids", "freeze", "kill"])
    );
    assert_eq!(info.root, roots);
    let memory_mount = t.path().join("sys/fs/cgroup/memory");
    assert_eq!(
        info.root[0],
        memory_mount.join("process_api/x/sc-1"),
        "subtree is <own memory cgroup>/<instance>"
    );
    for r in &info.root {
        assert!(
            r.ends_with("sc-1"),
            "never a hierarchy root: {}",
            r.display()
        );
    }
}

#[test]
fn detect_creates_missing_subtree_dirs() {
    let t = tmp();
    let own = t.path().join(fixture::V2_OWN_REL);
    fixture::files(&own, fixture::V2_OWN);
    let tree = CgroupTree::detect_with("sc-9", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    assert!(own.join("sc-9").is_dir());
    // A plain new dir on a fake has no interface files: nothing enforced,
    // but the backend is still v2 (freeze/kill missing are reported).
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V2);
    assert!(info.enforced.is_empty());
    assert!(info.not_enforced_reason.is_some());
}

#[test]
fn no_mounts_is_none_backend() {
    let t = tmp();
    let tree = CgroupTree::detect_with(
        "sc-1",
        "0::/\n",
        "22 1 259:1 / / rw - ext4 /dev/root rw\n",
        t.path(),
    );
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::None);
    assert_eq!(info.kind.to_string(), "none");
    assert!(info.enforced.is_empty() && info.root.is_empty());
    assert!(
        info.not_enforced_reason
            .unwrap_or_default()
            .contains("mounted")
    );
    assert!(matches!(
        tree.create("jobs/1", &Limits::default()),
        Err(Error::NoBackend { .. })
    ));
    assert!(matches!(tree.open("jobs/1"), Ok(None)));
    assert_eq!(tree.list("jobs").ok(), Some(Vec::new()));
    assert!(tree.remove_subtree_if_empty().is_ok());
}

#[test]
fn unwritable_own_cgroup_is_none_backend() {
    let t = tmp();
    // The own cgroup dir is missing: mkdir of the subtree fails.
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    assert_eq!(tree.info().kind, BackendKind::None);
    let why = tree.info().not_enforced_reason.unwrap_or_default();
    assert!(why.contains("sc-1") && why.contains("Delegate"), "{why}");
}

#[test]
fn invalid_instance_is_none_backend() {
    let t = tmp();
    let tree = CgroupTree::detect_with("../x", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    assert_eq!(tree.info().kind, BackendKind::None);
}

#[test]
fn create_open_list() {
    let t = tmp();
    let sub = fixture::v2(t.path(), &["jobs/17", "jobs/18"]);
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    let g = tree.create("jobs/17", &Limits::default()).expect("create");
    assert_eq!(g.rel(), "jobs/17");
    assert_eq!(g.paths(), vec![sub.join("jobs/17")]);
    // Controllers are passed down through the intermediate group.
    assert_eq!(
        read(sub.join("jobs/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(tree.list("jobs").ok(), Some(strs(&["17", "18"])));
    assert_eq!(tree.list("").ok(), Some(strs(&["jobs"])));
    assert_eq!(tree.list("nothing").ok(), Some(Vec::new()));
    assert!(tree.open("jobs/18").ok().flatten().is_some());
    assert!(tree.open("jobs/19").ok().flatten().is_none());
    for bad in ["", "/abs", "../up", "jobs/../x", "cgroup.procs"] {
        assert!(matches!(
            tree.create(bad, &Limits::default()),
            Err(Error::InvalidName { .. })
        ));
        assert!(tree.open(bad).is_err());
    }
}

#[test]
fn missing_interface_file_fails_like_cgroupfs() {
    let t = tmp();
    let sub = fixture::v2(t.path(), &["jobs/1"]);
    fs::remove_file(sub.join("jobs/1/memory.max")).expect("rm");
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    let err = tree.create("jobs/1", &Limits::default()).err();
    assert!(
        matches!(&err, Some(Error::Write { path, .. }) if path.ends_with("memory.max")),
        "{err:?}"
    );
    assert!(
        !sub.join("jobs/1/memory.max").exists(),
        "write must not create files"
    );
}

#[test]
fn remove_and_subtree_cleanup() {
    let t = tmp();
    let roots = fixture::hybrid(t.path(), &[]);
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_HYBRID,
        fixture::MOUNTINFO_HYBRID,
        t.path(),
    );
    // Bare dirs, as rmdir on a fake only works without files.
    for r in &roots {
        fs::create_dir_all(r.join("jobs/9/sub")).expect("mkdir");
    }
    let g = tree.open("jobs/9").ok().flatten().expect("exists");
    g.remove().expect("remove");
    for r in &roots {
        assert!(!r.join("jobs/9").exists());
        assert!(r.join("jobs").exists(), "parents stay");
    }
    g.remove().expect("idempotent");
    // A populated subtree is left alone.
    fs::write(roots[0].join("cgroup.procs"), "42\n").expect("write");
    tree.remove_subtree_if_empty().expect("best effort");
    assert!(roots[0].join("jobs").exists());
}
