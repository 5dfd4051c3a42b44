//! Unit tests for which hierarchies a group is in, on a fake cgroupfs: a
//! hybrid group is created only in the hierarchies its limits need, every
//! operation stays within those, `open` adopts groups found in any subset,
//! and a v1 host without the unified tree falls back to cpuacct + freezer.
//!
//! A fake mkdir makes an empty directory, so each test pre-populates the
//! group (with interface files) exactly where it expects it, and then checks
//! that no directory appeared anywhere else.
//!
//! Must not: touch the real cgroupfs (that is `tests/real_cgroup.rs`).

use std::fs;
use std::path::PathBuf;

use super::fixture::{self, CPU, CPUACCT, FREEZER, MEM, PIDS, UNIFIED, read};
use super::{BackendKind, CgroupTree, Layout, Limits, Usage};
use crate::Error;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The hybrid fake with subtrees only (no groups yet).
fn hybrid(t: &tempfile::TempDir) -> (CgroupTree, Vec<PathBuf>) {
    let roots = fixture::hybrid(t.path(), &[]);
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_HYBRID,
        fixture::MOUNTINFO_HYBRID,
        t.path(),
    );
    assert_eq!(tree.info().kind, BackendKind::V1 { unified: true });
    (tree, roots)
}

/// `rel`'s directory in the hierarchies `which`, in order.
fn dirs(roots: &[PathBuf], rel: &str, which: &[usize]) -> Vec<PathBuf> {
    which.iter().map(|&i| roots[i].join(rel)).collect()
}

/// Asserts `rel` exists in none of `which`.
fn assert_absent(roots: &[PathBuf], rel: &str, which: &[usize]) {
    for &i in which {
        let dir = roots[i].join(rel);
        assert!(!dir.exists(), "{} must not exist", dir.display());
    }
}

const ALL: [usize; 6] = [MEM, CPU, CPUACCT, PIDS, FREEZER, UNIFIED];

fn others(used: &[usize]) -> Vec<usize> {
    ALL.into_iter().filter(|i| !used.contains(i)).collect()
}

#[test]
fn hybrid_no_limits_only_memory_and_unified() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    let used = [MEM, UNIFIED];
    fixture::hybrid_group(&roots, "jobs/1", &used);
    let mem_only = Limits {
        mem_max: Some(64 << 20),
        mem_high: None,
        ..Limits::default()
    };
    let g = tree.create("jobs/1", &mem_only).expect("create");
    assert_eq!(g.paths(), dirs(&roots, "jobs/1", &used), "memory first");
    assert_absent(&roots, "jobs/1", &others(&used));
    assert_absent(&roots, "jobs", &others(&used));
    assert_eq!(
        read(roots[MEM].join("jobs/1/memory.limit_in_bytes")),
        "67108864"
    );

    g.add_pid(4242).expect("add");
    for d in g.paths() {
        assert_eq!(read(d.join("cgroup.procs")), "4242", "{}", d.display());
    }
    fs::write(roots[MEM].join("jobs/1/cgroup.procs"), "12\n").expect("write");
    fs::write(roots[UNIFIED].join("jobs/1/cgroup.procs"), "12\n13\n").expect("write");
    assert_eq!(g.pids().ok(), Some(vec![12, 13]));
    assert_eq!(g.is_populated().ok(), Some(true));

    // Freeze and kill go to the unified tree.
    fs::write(
        roots[UNIFIED].join("jobs/1/cgroup.events"),
        "populated 0\nfrozen 1\n",
    )
    .expect("write");
    g.freeze().expect("freeze");
    assert_eq!(read(roots[UNIFIED].join("jobs/1/cgroup.freeze")), "1");
    assert_eq!(g.is_frozen().ok(), Some(true));
    g.thaw().expect("thaw");
    assert_eq!(read(roots[UNIFIED].join("jobs/1/cgroup.freeze")), "0");
    fs::write(roots[MEM].join("jobs/1/cgroup.procs"), "").expect("write");
    fs::write(roots[UNIFIED].join("jobs/1/cgroup.procs"), "").expect("write");
    g.kill_all().expect("kill");
    assert_eq!(read(roots[UNIFIED].join("jobs/1/cgroup.kill")), "1");
    assert_absent(&roots, "jobs/1", &others(&used));
}

