//! Services restarting: backoff and the crash-loop breaker, restart
//! policies, liveness probes, and services across daemon restarts.

use sc_tests::*;
use std::time::Duration;

#[track_caller]
fn add(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

/// The delays of the `--- sc: restarting in X (...) ---` markers, in ms.
fn restart_delays(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix("--- sc: restarting in "))
        .map(|rest| {
            let d = rest.split_whitespace().next().unwrap_or("");
            if let Some(ms) = d.strip_suffix("ms") {
                ms.parse()
                    .unwrap_or_else(|_| panic!("bad delay in {l:?}", l = rest))
            } else if let Some(s) = d.strip_suffix('s') {
                (s.parse::<f64>()
                    .unwrap_or_else(|_| panic!("bad delay in {rest:?}"))
                    * 1000.0)
                    .round() as u64
            } else {
                panic!("bad delay in {rest:?}")
            }
        })
        .collect()
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn crash_loop_backs_off_then_fails_until_restarted() {
    let d = TestDaemon::start("");
    let starts = d.dir().join("starts");
    let script = format!("date +%s.%N >> {}; echo boom; exit 1", starts.display());
    add(
        &d,
        &[
            "crash",
            "--backoff-initial",
            "100ms",
            "--max-failures",
            "3",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_until(Duration::from_secs(20), "crash to be failed", || {
        d.service("crash").is_some_and(|v| v["state"] == "failed")
    });
    let log = d.service_log("crash");
    // Three failures are allowed; the fourth is one too many.
    assert_eq!(
        restart_delays(&log),
        vec![100, 200, 400],
        "restart delays should double from 100ms\n{log}"
    );
    assert_eq!(count(&log, "--- sc: started pid "), 4, "{log}");
    assert_eq!(count(&log, "--- sc: exited: exit 1 ---"), 4, "{log}");
    assert_eq!(count(&log, "boom\n"), 4, "{log}");
    assert!(
        log.contains("--- sc: restarting in 100ms (exit 1) ---"),
        "{log}"
    );
    assert!(log.contains("--- sc: failed: "), "{log}");
    // The process's own records: the gaps between starts grow with the delays.
    let times: Vec<f64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().expect("date output"))
        .collect();
    assert_eq!(times.len(), 4, "{times:?}");
    for (i, want) in [0.1, 0.2, 0.4].iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(
            gap >= want - 0.01 && gap < want + 1.0,
            "gap {i} between starts is {gap:.3}s, expected about {want}s: {times:?}"
        );
    }
    let v = d.service_view("crash");
    assert_eq!(v["restarts"], 3, "{v}");
    assert!(v["pid"].is_null(), "{v}");
    assert_eq!(v["ready"], false, "{v}");
    assert!(
        v["last_reason"].as_str().unwrap_or("").contains("exit 1"),
        "{v}"
    );
    // No more restarts while failed.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(count(&d.service_log("crash"), "--- sc: started pid "), 4);
    assert_eq!(d.service_view("crash")["state"], "failed");

    // A job waiting for it is refused at once.
    let out = d.sc(&["exec", "--wait-for", "crash", "--", "true"]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("crash"), "{out}");
    assert!(out.stderr_str().contains("failed"), "{out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");

    // `sc service restart` re-arms it.
    d.sc(&["service", "restart", "crash"]).assert_success();
    wait_until(
        Duration::from_secs(5),
        "crash to be started again after restart",
        || count(&d.service_log("crash"), "--- sc: started pid ") >= 5,
    );
    // It crashes again, and goes through its backoff again before failing.
    wait_until(Duration::from_secs(20), "crash to fail again", || {
        count(&d.service_log("crash"), "--- sc: started pid ") >= 6
    });
}

#[test]
fn exit_zero_counts_as_a_failure_under_always() {
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "quitter",
            "--backoff-initial",
            "100ms",
            "--max-failures",
            "2",
            "--",
            "true",
        ],
    );
    wait_until(Duration::from_secs(20), "quitter to be failed", || {
        d.service("quitter").is_some_and(|v| v["state"] == "failed")
    });
    let log = d.service_log("quitter");
    assert_eq!(restart_delays(&log), vec![100, 200], "{log}");
    assert_eq!(count(&log, "--- sc: exited: exit 0 ---"), 3, "{log}");
}

