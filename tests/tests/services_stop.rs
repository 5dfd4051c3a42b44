//! Stopping a service leaves nothing behind (SIGTERM to its cgroup, SIGKILL
//! after `--stop-grace`), and who may control which service. Root-only.

use sc_tests::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[track_caller]
fn add(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

/// Every pid in the service's cgroups.
fn cgroup_pids(groups: &[PathBuf]) -> BTreeSet<u32> {
    groups
        .iter()
        .flat_map(|g| {
            std::fs::read_to_string(g.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Wait until `name` is stopped; return how long that took.
fn wait_stopped(d: &TestDaemon, name: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    wait_until(timeout, &format!("{name} to be stopped"), || {
        d.service(name)
            .is_some_and(|v| v["state"] == "stopped" && v["pid"].is_null())
    });
    start.elapsed()
}

#[test]
fn stop_kills_every_process_of_the_service() {
    if !require_root_and_cgroups("services_stop::stop_kills_every_process_of_the_service") {
        return;
    }
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "forky",
            "--",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & echo forked; wait",
        ],
    );
    let pid = wait_for(Duration::from_secs(10), "forky to run", || {
        d.service("forky")?["pid"].as_u64()
    }) as u32;
    let groups = d.service_cgroups("forky");
    assert!(!groups.is_empty(), "forky has no cgroup");
    let pids = wait_for(Duration::from_secs(10), "forky's three processes", || {
        let p = cgroup_pids(&groups);
        (p.len() >= 3).then_some(p)
    });
    assert!(pids.contains(&pid), "{pid} not among {pids:?}");

    d.sc(&["service", "stop", "forky"]).assert_success();
    // SIGTERM reaches every process: well within the default 10 s grace.
    let took = wait_stopped(&d, "forky", Duration::from_secs(15));
    assert!(
        took < Duration::from_secs(5),
        "stop took {took:?}: were the children SIGTERMed?"
    );
    for p in &pids {
        wait_until(
            Duration::from_secs(5),
            &format!("pid {p} to be gone"),
            || process_gone(*p),
        );
    }
    for g in &groups {
        let procs = std::fs::read_to_string(g.join("cgroup.procs")).unwrap_or_default();
        assert!(
            procs.trim().is_empty(),
            "{} still holds {procs:?}",
            g.display()
        );
    }
    let v = d.service_view("forky");
    assert_eq!(v["ready"], false, "{v}");
    let log = d.service_log("forky");
    assert!(log.contains("forked\n"), "{log}");
    assert!(log.contains("--- sc: stopped ---"), "{log}");

    // Stopped stays stopped (a requested stop is not a failure).
    std::thread::sleep(Duration::from_millis(1500));
    let v = d.service_view("forky");
    assert_eq!(v["state"], "stopped", "{v}");
    assert_eq!(v["restarts"], 0, "{v}");

    // And it can be started again.
    d.sc(&["service", "start", "forky"]).assert_success();
    let pid2 = wait_for(Duration::from_secs(10), "forky to run again", || {
        d.service("forky")?["pid"].as_u64()
    }) as u32;
    assert_ne!(pid2, pid);
    d.sc(&["service", "remove", "forky"]).assert_success();
    let left = cgroup_pids(&groups);
    assert!(left.is_empty(), "remove left {left:?}");
    assert!(process_gone(pid2));
}

#[test]
fn stop_kills_a_service_that_ignores_sigterm_after_the_grace() {
    if !require_root_and_cgroups(
        "services_stop::stop_kills_a_service_that_ignores_sigterm_after_the_grace",
    ) {
        return;
    }
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "stubborn",
            "--stop-grace",
            "500ms",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo trapped; while :; do sleep 0.1; done",
        ],
    );
    wait_until(Duration::from_secs(10), "stubborn to trap TERM", || {
        d.service_log("stubborn").contains("trapped\n")
    });
    let pid = d.service_view("stubborn")["pid"].as_u64().expect("pid") as u32;
    let groups = d.service_cgroups("stubborn");
    let start = Instant::now();
    d.sc(&["service", "stop", "stubborn"]).assert_success();
    wait_stopped(&d, "stubborn", Duration::from_secs(15));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "stopped after {took:?}, before the 500ms grace: did it ignore SIGTERM?"
    );
    assert!(
        took < Duration::from_secs(5),
        "not SIGKILLed soon after the 500ms grace ({took:?})"
    );
    assert!(process_gone(pid));
    let left = cgroup_pids(&groups);
    assert!(left.is_empty(), "left behind: {left:?}");
    let log = d.service_log("stubborn");
    assert!(log.contains("--- sc: exited: signal 9 ---"), "{log}");
}

#[test]
fn stop_during_backoff_cancels_the_restart() {
    if !require_root_and_cgroups("services_stop::stop_during_backoff_cancels_the_restart") {
        return;
    }
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "flaky",
            "--backoff-initial",
            "3s",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    wait_until(Duration::from_secs(10), "flaky to back off", || {
        d.service("flaky").is_some_and(|v| v["state"] == "backoff")
    });
    let v = d.service_view("flaky");
    assert!(
        v["next_start_ms"].as_u64().is_some_and(|ms| ms <= 3000),
        "{v}"
    );
    d.sc(&["service", "stop", "flaky"]).assert_success();
    wait_stopped(&d, "flaky", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(3500));
    let log = d.service_log("flaky");
    assert_eq!(
        log.matches("--- sc: started pid ").count(),
        1,
        "restarted after stop\n{log}"
    );
    assert_eq!(d.service_view("flaky")["state"], "stopped");
}