#[test]
fn hybrid_cpu_limit_adds_cpu_and_pids_limit_adds_pids() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    let cpus = Limits {
        cpu_milli: Some(500),
        ..Limits::default()
    };
    let used = [MEM, CPU, UNIFIED];
    fixture::hybrid_group(&roots, "jobs/1", &used);
    let g = tree.create("jobs/1", &cpus).expect("create cpu");
    assert_eq!(g.paths(), dirs(&roots, "jobs/1", &used));
    assert_absent(&roots, "jobs/1", &others(&used));
    assert_eq!(read(roots[CPU].join("jobs/1/cpu.cfs_quota_us")), "50000");
    g.add_pid(7).expect("add");
    assert_eq!(read(roots[CPU].join("jobs/1/cgroup.procs")), "7");

    let pids = Limits {
        pids_max: Some(64),
        ..Limits::default()
    };
    let used = [MEM, PIDS, UNIFIED];
    fixture::hybrid_group(&roots, "jobs/2", &used);
    let g = tree.create("jobs/2", &pids).expect("create pids");
    assert_eq!(g.paths(), dirs(&roots, "jobs/2", &used));
    assert_absent(&roots, "jobs/2", &[CPU, CPUACCT, FREEZER]);
    assert_eq!(read(roots[PIDS].join("jobs/2/pids.max")), "64");

    let both = Limits {
        cpu_milli: Some(1500),
        pids_max: Some(10),
        ..Limits::default()
    };
    let used = [MEM, CPU, PIDS, UNIFIED];
    fixture::hybrid_group(&roots, "jobs/3", &used);
    // A fake memsw file reads back the "-1" written for no limit, which the
    // kernel never does; without swap accounting it is not read.
    fs::remove_file(roots[MEM].join("jobs/3/memory.memsw.limit_in_bytes")).expect("rm");
    let g = tree.create("jobs/3", &both).expect("create both");
    assert_eq!(g.paths(), dirs(&roots, "jobs/3", &used));
    assert_absent(&roots, "jobs/3", &[CPUACCT, FREEZER]);
    // Limits it was created with can be changed and cleared.
    g.set_limits(&Limits::default()).expect("clear");
    assert_eq!(read(roots[CPU].join("jobs/3/cpu.cfs_quota_us")), "-1");
    assert_eq!(read(roots[PIDS].join("jobs/3/pids.max")), "max");
}

#[test]
fn limits_cannot_be_added_after_creation() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    fixture::hybrid_group(&roots, "jobs/1", &[MEM, UNIFIED]);
    let mem = |bytes: u64| Limits {
        mem_max: Some(bytes),
        ..Limits::default()
    };
    let g = tree.create("jobs/1", &mem(2 << 20)).expect("create");
    let add_cpu = Limits {
        mem_max: Some(1 << 20),
        cpu_milli: Some(500),
        ..Limits::default()
    };
    let err = g.set_limits(&add_cpu).err();
    assert!(
        matches!(&err, Some(Error::Unsupported { backend, .. })
            if backend.contains("cpu") && backend.contains("create")),
        "{err:?}"
    );
    let add_pids = Limits {
        pids_max: Some(5),
        ..Limits::default()
    };
    assert!(matches!(
        g.set_limits(&add_pids),
        Err(Error::Unsupported { .. })
    ));
    // Refused before anything was written or created.
    assert_eq!(
        read(roots[MEM].join("jobs/1/memory.limit_in_bytes")),
        "2097152",
        "memory untouched"
    );
    assert_absent(&roots, "jobs/1", &[CPU, PIDS]);
    // Memory-only changes are fine.
    g.set_limits(&mem(1 << 20)).expect("memory limit");
    assert_eq!(
        read(roots[MEM].join("jobs/1/memory.limit_in_bytes")),
        "1048576"
    );
}

