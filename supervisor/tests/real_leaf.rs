//! The leaf move on the real cgroup2 tree, as root: a child process in a
//! test-created group is moved into that group's `daemon` leaf by
//! `move_into_leaf`, and the kernel's `/proc/PID/cgroup` says it is there.
//! Only groups this test creates are touched, and removed afterwards.
//!
//! Must not: skip silently. Without root or a cgroup2 mount it panics,
//! unless `SC_ALLOW_NO_CGROUP=1`, which prints a loud `SKIPPED:` line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

struct Cleanup {
    child: Child,
    dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Deepest first; a just-emptied group may briefly be busy.
        for d in self.dirs.iter().rev() {
            for _ in 0..50 {
                if !d.exists() || std::fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if d.exists() {
                eprintln!("cleanup: LEFT BEHIND {}", d.display());
            }
        }
    }
}

fn skip_or_panic(problem: &str) {
    if std::env::var("SC_ALLOW_NO_CGROUP").as_deref() == Ok("1") {
        let line = format!("\n*** SKIPPED: real leaf test: {problem} (SC_ALLOW_NO_CGROUP=1) ***\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    panic!("real leaf test needs root and a cgroup2 mount: {problem}");
}

#[test]
fn moves_a_real_process_into_the_leaf() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_panic("not running as root");
    }
    let proc_self = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    let Some(own_path) = sc_supervisor::cgroup::v2_path(&proc_self) else {
        return skip_or_panic("no cgroup v2 line in /proc/self/cgroup");
    };
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.get(sep + 1) == Some(&"cgroup2") && f[3] == "/").then(|| PathBuf::from(f[4]))
    }) else {
        return skip_or_panic("no cgroup2 mount of the whole tree");
    };
    let name = format!("sc-test-leaf-{}", std::process::id());
    let rel = Path::new(own_path.trim_start_matches('/')).join(&name);
    let group = mount.join(&rel);
    std::fs::create_dir(&group).unwrap_or_else(|e| panic!("mkdir {}: {e}", group.display()));
    let child = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let cleanup = Cleanup {
        child,
        dirs: vec![group.clone(), group.join("daemon")],
    };
    std::fs::write(group.join("cgroup.procs"), pid.to_string())
        .expect("put the child in the group");
    let delegated = format!("/{}", rel.display());
    let moved = sc_supervisor::cgroup::move_into_leaf(
        &format!("0::{delegated}\n"),
        &mountinfo,
        Path::new("/"),
        "daemon",
        pid,
    )
    .expect("move into the leaf");
    assert_eq!(moved.leaf, group.join("daemon"));
    assert_eq!(moved.proc_self_cgroup, format!("0::{delegated}\n"));
    let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read child's cgroup");
    let v2 = sc_supervisor::cgroup::v2_path(&now).expect("child's v2 line");
    assert_eq!(v2, format!("{delegated}/daemon"));
    let left = std::fs::read_to_string(group.join("cgroup.procs")).expect("read group procs");
    assert_eq!(left.trim(), "", "the delegated group keeps no process");
    drop(cleanup);
    assert!(!group.exists(), "{} removed", group.display());
    record_root_test("supervisor::real_leaf::moves_a_real_process_into_the_leaf");
}

/// Count this root-only test for CI's check that they ran (the same file
/// protocol as `sc_tests::record_root_test`; sc-tests is not a dependency
/// of the supervisor crate).
fn record_root_test(test: &str) {
    if let Some(path) = std::env::var_os("SC_ROOT_TESTS_RAN") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open SC_ROOT_TESTS_RAN={path:?}: {e}"));
        f.write_all(format!("{test}\n").as_bytes())
            .expect("write SC_ROOT_TESTS_RAN");
    }
}
