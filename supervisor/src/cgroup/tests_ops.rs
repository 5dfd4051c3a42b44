//! Unit tests for group operations on a fake cgroupfs: limits (v2 and v1
//! formats, `max`/`-1` for none, v1 memsw ordering), usage parsing, pids,
//! freeze/thaw (bounded), kill_all.
//!
//! Must not: touch the real cgroupfs, or signal real processes.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::fixture::{self, read};
use super::{CgroupTree, Limits, Usage};
use crate::Error;

fn v2_tree(t: &tempfile::TempDir, groups: &[&str]) -> (CgroupTree, PathBuf) {
    let sub = fixture::v2(t.path(), groups);
    let tree = CgroupTree::detect_with("sc-1", fixture::PROC_V2, fixture::MOUNTINFO_V2, t.path());
    (tree, sub)
}

fn hybrid_tree(t: &tempfile::TempDir, groups: &[&str]) -> (CgroupTree, Vec<PathBuf>) {
    let roots = fixture::hybrid(t.path(), groups);
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_HYBRID,
        fixture::MOUNTINFO_HYBRID,
        t.path(),
    );
    (tree, roots)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

const LIMITS: Limits = Limits {
    mem_max: Some(64 << 20),
    mem_high: Some(48 << 20),
    cpu_milli: Some(1500),
    pids_max: Some(100),
};

#[test]
fn v2_limits_written_and_cleared() {
    let t = tmp();
    let (tree, sub) = v2_tree(&t, &["jobs/17"]);
    let g = tree.create("jobs/17", &LIMITS).expect("create");
    let dir = sub.join("jobs/17");
    assert_eq!(read(dir.join("memory.max")), "67108864");
    assert_eq!(read(dir.join("memory.high")), "50331648");
    assert_eq!(read(dir.join("cpu.max")), "150000 100000");
    assert_eq!(read(dir.join("pids.max")), "100");
    g.set_limits(&Limits::default()).expect("clear");
    assert_eq!(read(dir.join("memory.max")), "max");
    assert_eq!(read(dir.join("memory.high")), "max");
    assert_eq!(read(dir.join("cpu.max")), "max 100000");
    assert_eq!(read(dir.join("pids.max")), "max");
    // Tiny CPU requests are raised to the kernel's minimum quota.
    g.set_limits(&Limits {
        cpu_milli: Some(1),
        ..Limits::default()
    })
    .expect("tiny");
    assert_eq!(read(dir.join("cpu.max")), "1000 100000");
}

#[test]
fn v1_limits_written_and_cleared() {
    let t = tmp();
    let (tree, roots) = hybrid_tree(&t, &["jobs/17"]);
    let g = tree.create("jobs/17", &LIMITS).expect("create");
    let mem = roots[0].join("jobs/17");
    let cpu = roots[1].join("jobs/17");
    let pids = roots[3].join("jobs/17");
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "67108864");
    assert_eq!(read(mem.join("memory.soft_limit_in_bytes")), "50331648");
    assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read(pids.join("pids.max")), "100");
    g.set_limits(&Limits::default()).expect("clear");
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "-1");
    assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "-1");
    assert_eq!(read(mem.join("memory.soft_limit_in_bytes")), "-1");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "-1");
    assert_eq!(read(pids.join("pids.max")), "max");
}

#[test]
fn v1_without_swap_accounting_skips_memsw() {
    let t = tmp();
    let (tree, roots) = hybrid_tree(&t, &["jobs/1"]);
    let memsw = roots[0].join("jobs/1/memory.memsw.limit_in_bytes");
    fs::remove_file(&memsw).expect("rm");
    tree.create("jobs/1", &LIMITS).expect("create");
    assert_eq!(
        read(roots[0].join("jobs/1/memory.limit_in_bytes")),
        "67108864"
    );
    assert!(!memsw.exists());
}

#[test]
fn v1_memsw_ordering_keeps_memsw_above_mem() {
    // The kernel keeps memsw >= mem. A fake can't enforce that, so make the
    // mem file unwritable (a dir) and see which write happened before the
    // failure: raising writes memsw first, lowering writes mem first.
    let t = tmp();
    let (tree, roots) = hybrid_tree(&t, &["jobs/1"]);
    let dir = roots[0].join("jobs/1");
    fs::write(dir.join("memory.memsw.limit_in_bytes"), "1048576").expect("write");
    fs::remove_file(dir.join("memory.limit_in_bytes")).expect("rm");
    fs::create_dir(dir.join("memory.limit_in_bytes")).expect("mkdir");
    let raise = Limits {
        mem_max: Some(4 << 20),
        ..Limits::default()
    };
    assert!(tree.create("jobs/1", &raise).is_err());
    assert_eq!(
        read(dir.join("memory.memsw.limit_in_bytes")),
        "4194304",
        "memsw first when raising"
    );
    // Lowering: mem first. With mem still a dir, memsw must stay untouched.
    let lower = Limits {
        mem_max: Some(1 << 20),
        ..Limits::default()
    };
    let g = tree.open("jobs/1").ok().flatten().expect("exists");
    assert!(g.set_limits(&lower).is_err());
    assert_eq!(
        read(dir.join("memory.memsw.limit_in_bytes")),
        "4194304",
        "mem first when lowering"
    );
}