#[test]
fn usage_reads_cpu_time_from_unified_cpu_stat() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    fixture::hybrid_group(&roots, "jobs/1", &[MEM, UNIFIED]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    let want = Usage {
        mem_current: Some(4096),
        mem_peak: Some(8192),
        cpu_time_us: Some(999),
        oom_kills: Some(3),
    };
    assert_eq!(g.usage().ok(), Some(want));
    fs::write(
        roots[UNIFIED].join("jobs/1/cpu.stat"),
        "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n",
    )
    .expect("write");
    assert_eq!(g.usage().ok().and_then(|u| u.cpu_time_us), Some(123_456));
}

#[test]
fn v1_without_unified_uses_cpuacct_and_freezer() {
    let t = tmp();
    let roots = fixture::hybrid(t.path(), &[]);
    let (proc_cgroup, mountinfo) = fixture::v1_only();
    let tree = CgroupTree::detect_with("sc-1", &proc_cgroup, &mountinfo, t.path());
    let info = tree.info();
    assert_eq!(info.kind, BackendKind::V1 { unified: false });
    assert_eq!(
        info.enforced,
        ["memory", "cpu", "pids", "freeze", "kill"].map(str::to_owned)
    );
    let used = [MEM, CPUACCT, FREEZER];
    fixture::hybrid_group(&roots, "jobs/1", &used);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    assert_eq!(g.paths(), dirs(&roots, "jobs/1", &used));
    assert_absent(&roots, "jobs/1", &others(&used));
    assert_eq!(g.usage().ok().and_then(|u| u.cpu_time_us), Some(5000));
    g.freeze().expect("freeze");
    assert_eq!(read(roots[FREEZER].join("jobs/1/freezer.state")), "FROZEN");
    g.thaw().expect("thaw");
    g.kill_all().expect("kill loop on an empty group");
    assert_eq!(read(roots[FREEZER].join("jobs/1/freezer.state")), "THAWED");
    g.add_pid(99).expect("add");
    for d in g.paths() {
        assert_eq!(read(d.join("cgroup.procs")), "99", "{}", d.display());
    }
    assert_eq!(g.is_populated().ok(), Some(true));
}