#[test]
fn on_failure_and_never_policies() {
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "clean",
            "--restart",
            "on-failure",
            "--backoff-initial",
            "100ms",
            "--",
            "true",
        ],
    );
    add(
        &d,
        &[
            "dirty",
            "--restart",
            "on-failure",
            "--backoff-initial",
            "100ms",
            "--max-failures",
            "1",
            "--",
            "false",
        ],
    );
    add(
        &d,
        &[
            "once",
            "--restart",
            "never",
            "--backoff-initial",
            "100ms",
            "--",
            "false",
        ],
    );
    wait_until(Duration::from_secs(10), "clean to stop", || {
        d.service("clean").is_some_and(|v| v["state"] == "stopped")
    });
    wait_until(Duration::from_secs(10), "once to stop", || {
        d.service("once").is_some_and(|v| v["state"] == "stopped")
    });
    wait_until(Duration::from_secs(10), "dirty to fail", || {
        d.service("dirty").is_some_and(|v| v["state"] == "failed")
    });
    std::thread::sleep(Duration::from_millis(500));
    for (name, starts) in [("clean", 1), ("once", 1), ("dirty", 2)] {
        let log = d.service_log(name);
        assert_eq!(
            count(&log, "--- sc: started pid "),
            starts,
            "{name}:\n{log}"
        );
        let v = d.service_view(name);
        assert_eq!(v["restarts"], starts - 1, "{v}");
    }
    assert_eq!(d.service_view("clean")["restart_policy"], "on-failure");
    assert_eq!(d.service_view("once")["restart_policy"], "never");
}