#[test]
fn usage_v2_and_v1() {
    let t = tmp();
    let (tree, sub) = v2_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    let want = Usage {
        mem_current: Some(1234),
        mem_peak: Some(5678),
        cpu_time_us: Some(777),
        oom_kills: Some(2),
    };
    assert_eq!(g.usage().ok(), Some(want));
    assert_eq!(g.mem_current().ok(), Some(Some(1234)));
    // memory.peak appeared in Linux 5.19.
    fs::remove_file(sub.join("jobs/1/memory.peak")).expect("rm");
    assert_eq!(g.usage().ok().and_then(|u| u.mem_peak), None);
    fs::write(sub.join("jobs/1/memory.current"), "lots").expect("write");
    assert!(matches!(g.usage(), Err(Error::Parse { .. })));

    // Hybrid: memory from v1, CPU time from the unified `cpu.stat` even
    // where the group also exists in cpuacct (5000 µs there).
    let t = tmp();
    let (tree, _) = hybrid_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    let want = Usage {
        mem_current: Some(4096),
        mem_peak: Some(8192),
        cpu_time_us: Some(999),
        oom_kills: Some(3),
    };
    assert_eq!(g.usage().ok(), Some(want));
    assert_eq!(g.mem_current().ok(), Some(Some(4096)));
}

#[test]
fn pids_add_and_populated() {
    let t = tmp();
    let (tree, roots) = hybrid_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    assert_eq!(g.pids().ok(), Some(Vec::new()));
    assert_eq!(g.is_populated().ok(), Some(false));
    g.add_pid(4242).expect("add");
    for r in &roots {
        assert_eq!(
            read(r.join("jobs/1/cgroup.procs")),
            "4242",
            "{}",
            r.display()
        );
    }
    fs::write(roots[0].join("jobs/1/cgroup.procs"), "12\n13\n").expect("write");
    fs::write(roots[1].join("jobs/1/cgroup.procs"), "13\n14\n").expect("write");
    assert_eq!(g.pids().ok(), Some(vec![12, 13, 14, 4242]));
    assert_eq!(g.is_populated().ok(), Some(true));
    fs::write(roots[1].join("jobs/1/cgroup.procs"), "x\n").expect("write");
    assert!(matches!(g.pids(), Err(Error::Parse { .. })));
}

#[test]
fn freeze_v2_waits_for_frozen_and_is_bounded() {
    let t = tmp();
    let (tree, sub) = v2_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    let dir = sub.join("jobs/1");
    fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").expect("write");
    g.freeze().expect("freeze");
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    assert_eq!(g.is_frozen().ok(), Some(true));
    g.thaw().expect("thaw");
    assert_eq!(read(dir.join("cgroup.freeze")), "0");
    // The kernel never confirms: freeze gives up after about a second.
    fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").expect("write");
    let start = Instant::now();
    assert!(matches!(g.freeze(), Err(Error::Timeout { .. })));
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn freeze_hybrid_prefers_unified_and_v1_freezer_works() {
    let t = tmp();
    let (tree, roots) = hybrid_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    fs::write(
        roots[5].join("jobs/1/cgroup.events"),
        "populated 1\nfrozen 1\n",
    )
    .expect("write");
    g.freeze().expect("freeze");
    assert_eq!(read(roots[5].join("jobs/1/cgroup.freeze")), "1");
    assert_eq!(
        read(roots[4].join("jobs/1/freezer.state")),
        "THAWED",
        "v1 freezer unused"
    );

    // Pure v1 (no unified tree): the v1 freezer.
    let t = tmp();
    let mem = t.path().join("sys/fs/cgroup/memory/process_api/x/sc-1");
    let cpu = t.path().join("sys/fs/cgroup/cpu,cpuacct/sc-1");
    let frz = t.path().join("sys/fs/cgroup/freezer/sc-1");
    for (dir, set) in [
        (&mem, fixture::V1_MEMORY),
        (&cpu, fixture::V1_CPU_CPUACCT),
        (&frz, fixture::V1_FREEZER),
    ] {
        fixture::files(dir, set);
        fixture::files(&dir.join("jobs/1"), set);
    }
    fixture::files(
        &t.path().join("sys/fs/cgroup/pids/sc-1/jobs/1"),
        fixture::V1_PIDS,
    );
    fixture::files(&t.path().join("sys/fs/cgroup/pids/sc-1"), fixture::V1_PIDS);
    let tree = CgroupTree::detect_with(
        "sc-1",
        fixture::PROC_V1_COMOUNT,
        fixture::MOUNTINFO_V1_COMOUNT,
        t.path(),
    );
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    g.freeze().expect("freeze");
    assert_eq!(read(frz.join("jobs/1/freezer.state")), "FROZEN");
    assert_eq!(g.is_frozen().ok(), Some(true));
    g.thaw().expect("thaw");
    assert_eq!(g.is_frozen().ok(), Some(false));
    // kill_all without cgroup.kill: freeze, signal (nobody), thaw, empty.
    g.kill_all().expect("kill");
    assert_eq!(read(frz.join("jobs/1/freezer.state")), "THAWED");
}

#[test]
fn kill_all_uses_cgroup_kill() {
    let t = tmp();
    let (tree, sub) = v2_tree(&t, &["jobs/1"]);
    let g = tree.create("jobs/1", &Limits::default()).expect("create");
    g.kill_all().expect("kill");
    assert_eq!(read(sub.join("jobs/1/cgroup.kill")), "1");
    g.signal_all(nix::sys::signal::Signal::SIGTERM)
        .expect("nobody to signal");
}