#[test]
fn open_finds_groups_in_any_subset_of_hierarchies() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    fixture::hybrid_group(&roots, "jobs/3", &[MEM, CPU, UNIFIED]);
    fixture::hybrid_group(&roots, "jobs/4", &[UNIFIED]);
    fixture::hybrid_group(&roots, "jobs/5", &[PIDS]);
    fixture::hybrid_group(&roots, "jobs/6", &ALL);

    let g = tree.open("jobs/3").ok().flatten().expect("jobs/3");
    assert_eq!(g.paths(), dirs(&roots, "jobs/3", &[MEM, CPU, UNIFIED]));
    g.set_limits(&Limits {
        cpu_milli: Some(250),
        ..Limits::default()
    })
    .expect("cpu limit where the group has cpu");
    assert_eq!(read(roots[CPU].join("jobs/3/cpu.cfs_quota_us")), "25000");
    assert!(matches!(
        g.set_limits(&Limits {
            pids_max: Some(1),
            ..Limits::default()
        }),
        Err(Error::Unsupported { .. })
    ));

    let g = tree.open("jobs/4").ok().flatten().expect("jobs/4");
    assert_eq!(g.paths(), dirs(&roots, "jobs/4", &[UNIFIED]));
    assert_eq!(g.usage().ok().and_then(|u| u.mem_current), None);
    assert_eq!(g.usage().ok().and_then(|u| u.cpu_time_us), Some(999));
    fs::write(
        roots[UNIFIED].join("jobs/4/cgroup.events"),
        "populated 1\nfrozen 1\n",
    )
    .expect("write");
    g.freeze().expect("freeze");
    assert_eq!(g.is_populated().ok(), Some(true));

    // Only in pids: no freezer here, v1 cgroup.procs tells populated.
    let g = tree.open("jobs/5").ok().flatten().expect("jobs/5");
    assert_eq!(g.paths(), dirs(&roots, "jobs/5", &[PIDS]));
    assert!(matches!(g.freeze(), Err(Error::Unsupported { .. })));
    assert_eq!(g.is_frozen().ok(), Some(false));
    assert_eq!(g.is_populated().ok(), Some(false));
    fs::write(roots[PIDS].join("jobs/5/cgroup.procs"), "77\n").expect("write");
    assert_eq!(g.is_populated().ok(), Some(true));
    assert_eq!(g.pids().ok(), Some(vec![77]));

    // Made by an older daemon, in all six: everything, CPU time unified.
    let g = tree.open("jobs/6").ok().flatten().expect("jobs/6");
    assert_eq!(g.paths(), dirs(&roots, "jobs/6", &ALL));
    assert_eq!(g.usage().ok().and_then(|u| u.cpu_time_us), Some(999));

    assert!(tree.open("jobs/7").ok().flatten().is_none());
    assert_eq!(
        tree.list("jobs").ok(),
        Some(["3", "4", "5", "6"].map(str::to_owned).to_vec())
    );
}

#[test]
fn remove_only_touches_the_groups_hierarchies() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    // Bare dirs (a fake rmdir only works on empty dirs), parents in all.
    for r in &roots {
        fs::create_dir_all(r.join("jobs")).expect("mkdir");
    }
    for i in [MEM, UNIFIED] {
        fs::create_dir_all(roots[i].join("jobs/9/sub")).expect("mkdir");
    }
    let g = tree.open("jobs/9").ok().flatten().expect("exists");
    assert_eq!(g.paths(), dirs(&roots, "jobs/9", &[MEM, UNIFIED]));
    g.remove().expect("remove");
    for r in &roots {
        assert!(!r.join("jobs/9").exists());
        assert!(r.join("jobs").is_dir(), "parents stay");
    }
    // The subtree roots hold fixture files a fake rmdir can't remove; the
    // groups below them go in every hierarchy.
    let _ = tree.remove_subtree_if_empty();
    for r in &roots {
        assert!(!r.join("jobs").exists(), "{}", r.display());
    }
}

#[test]
fn create_includes_hierarchies_where_the_name_already_exists() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    // A leftover in pids with a stale limit: adopted and cleared.
    fixture::hybrid_group(&roots, "jobs/1", &[MEM, PIDS, UNIFIED]);
    fs::write(roots[PIDS].join("jobs/1/pids.max"), "3").expect("write");
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    assert_eq!(g.paths(), dirs(&roots, "jobs/1", &[MEM, PIDS, UNIFIED]));
    assert_eq!(read(roots[PIDS].join("jobs/1/pids.max")), "max");
    assert_absent(&roots, "jobs/1", &[CPU, CPUACCT, FREEZER]);
}

#[test]
fn failed_mkdir_leaves_no_partial_group() {
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    fs::create_dir_all(roots[MEM].join("jobs")).expect("mkdir");
    // A file where the unified `jobs` dir should be: mkdir fails there.
    fs::write(roots[UNIFIED].join("jobs"), "").expect("write");
    let err = tree.create("jobs/1", &Limits::default()).err();
    assert!(matches!(err, Some(Error::Mkdir { .. })), "{err:?}");
    assert!(!roots[MEM].join("jobs/1").exists(), "memory leaf removed");
}