#[test]
fn failed_liveness_http_probe_restarts_the_service() {
    let d = TestDaemon::start("");
    let port = free_port().to_string();
    let script = http_server_script(d.dir());
    let flag = d.dir().join("hang");
    let url = format!("http://127.0.0.1:{port}/");
    let py = python3();
    add(
        &d,
        &[
            "live",
            "--liveness",
            &url,
            "--liveness-period",
            "200ms",
            "--liveness-timeout",
            "300ms",
            "--liveness-failure-threshold",
            "2",
            "--backoff-initial",
            "100ms",
            "--",
            &py,
            script.to_str().unwrap(),
            &port,
            flag.to_str().unwrap(),
        ],
    );
    let pid1 = wait_for(Duration::from_secs(10), "live to serve", || {
        let v = d.service("live")?;
        let pid = v["pid"].as_u64()?;
        d.service_log("live").contains("serving on").then_some(pid)
    });
    // Healthy: passing probes leave it alone.
    std::thread::sleep(Duration::from_millis(1200));
    let v = d.service_view("live");
    assert_eq!(v["pid"], pid1, "restarted while healthy: {v}");
    assert_eq!(v["restarts"], 0, "{v}");

    // Stop answering.
    std::fs::write(&flag, "").unwrap();
    let v = wait_for(Duration::from_secs(10), "live to be restarted", || {
        d.service("live").filter(|v| {
            v["restarts"].as_u64() >= Some(1)
                && v["pid"].as_u64().is_some()
                && v["pid"].as_u64() != Some(pid1)
        })
    });
    std::fs::remove_file(&flag).unwrap();
    assert!(
        v["last_reason"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("liveness"),
        "last_reason should mention liveness: {v}"
    );
    wait_until(Duration::from_secs(5), "the old process to be gone", || {
        process_gone(pid1 as u32)
    });
    let log = d.service_log("live");
    assert!(log.contains("--- sc: liveness probe failed"), "{log}");
    // With the flag gone the new process stays up.
    wait_until(Duration::from_secs(10), "live to be running again", || {
        d.service("live")
            .is_some_and(|v| v["state"] == "running" && v["pid"].as_u64().is_some())
    });
    let v1 = d.service_view("live");
    std::thread::sleep(Duration::from_millis(1200));
    let v2 = d.service_view("live");
    assert_eq!(v1["pid"], v2["pid"], "still restarting: {v1} then {v2}");
    assert_eq!(v2["state"], "running");
}

#[test]
fn failed_liveness_exec_probe_restarts_the_service() {
    let d = TestDaemon::start("");
    let flag = d.dir().join("sick");
    let probe = format!("exec:test ! -e {}", flag.display());
    add(
        &d,
        &[
            "execlive",
            "--liveness",
            &probe,
            "--liveness-period",
            "200ms",
            "--liveness-failure-threshold",
            "2",
            "--backoff-initial",
            "100ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    let pid1 = wait_for(Duration::from_secs(10), "execlive to run", || {
        d.service("execlive")?["pid"].as_u64()
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(d.service_view("execlive")["pid"], pid1);
    std::fs::write(&flag, "").unwrap();
    let v = wait_for(Duration::from_secs(10), "execlive to be restarted", || {
        d.service("execlive")
            .filter(|v| v["restarts"].as_u64() >= Some(1))
    });
    std::fs::remove_file(&flag).unwrap();
    assert!(
        v["last_reason"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("liveness"),
        "{v}"
    );
    wait_until(Duration::from_secs(5), "sleep 1000 to be gone", || {
        process_gone(pid1 as u32)
    });
    let pid2 = wait_for(Duration::from_secs(10), "a new pid", || {
        d.service("execlive")?["pid"]
            .as_u64()
            .filter(|p| *p != pid1)
    });
    assert!(!process_gone(pid2 as u32));
    let log = d.service_log("execlive");
    assert!(log.contains("--- sc: liveness probe failed"), "{log}");
    assert!(
        log.contains(&format!("--- sc: started pid {pid2} ---")),
        "{log}"
    );
}

#[test]
fn failed_startup_probe_restarts_and_gates_the_other_probes() {
    let d = TestDaemon::start("");
    let flag = d.dir().join("up");
    let probe = format!("exec:test -e {}", flag.display());
    add(
        &d,
        &[
            "slow",
            "--startup",
            &probe,
            "--startup-period",
            "200ms",
            "--startup-failure-threshold",
            "3",
            "--readiness",
            "exec:true",
            "--readiness-period",
            "200ms",
            "--backoff-initial",
            "100ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    // The startup probe fails: never ready, restarted.
    wait_until(Duration::from_secs(10), "slow to be restarted", || {
        d.service("slow")
            .is_some_and(|v| v["restarts"].as_u64() >= Some(1))
    });
    let v = d.service_view("slow");
    assert_eq!(v["ready"], false, "ready before startup passed: {v}");
    assert!(
        d.service_log("slow")
            .contains("--- sc: startup probe failed"),
        "{}",
        d.service_log("slow")
    );
    std::fs::write(&flag, "").unwrap();
    wait_until(Duration::from_secs(10), "slow to be ready", || {
        d.service("slow").is_some_and(|v| v["ready"] == true)
    });
}

/// A service with a readiness probe on a python HTTP server; returns its pid
/// once ready.
fn add_web(d: &TestDaemon, name: &str) -> (u64, String) {
    let port = free_port().to_string();
    let script = http_server_script(d.dir());
    let url = format!("http://127.0.0.1:{port}/");
    let py = python3();
    add(
        d,
        &[
            name,
            "--readiness",
            &url,
            "--readiness-period",
            "200ms",
            "--stop-grace",
            "2s",
            "--",
            &py,
            script.to_str().unwrap(),
            &port,
        ],
    );
    let pid = wait_for(Duration::from_secs(15), "the service to be ready", || {
        let v = d.service(name)?;
        (v["ready"] == true).then(|| v["pid"].as_u64()).flatten()
    });
    (pid, url)
}

/// Wait until `name` is listed, running and ready with a pid other than
/// `old`; return the new pid.
fn ready_again(d: &TestDaemon, name: &str, old: u64) -> u64 {
    wait_for(
        Duration::from_secs(15),
        "the service to be ready again with a new pid",
        || {
            let v = d.service(name)?;
            let pid = v["pid"].as_u64()?;
            (v["state"] == "running" && v["ready"] == true && pid != old).then_some(pid)
        },
    )
}

#[test]
fn runtime_service_comes_back_after_daemon_restarts() {
    let mut d = TestDaemon::start("");
    let (pid1, url) = add_web(&d, "keeper");

    // SIGKILLed daemon: the service process outlives it; the next daemon
    // kills it and starts the service afresh.
    d.kill9();
    assert!(
        !process_gone(pid1 as u32),
        "expected the service to outlive a SIGKILLed daemon"
    );
    d.restart();
    let v = d.service_view("keeper");
    assert_eq!(v["source"], "runtime", "{v}");
    let pid2 = ready_again(&d, "keeper", pid1);
    wait_until(
        Duration::from_secs(5),
        "the old service pid to be gone",
        || process_gone(pid1 as u32),
    );
    let saw = d.dir().join("saw");
    let fetch = format!(
        "import urllib.request; open({:?}, 'w').write(str(urllib.request.urlopen({url:?}, timeout=5).status))",
        saw.display().to_string()
    );
    d.sc(&[
        "exec",
        "--wait-for",
        "keeper",
        "--",
        &python3(),
        "-c",
        &fetch,
    ])
    .assert_success();
    assert_eq!(std::fs::read_to_string(&saw).unwrap(), "200");

    // Clean stop: the daemon stops its services before exiting.
    d.restart_clean(Duration::from_secs(20));
    assert!(
        process_gone(pid2 as u32),
        "a cleanly stopped daemon left its service running"
    );
    let pid3 = ready_again(&d, "keeper", pid2);
    assert_ne!(pid3, pid1);
    let log = d.service_log("keeper");
    assert!(
        count(&log, "--- sc: started pid ") >= 3,
        "the log should span the three daemons\n{log}"
    );
}

#[test]
fn stopped_and_removed_services_stay_so_across_daemon_restarts() {
    let mut d = TestDaemon::start("");
    add(&d, &["resting", "--", "sleep", "1000"]);
    add(&d, &["gone", "--", "sleep", "1000"]);
    add(&d, &["dormant", "--no-start", "--", "sleep", "1000"]);
    let pid = wait_for(Duration::from_secs(10), "resting to run", || {
        d.service("resting")?["pid"].as_u64()
    });
    let gone_pid = wait_for(Duration::from_secs(10), "gone to run", || {
        d.service("gone")?["pid"].as_u64()
    });
    d.sc(&["service", "stop", "resting"]).assert_success();
    wait_until(Duration::from_secs(15), "resting to stop", || {
        d.service("resting")
            .is_some_and(|v| v["state"] == "stopped")
    });
    assert!(process_gone(pid as u32));
    d.sc(&["service", "remove", "gone"]).assert_success();
    assert!(d.service("gone").is_none());
    assert!(process_gone(gone_pid as u32));

    d.restart();
    std::thread::sleep(Duration::from_millis(500));
    let v = d.service_view("resting");
    assert_eq!(
        v["state"], "stopped",
        "a stopped service came back running: {v}"
    );
    assert!(v["pid"].is_null(), "{v}");
    let v = d.service_view("dormant");
    assert_eq!(
        v["state"], "stopped",
        "a --no-start service was started: {v}"
    );
    assert!(d.service("gone").is_none(), "a removed service came back");

    // Started again, it is recorded as such.
    d.sc(&["service", "start", "resting"]).assert_success();
    wait_until(Duration::from_secs(10), "resting to run", || {
        d.service("resting")
            .is_some_and(|v| v["state"] == "running" && v["pid"].is_u64())
    });
    d.restart_clean(Duration::from_secs(20));
    wait_until(
        Duration::from_secs(10),
        "resting to run after the restart",
        || {
            d.service("resting")
                .is_some_and(|v| v["state"] == "running" && v["pid"].is_u64())
        },
    );
}

#[test]
fn mem_limit_oom_kill_is_the_reason() {
    if !require_root_and_cgroups("services_restart::mem_limit_oom_kill_is_the_reason") {
        return;
    }
    let d = TestDaemon::start("");
    let py = python3();
    add(
        &d,
        &[
            "hog",
            "--mem-limit",
            "64M",
            "--restart",
            "never",
            "--",
            &py,
            "-c",
            "b = bytearray(512 * 1024 * 1024); import time; time.sleep(30)",
        ],
    );
    wait_until(Duration::from_secs(20), "hog to stop", || {
        d.service("hog").is_some_and(|v| v["state"] == "stopped")
    });
    let v = d.service_view("hog");
    assert_eq!(v["last_reason"], "OOM", "{v}");
    let log = d.service_log("hog");
    assert!(log.contains("--- sc: exited: OOM ---"), "{log}");
}
