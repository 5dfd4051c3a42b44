//! `sc-chaos run` interrupted in the middle of a run (SIGINT, as Ctrl-C
//! sends it) removes every namespace, process, cgroup subtree and the run
//! dir it made, and exits 130. Root-only: the hosts live in network
//! namespaces and the daemons make cgroups.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "an_interrupted_run_removes_everything_it_made";

/// Every `sc-*` cgroup subtree on the machine (the daemons' subtrees sit
/// below the daemon's own cgroup, a few levels down in some hierarchies).
fn sc_subtrees() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with("sc-") {
                out.insert(p);
            } else if depth < 4 {
                todo.push((p, depth + 1));
            }
        }
    }
    out
}

fn netns_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_interrupted_run_removes_everything_it_made() {
    if !sc_tests::require_root_and_cgroups(TEST) {
        return;
    }
    let before = sc_subtrees();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sc-chaos"))
        .args(["run", "--nodes", "3", "--duration", "60s", "--seed", "5"])
        .args(["--mode", "available", "--net", "netns"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sc-chaos");
    let prefix = format!("scc{}-", child.id());
    // Under way: its namespaces exist, then a few seconds of jobs and faults.
    let deadline = Instant::now() + Duration::from_secs(60);
    while netns_with(&prefix).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "sc-chaos made no namespaces in 60 s"
        );
        assert!(
            child.try_wait().expect("poll sc-chaos").is_none(),
            "sc-chaos ended before its hosts were up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(8));
    let mid = sc_subtrees();
    assert!(
        mid.difference(&before).count() >= 3,
        "the run's 3 daemons made no cgroup subtrees: {mid:?}"
    );
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll sc-chaos") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sc-chaos still running 60 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted; removing everything"), "{err}");
    let run_dir = err
        .split("run dir ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(PathBuf::from)
        .expect("sc-chaos names its run dir");
    assert!(!Path::new(&run_dir).exists(), "{} left", run_dir.display());
    assert_eq!(netns_with(&prefix), Vec::<String>::new(), "namespaces left");
    let procs = sc_tests::processes_mentioning(&run_dir);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let after = sc_subtrees();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(left.is_empty(), "cgroup subtrees left: {left:?}");
}