#[test]
fn needed_hierarchies_per_layout() {
    let p = |s: &str| Some(PathBuf::from(s));
    let hybrid = Layout {
        memory: p("/m"),
        cpu: p("/c"),
        cpuacct: p("/a"),
        pids: p("/p"),
        freezer: p("/f"),
        core: p("/u"),
        freeze2: true,
        kill2: true,
        cpu_stat2: true,
        ..Layout::default()
    };
    let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    let none = Limits::default();
    let all = Limits {
        mem_max: Some(1),
        mem_high: Some(1),
        cpu_milli: Some(1),
        pids_max: Some(1),
    };
    assert_eq!(hybrid.hierarchies_for(&none), paths(&["/m", "/u"]));
    assert_eq!(
        hybrid.hierarchies_for(&all),
        paths(&["/m", "/c", "/p", "/u"])
    );
    // Unified tree without cpu.stat: cpuacct for CPU time.
    let old = Layout {
        cpu_stat2: false,
        ..hybrid.clone()
    };
    assert_eq!(old.hierarchies_for(&none), paths(&["/m", "/a", "/u"]));
    // Unified tree with cgroup.kill but no cgroup.freeze: v1 freezer.
    let no_freeze = Layout {
        freeze2: false,
        ..hybrid.clone()
    };
    assert_eq!(no_freeze.hierarchies_for(&none), paths(&["/m", "/f", "/u"]));
    // cpu,cpuacct co-mounted, no unified tree: one dir for both.
    let comount = Layout {
        cpu: p("/ca"),
        cpuacct: p("/ca"),
        core: None,
        freeze2: false,
        kill2: false,
        cpu_stat2: false,
        ..hybrid.clone()
    };
    assert_eq!(comount.hierarchies_for(&none), paths(&["/m", "/ca", "/f"]));
    assert_eq!(
        comount.hierarchies_for(&all),
        paths(&["/m", "/ca", "/p", "/f"])
    );
    // Pure v2: the one tree, whatever the limits.
    let v2 = Layout {
        v2: true,
        memory: p("/v"),
        cpu: p("/v"),
        pids: p("/v"),
        core: p("/v"),
        freeze2: true,
        kill2: true,
        cpu_stat2: true,
        ..Layout::default()
    };
    assert_eq!(v2.hierarchies_for(&none), paths(&["/v"]));
    assert_eq!(v2.hierarchies_for(&all), paths(&["/v"]));
    // Nothing the rules ask for exists: still one hierarchy to track pids.
    let cpu_only = Layout {
        cpu: p("/c"),
        ..Layout::default()
    };
    assert_eq!(cpu_only.hierarchies_for(&none), paths(&["/c"]));
}

#[test]
fn new_group_gets_only_the_limits_that_are_set() {
    // A fake mkdir makes a dir without interface files, so any write to a
    // new group fails: that shows which writes happen.
    let t = tmp();
    let (tree, roots) = hybrid(&t);
    let g = tree
        .create("jobs/1", &Limits::default())
        .expect("no writes");
    assert_eq!(g.paths(), dirs(&roots, "jobs/1", &[MEM, UNIFIED]));
    g.remove().expect("remove");
    let err = tree
        .create(
            "jobs/2",
            &Limits {
                mem_high: Some(1 << 20),
                ..Limits::default()
            },
        )
        .err();
    assert!(
        matches!(&err, Some(Error::Write { path, .. }) if path.ends_with("memory.soft_limit_in_bytes")),
        "{err:?}"
    );
    assert_absent(&roots, "jobs/2", &ALL);
    // Reused (not new) directories get every limit, `None` as "no limit".
    fixture::hybrid_group(&roots, "jobs/3", &[MEM, UNIFIED]);
    fs::write(roots[MEM].join("jobs/3/memory.soft_limit_in_bytes"), "5").expect("write");
    tree.create("jobs/3", &Limits::default()).expect("create");
    assert_eq!(
        read(roots[MEM].join("jobs/3/memory.soft_limit_in_bytes")),
        "-1"
    );
}
