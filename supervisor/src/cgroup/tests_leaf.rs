//! Tests of the leaf move (`leaf.rs`) against the fake cgroupfs: the
//! daemon's pid lands in `<own>/daemon`, detection then builds the subtree
//! beside it with controllers enabled in the delegated group.

use std::path::Path;

use super::fixture::{self, read};
use super::{BackendKind, CgroupTree, move_into_leaf};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn moves_into_the_leaf_then_detects_beside_it() {
    let t = tmp();
    let own = t.path().join(fixture::V2_OWN_REL);
    fixture::files(&own, fixture::V2_OWN);
    // The kernel gives a new group its interface files; the fake needs them first.
    fixture::files(&own.join("daemon"), &[("cgroup.procs", "")]);
    let moved = move_into_leaf(
        fixture::PROC_V2,
        fixture::MOUNTINFO_V2,
        t.path(),
        "daemon",
        4242,
    )
    .expect("move");
    assert_eq!(moved.own, own);
    assert_eq!(moved.leaf, own.join("daemon"));
    assert_eq!(read(own.join("daemon/cgroup.procs")), "4242");
    assert_eq!(moved.proc_self_cgroup, fixture::PROC_V2);

    fixture::files(&own.join("sc-1"), fixture::V2_GROUP);
    let tree = CgroupTree::detect_with(
        "sc-1",
        &moved.proc_self_cgroup,
        fixture::MOUNTINFO_V2,
        t.path(),
    );
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V2);
    assert_eq!(info.root, vec![own.join("sc-1")]);
    assert_eq!(
        read(own.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
}

#[test]
fn a_daemon_already_in_its_leaf_is_not_moved_again() {
    let t = tmp();
    let own = t.path().join(fixture::V2_OWN_REL);
    fixture::files(&own, fixture::V2_OWN);
    fixture::files(&own.join("daemon"), &[("cgroup.procs", "")]);
    let moved = move_into_leaf(
        "0::/system.slice/sc.service/daemon\n",
        fixture::MOUNTINFO_V2,
        t.path(),
        "daemon",
        4242,
    )
    .expect("move");
    assert_eq!(moved.own, own);
    assert_eq!(moved.leaf, own.join("daemon"));
    assert_eq!(read(own.join("daemon/cgroup.procs")), "");
    assert_eq!(moved.proc_self_cgroup, fixture::PROC_V2);
}

#[test]
fn refuses_the_root_a_bad_leaf_and_a_missing_v2_tree() {
    let t = tmp();
    let at = |proc: &str, leaf: &str| {
        move_into_leaf(proc, fixture::MOUNTINFO_V2, t.path(), leaf, 1).map(|_| ())
    };
    let root = at("0::/\n", "daemon").expect_err("root cgroup");
    assert!(root.to_string().contains("root cgroup"), "{root}");
    assert!(at(fixture::PROC_V2, "../x").is_err());
    assert!(at(fixture::PROC_V2, "a/b").is_err());
    let none = at("4:memory:/x\n", "daemon").expect_err("no v2 line");
    assert!(none.to_string().contains("no cgroup v2 line"), "{none}");
    assert!(!Path::new(&t.path().join(fixture::V2_OWN_REL)).exists());
}

#[test]
fn hybrid_hosts_keep_their_v1_lines() {
    let t = tmp();
    let unified = t.path().join("sys/fs/cgroup/unified/process_api/x");
    fixture::files(&unified, fixture::UNIFIED_GROUP);
    fixture::files(&unified.join("daemon"), &[("cgroup.procs", "")]);
    let proc = "4:memory:/process_api/x\n0::/process_api/x\n";
    let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    let moved = move_into_leaf(proc, mountinfo, t.path(), "daemon", 7).expect("move");
    assert_eq!(moved.leaf, unified.join("daemon"));
    assert_eq!(read(unified.join("daemon/cgroup.procs")), "7");
    assert_eq!(moved.proc_self_cgroup, proc);
}
