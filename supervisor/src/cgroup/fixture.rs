//! Test-only fake cgroupfs: a temp dir with the interface files a real
//! kernel would create, so code under test (which writes with
//! `create(false)`) behaves as on a real cgroupfs. Plus the mountinfo and
//! `/proc/self/cgroup` texts of the host shapes we support.
//!
//! Must not: be compiled outside `cfg(test)`.

use std::fs;
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) and the given `(file, contents)` pairs.
pub(super) fn files(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).expect("create fixture dir");
    for (name, text) in files {
        fs::write(dir.join(name), text).expect("write fixture file");
    }
}

pub(super) fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Files of the daemon's own v2 cgroup (a delegated unit cgroup).
pub(super) const V2_OWN: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpuset cpu io memory pids"),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
];

/// Files of a non-root v2 group with memory, cpu and pids enabled by its parent.
pub(super) const V2_GROUP: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpu memory pids"),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0"),
    ("cgroup.kill", ""),
    (
        "cpu.stat",
        "usage_usec 777\nuser_usec 700\nsystem_usec 77\n",
    ),
    ("cpu.max", "max 100000"),
    ("memory.max", "max"),
    ("memory.high", "max"),
    ("memory.current", "1234"),
    ("memory.peak", "5678"),
    (
        "memory.events",
        "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
    ),
    ("pids.max", "max"),
];

/// A hybrid host's unified group: core files only, no controllers.
pub(super) const UNIFIED_GROUP: &[(&str, &str)] = &[
    ("cgroup.controllers", ""),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0"),
    ("cgroup.kill", ""),
    ("cpu.stat", "usage_usec 999\n"),
];

pub(super) const V1_MEMORY: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("memory.limit_in_bytes", "9223372036854771712"),
    ("memory.memsw.limit_in_bytes", "9223372036854771712"),
    ("memory.soft_limit_in_bytes", "9223372036854771712"),
    ("memory.usage_in_bytes", "4096"),
    ("memory.max_usage_in_bytes", "8192"),
    (
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    ),
];
pub(super) const V1_CPU: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cpu.cfs_period_us", "100000"),
    ("cpu.cfs_quota_us", "-1"),
];
pub(super) const V1_CPUACCT: &[(&str, &str)] =
    &[("cgroup.procs", ""), ("cpuacct.usage", "5000000")];
pub(super) const V1_CPU_CPUACCT: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cpu.cfs_period_us", "100000"),
    ("cpu.cfs_quota_us", "-1"),
    ("cpuacct.usage", "5000000"),
];
pub(super) const V1_PIDS: &[(&str, &str)] = &[("cgroup.procs", ""), ("pids.max", "max")];
pub(super) const V1_FREEZER: &[(&str, &str)] = &[("cgroup.procs", ""), ("freezer.state", "THAWED")];

/// Pure v2 host (systemd, daemon in a delegated unit).
pub(super) const MOUNTINFO_V2: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
pub(super) const PROC_V2: &str = "0::/system.slice/sc.service\n";
pub(super) const V2_OWN_REL: &str = "sys/fs/cgroup/system.slice/sc.service";

/// v1 host with cpu and cpuacct co-mounted, no unified tree.
pub(super) const MOUNTINFO_V1_COMOUNT: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:20 / /sys/fs/cgroup rw,nosuid shared:2 - tmpfs tmpfs rw,mode=755
26 25 0:21 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:3 - cgroup cgroup rw,cpu,cpuacct
27 25 0:22 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:4 - cgroup cgroup rw,memory
28 25 0:23 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,pids
29 25 0:24 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,freezer
30 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:7 - cgroup cgroup rw,xattr,name=systemd
";
pub(super) const PROC_V1_COMOUNT: &str = "\
6:name=systemd:/
5:freezer:/
4:pids:/
3:memory:/process_api/x
2:cpu,cpuacct:/
";

/// This machine's shape: v1 controllers mounted one by one, plus an
/// unified cgroup2 tree without controllers.
pub(super) const MOUNTINFO_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
pub(super) const PROC_HYBRID: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/x
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

/// Absolute path of `rel` under the fake root.
pub(super) fn at(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

/// Populates a v2 fake: own cgroup, the subtree `sc-1`, and the given
/// groups (intermediate dirs get `V2_GROUP` files too).
pub(super) fn v2(root: &Path, groups: &[&str]) -> PathBuf {
    let own = at(root, V2_OWN_REL);
    files(&own, V2_OWN);
    let sub = own.join("sc-1");
    files(&sub, V2_GROUP);
    for g in groups {
        let mut dir = sub.clone();
        for part in g.split('/') {
            dir.push(part);
            files(&dir, V2_GROUP);
        }
    }
    sub
}

/// The hybrid fake's hierarchies, in `Layout::hierarchies` order: subtree
/// root (relative to the fake root) and the files of a group there.
pub(super) const HYBRID_SETS: [(&str, &[(&str, &str)]); 6] = [
    ("sys/fs/cgroup/memory/process_api/x/sc-1", V1_MEMORY),
    ("sys/fs/cgroup/cpu/sc-1", V1_CPU),
    ("sys/fs/cgroup/cpuacct/sc-1", V1_CPUACCT),
    ("sys/fs/cgroup/pids/sc-1", V1_PIDS),
    ("sys/fs/cgroup/freezer/sc-1", V1_FREEZER),
    ("sys/fs/cgroup/unified/sc-1", UNIFIED_GROUP),
];

/// Index of each hierarchy in [`HYBRID_SETS`] and in what [`hybrid`] returns.
pub(super) const MEM: usize = 0;
pub(super) const CPU: usize = 1;
pub(super) const CPUACCT: usize = 2;
pub(super) const PIDS: usize = 3;
pub(super) const FREEZER: usize = 4;
pub(super) const UNIFIED: usize = 5;

/// Populates the hybrid fake (this machine's shape) with subtree `sc-1`
/// and the given groups in every hierarchy; returns the subtree roots
/// `[memory, cpu, cpuacct, pids, freezer, unified]`.
pub(super) fn hybrid(root: &Path, groups: &[&str]) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = HYBRID_SETS
        .iter()
        .map(|(rel, set)| {
            let sub = at(root, rel);
            files(&sub, set);
            sub
        })
        .collect();
    for g in groups {
        hybrid_group(&roots, g, &[MEM, CPU, CPUACCT, PIDS, FREEZER, UNIFIED]);
    }
    roots
}

/// Adds `group` (and its parents) with interface files, as the kernel would
/// on mkdir, only in the hierarchies `which` (indices into `roots` as
/// returned by [`hybrid`]).
pub(super) fn hybrid_group(roots: &[PathBuf], group: &str, which: &[usize]) {
    for &i in which {
        let mut dir = roots[i].clone();
        for part in group.split('/') {
            dir.push(part);
            files(&dir, HYBRID_SETS[i].1);
        }
    }
}

/// [`MOUNTINFO_HYBRID`] / [`PROC_HYBRID`] without the cgroup2 lines: the
/// same v1 controllers, no unified tree.
pub(super) fn v1_only() -> (String, String) {
    let keep = |text: &str, drop: &str| -> String {
        text.lines()
            .filter(|l| !l.contains(drop))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    (
        keep(PROC_HYBRID, "0::"),
        keep(MOUNTINFO_HYBRID, " - cgroup2 "),
    )
}