const NOBODY: &str = "65534";

/// `sc ARGS` as uid/gid 65534, talking to `d`.
fn as_nobody(d: &TestDaemon, args: &[&str]) -> RunOutput {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(sc_bin())
        .args(args)
        .env("SC_SOCKET", d.socket())
        .current_dir("/");
    run(c, CMD_TIMEOUT)
}

fn says_not_allowed(out: &RunOutput) -> bool {
    let err = out.stderr_str().to_lowercase();
    err.contains("permission") || err.contains("not allowed")
}

#[test]
fn other_uid_cannot_control_roots_service_but_can_restart_a_config_one() {
    if !require_root_and_cgroups(
        "services_stop::other_uid_cannot_control_roots_service_but_can_restart_a_config_one",
    ) {
        return;
    }
    let d = TestDaemon::start_with(DaemonConfig {
        daemon_extra: "socket_group = \"nogroup\"".into(),
        extra: "\n[[service]]\nname = \"shared\"\ncommand = [\"sleep\", \"1000\"]\ncwd = \"/\"\nstop_grace = \"1s\"\n".into(),
        ..DaemonConfig::default()
    });
    as_nobody(&d, &["service", "ls", "--json"]).assert_success();
    add(&d, &["rootsvc", "--", "sleep", "1000"]);
    let root_pid = wait_for(Duration::from_secs(10), "rootsvc to run", || {
        d.service("rootsvc")?["pid"].as_u64()
    });
    assert_eq!(d.service_view("rootsvc")["owner"], 0);
    let shared_pid = wait_for(Duration::from_secs(10), "shared to run", || {
        d.service("shared")?["pid"].as_u64()
    });

    for verb in ["stop", "restart", "remove"] {
        let out = as_nobody(&d, &["service", verb, "rootsvc"]);
        eprintln!(
            "observed: service {verb} rootsvc as uid {NOBODY}: {:?}: {}",
            out.code(),
            out.stderr_str().trim()
        );
        assert_ne!(
            out.code(),
            Some(0),
            "uid {NOBODY} could {verb} rootsvc\n{out}"
        );
        assert!(says_not_allowed(&out), "{out}");
    }
    let out = as_nobody(&d, &["logs", "rootsvc"]);
    eprintln!(
        "observed: logs rootsvc as uid {NOBODY}: {:?}: {}",
        out.code(),
        out.stderr_str().trim()
    );
    std::thread::sleep(Duration::from_millis(300));
    let v = d.service_view("rootsvc");
    assert_eq!(v["pid"], root_pid, "rootsvc touched by uid {NOBODY}: {v}");
    assert_eq!(v["state"], "running", "{v}");

    // A config service: anyone who reaches the socket may restart it.
    as_nobody(&d, &["service", "restart", "shared"]).assert_success();
    let new_pid = wait_for(Duration::from_secs(10), "shared to restart", || {
        d.service("shared")?["pid"]
            .as_u64()
            .filter(|p| *p != shared_pid)
    });
    assert!(process_gone(shared_pid as u32));
    assert!(!process_gone(new_pid as u32));
    // ... but not remove it.
    let out = as_nobody(&d, &["service", "remove", "shared"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(d.service("shared").is_some());

    // Root still controls its own.
    d.sc(&["service", "stop", "rootsvc"]).assert_success();
    wait_stopped(&d, "rootsvc", Duration::from_secs(15));
    assert!(process_gone(root_pid as u32));
}

#[test]
fn other_uid_owns_its_own_service() {
    if !require_root_and_cgroups("services_stop::other_uid_owns_its_own_service") {
        return;
    }
    let d = TestDaemon::start_with(DaemonConfig {
        daemon_extra: "socket_group = \"nogroup\"".into(),
        ..DaemonConfig::default()
    });
    let out = as_nobody(
        &d,
        &[
            "service",
            "add",
            "mine",
            "--stop-grace",
            "1s",
            "--",
            "sh",
            "-c",
            "echo uid=$(id -u); exec sleep 1000",
        ],
    );
    out.assert_success();
    let v = d.service_view("mine");
    assert_eq!(v["owner"], 65534, "{v}");
    wait_until(Duration::from_secs(10), "mine to say its uid", || {
        d.service_log("mine").contains("uid=")
    });
    assert!(
        d.service_log("mine").contains("uid=65534\n"),
        "{}",
        d.service_log("mine")
    );
    let pid = d.service_view("mine")["pid"].as_u64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "{status}"
    );
    // Its owner reads its log and stops it.
    let out = as_nobody(&d, &["logs", "mine"]);
    out.assert_success();
    assert!(out.stdout_str().contains("uid=65534"), "{out}");
    as_nobody(&d, &["service", "stop", "mine"]).assert_success();
    wait_stopped(&d, "mine", Duration::from_secs(15));
    // It may not run one as root.
    let out = as_nobody(
        &d,
        &[
            "service", "add", "sneaky", "--user", "root", "--", "sleep", "1",
        ],
    );
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(d.service("sneaky").is_none());
    // Root may remove it.
    d.sc(&["service", "remove", "mine"]).assert_success();
    assert!(d.service("mine").is_none());
}
