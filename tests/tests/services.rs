//! Services (DESIGN §5): readiness gating `sc exec --wait-for`, config
//! services, `--wait-for` refusals, the views (`sc ps`, `sc status`,
//! `sc service ls`), and what a run-time service runs with.

use sc_tests::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `sc service add ARGS`, which must succeed.
#[track_caller]
fn add(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

/// A job command that GETs `url` and writes the HTTP status it got (or the
/// error) to `out`; exits 0 only on a 2xx.
fn fetch_cmd(url: &str, out: &std::path::Path) -> Vec<String> {
    let code = format!(
        "import urllib.request, sys\n\
         try:\n    s = urllib.request.urlopen({url:?}, timeout=5).status\n\
         except Exception as e:\n    s = 'error: %s' % e\n\
         open({out:?}, 'w').write(str(s))\n\
         sys.exit(0 if s == 200 else 1)\n",
        out = out.display().to_string()
    );
    vec![python3(), "-c".into(), code]
}

#[test]
fn wait_for_gates_a_job_until_the_web_service_is_ready() {
    let d = TestDaemon::start("");
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let py = python3();
    add(
        &d,
        &[
            "web",
            "--readiness",
            &url,
            "--readiness-period",
            "200ms",
            "--readiness-initial-delay",
            "500ms",
            "--",
            &py,
            "-m",
            "http.server",
            &port,
            "--bind",
            "127.0.0.1",
        ],
    );
    // Queued right away: the service cannot be ready for 500 ms.
    let status_file = d.dir().join("job-saw");
    let mut args = vec!["exec", "--json", "--wait-for", "web", "--"];
    let cmd = fetch_cmd(&url, &status_file);
    args.extend(cmd.iter().map(String::as_str));
    let job = d.spawn(&args);
    let out = job.wait(Duration::from_secs(30));
    out.assert_success();
    assert_eq!(
        std::fs::read_to_string(&status_file).unwrap_or_default(),
        "200",
        "the job did not get a 200 from the service\n{out}"
    );
    let events = out.events();
    let waiting = events_named(&events, "waiting");
    assert!(
        waiting
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("web")),
        "no `waiting` event naming web\n{out}"
    );
    let pos = |name: &str| events.iter().position(|e| e["event"] == name);
    assert!(
        pos("waiting") < pos("started") && pos("started").is_some(),
        "waiting should come before started\n{out}"
    );

    let v = d.service_view("web");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["source"], "runtime", "{v}");
    assert_eq!(v["restarts"], 0, "{v}");
    let log = d.service_log("web");
    assert!(log.contains("--- sc: started pid "), "{log}");
    assert!(log.contains("--- sc: ready ---"), "{log}");

    // Once ready, a --wait-for job starts without waiting.
    let status2 = d.dir().join("job2-saw");
    let mut args = vec!["exec", "--json", "--wait-for", "web", "--"];
    let cmd = fetch_cmd(&url, &status2);
    args.extend(cmd.iter().map(String::as_str));
    let out = d.sc(&args);
    out.assert_success();
    assert_eq!(std::fs::read_to_string(&status2).unwrap(), "200");
    assert!(
        events_named(&out.events(), "waiting").is_empty(),
        "a job waited for a ready service\n{out}"
    );
}

#[test]
fn service_runs_in_its_cgroup() {
    if !require_root_and_cgroups("services::service_runs_in_its_cgroup") {
        return;
    }
    let d = TestDaemon::start("");
    add(&d, &["grouped", "--", "sleep", "1000"]);
    let pid = wait_for(Duration::from_secs(10), "grouped to run", || {
        d.service("grouped")?["pid"].as_u64()
    }) as u32;
    let groups = d.service_cgroups("grouped");
    assert!(
        !groups.is_empty(),
        "no services/grouped cgroup under {:?}",
        d.subtrees()
    );
    for g in &groups {
        let procs = std::fs::read_to_string(g.join("cgroup.procs")).unwrap();
        assert!(
            procs.split_whitespace().any(|p| p == pid.to_string()),
            "pid {pid} not in {}: {procs:?}",
            g.display()
        );
    }
    d.sc(&["service", "remove", "grouped"]).assert_success();
    assert!(process_gone(pid));
    assert!(d.service("grouped").is_none());
}

#[test]
fn config_service_starts_with_the_daemon_and_gates_wait_for() {
    let port = free_port();
    let py = python3();
    let d = TestDaemon::start(&format!(
        "\n[[service]]\nname = \"cfgweb\"\ncommand = [{py:?}, \"-m\", \"http.server\", \"{port}\", \"--bind\", \"127.0.0.1\"]\ncwd = \"/\"\nenv = {{ SC_CFG_MARK = \"from-config\" }}\n\n[service.readiness]\nprobe = \"tcp://127.0.0.1:{port}\"\nperiod = \"200ms\"\n"
    ));
    // Listed from the start, owned by the daemon's user.
    let v = d.service_view("cfgweb");
    assert_eq!(v["source"], "config", "{v}");
    assert_eq!(
        v["argv"],
        serde_json::json!([
            py,
            "-m",
            "http.server",
            port.to_string(),
            "--bind",
            "127.0.0.1"
        ])
    );

    let url = format!("http://127.0.0.1:{port}/");
    let saw = d.dir().join("saw");
    let mut args = vec!["exec", "--wait-for", "cfgweb", "--"];
    let cmd = fetch_cmd(&url, &saw);
    args.extend(cmd.iter().map(String::as_str));
    d.sc(&args).assert_success();
    assert_eq!(std::fs::read_to_string(&saw).unwrap(), "200");

    let v = d.service_view("cfgweb");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["ready"], true, "{v}");
    let pid = v["pid"].as_u64().expect("pid");
    // The config's env reaches the process.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&environ).contains("SC_CFG_MARK=from-config"),
        "SC_CFG_MARK not in the service's environment"
    );

    // A config service cannot be removed at run time.
    let out = d.sc(&["service", "remove", "cfgweb"]);
    assert_ne!(out.code(), Some(0), "removed a config service\n{out}");
    assert!(out.stderr_str().contains("config"), "{out}");
    let v = d.service_view("cfgweb");
    assert_eq!(v["pid"], pid, "remove touched the config service: {v}");
    assert_eq!(v["state"], "running", "{v}");
}

#[test]
fn wait_for_unknown_service_fails_at_once() {
    let d = TestDaemon::start("");
    let out = d.sc(&["exec", "--wait-for", "nope", "--", "true"]);
    out.assert_code(125);
    assert!(
        out.stderr_str().contains("no such service"),
        "message should say no such service\n{out}"
    );
    assert!(out.stderr_str().contains("nope"), "{out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");
    // One unknown name among several is enough.
    add(
        &d,
        &[
            "okay",
            "--readiness",
            "exec:true",
            "--readiness-period",
            "200ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    let out = d.sc(&["exec", "--wait-for", "okay,nope", "--", "true"]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("nope"), "{out}");
}

#[test]
fn wait_timeout_names_the_service_that_never_got_ready() {
    let d = TestDaemon::start("");
    let closed = free_port();
    let probe = format!("tcp://127.0.0.1:{closed}");
    add(
        &d,
        &[
            "never",
            "--readiness",
            &probe,
            "--readiness-period",
            "200ms",
            "--readiness-timeout",
            "200ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    let start = Instant::now();
    let out = d.sc(&[
        "exec",
        "--json",
        "--wait-for",
        "never",
        "--wait-timeout",
        "500ms",
        "--",
        "true",
    ]);
    let took = start.elapsed();
    out.assert_code(125);
    assert!(
        took >= Duration::from_millis(450),
        "gave up before the wait timeout ({took:?})\n{out}"
    );
    assert!(
        took < Duration::from_secs(5),
        "wait-timeout 500ms took {took:?}\n{out}"
    );
    let err = out.stderr_str();
    assert!(
        err.lines()
            .any(|l| !l.trim_start().starts_with('{') && l.contains("never")),
        "the message does not name the service\n{out}"
    );
    assert!(
        events_named(&out.events(), "waiting")
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("never")),
        "no waiting event naming the service\n{out}"
    );
    assert!(
        events_named(&out.events(), "started").is_empty(),
        "the job ran\n{out}"
    );
    // Still running, never ready.
    let v = d.service_view("never");
    assert_eq!(v["ready"], false, "{v}");
    assert_eq!(v["state"], "running", "{v}");
}

#[test]
fn wait_for_stopped_service_fails_at_once() {
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "idle",
            "--no-start",
            "--readiness",
            "exec:true",
            "--readiness-period",
            "200ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    let v = d.service_view("idle");
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["pid"].is_null(), "{v}");
    let out = d.sc(&["exec", "--wait-for", "idle", "--", "true"]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("idle"), "{out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");

    d.sc(&["service", "start", "idle"]).assert_success();
    let out = d.sc(&["exec", "--wait-for", "idle", "--", "true"]);
    out.assert_success();
    assert_eq!(d.service_view("idle")["ready"], true);
}

/// The line of the services table for `name` in `text`.
fn table_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn ps_and_status_show_services() {
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "shown",
            "--readiness",
            "exec:true",
            "--readiness-period",
            "200ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    add(&d, &["hidden-not", "--no-start", "--", "sleep", "1000"]);
    wait_until(Duration::from_secs(10), "shown to be ready", || {
        d.service("shown").is_some_and(|v| v["ready"] == true)
    });

    for verb in ["ps", "status"] {
        let out = d.sc(&[verb]);
        out.assert_success();
        let text = out.stdout_str();
        let header = text
            .lines()
            .find(|l| l.contains("SERVICE"))
            .unwrap_or_else(|| panic!("no services header in sc {verb}\n{out}"));
        assert!(
            header.contains("STATE") && header.contains("READY"),
            "sc {verb}: header {header:?}"
        );
        let line = table_line(&text, "shown")
            .unwrap_or_else(|| panic!("sc {verb} does not list shown\n{out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "running", "sc {verb}: {line:?}");
        assert_eq!(cols[2], "yes", "sc {verb}: {line:?}");
        let line = table_line(&text, "hidden-not")
            .unwrap_or_else(|| panic!("sc {verb} does not list hidden-not\n{out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "stopped", "sc {verb}: {line:?}");
        assert_eq!(cols[2], "no", "sc {verb}: {line:?}");
    }

    let ps = d.sc(&["ps", "--json"]);
    ps.assert_success();
    let ps = ps.json();
    assert!(ps["jobs"].is_array(), "{ps}");
    let svc = ps["services"]
        .as_array()
        .expect("services array")
        .iter()
        .find(|s| s["name"] == "shown")
        .cloned()
        .unwrap_or_else(|| panic!("shown not in sc ps --json: {ps}"));
    assert_eq!(svc["state"], "running");
    assert_eq!(svc["ready"], true);

    let st = d.status();
    let svc = st["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services array in sc status --json: {st}"))
        .iter()
        .find(|s| s["name"] == "shown")
        .cloned()
        .unwrap_or_else(|| panic!("shown not in sc status --json: {st}"));
    assert_eq!(svc["state"], "running");
    assert_eq!(svc["ready"], true);

    // Every documented field of sc service ls --json.
    let v = d.service_view("shown");
    for key in [
        "name",
        "source",
        "owner",
        "argv",
        "state",
        "ready",
        "restarts",
        "last_reason",
        "uptime_ms",
        "pid",
        "mem_current",
        "next_start_ms",
        "restart_policy",
    ] {
        assert!(v.get(key).is_some(), "no {key:?} in {v}");
    }
    assert_eq!(v["owner"], unsafe { libc::geteuid() });
    assert_eq!(v["argv"], serde_json::json!(["sleep", "1000"]));
    assert_eq!(v["restart_policy"], "always");
    assert!(v["pid"].as_u64().is_some(), "{v}");
    assert!(v["uptime_ms"].as_u64().is_some(), "{v}");
    let stopped = d.service_view("hidden-not");
    assert!(stopped["pid"].is_null(), "{stopped}");
    assert_eq!(stopped["ready"], false);
}

#[test]
fn runtime_service_env_is_the_adders_env_plus_env_flags() {
    let d = TestDaemon::start("");
    let out = run(
        {
            let mut c = d.cmd();
            c.env("SC_ADDER_MARK", "from-adder").args([
                "service",
                "add",
                "envy",
                "--env",
                "SC_FLAG_MARK=from-flag",
                "--",
                "sh",
                "-c",
                "echo \"adder=$SC_ADDER_MARK flag=$SC_FLAG_MARK path=$PATH\"; exec sleep 1000",
            ]);
            c
        },
        CMD_TIMEOUT,
    );
    out.assert_success();
    let line = wait_for(Duration::from_secs(10), "envy's line in its log", || {
        d.service_log("envy")
            .lines()
            .find(|l| l.starts_with("adder="))
            .map(str::to_string)
    });
    assert!(line.contains("flag=from-flag"), "{line}");
    assert!(
        line.contains("adder=from-adder"),
        "the environment of `sc service add` did not reach the service: {line}"
    );
    let path = std::env::var("PATH").unwrap_or_default();
    assert!(
        line.contains(&format!("path={path}")),
        "PATH of `sc service add` did not reach the service: {line}"
    );
}

#[test]
fn bad_service_definitions_are_refused() {
    let d = TestDaemon::start("");
    add(&d, &["dup", "--no-start", "--", "true"]);
    let out = d.sc(&["service", "add", "dup", "--", "true"]);
    assert_ne!(out.code(), Some(0), "a second service named dup\n{out}");
    assert!(out.stderr_str().contains("dup"), "{out}");
    for bad in [
        vec!["service", "add", "a b", "--", "true"],
        vec!["service", "add", "x", "--log-max-size", "1K", "--", "true"],
        vec![
            "service",
            "add",
            "x",
            "--readiness",
            "ftp://h:1",
            "--",
            "true",
        ],
        vec![
            "service",
            "add",
            "x",
            "--readiness-period",
            "1s",
            "--",
            "true",
        ],
        vec!["service", "add", "x", "--cwd", "/no/such/dir", "--", "true"],
    ] {
        let out = d.sc(&bad);
        assert_ne!(out.code(), Some(0), "accepted {bad:?}\n{out}");
        assert!(!out.stderr_str().trim().is_empty(), "{out}");
    }
    let names: Vec<Value> = d.services().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, vec![Value::from("dup")]);
    for verb in ["start", "stop", "restart", "remove"] {
        let out = d.sc(&["service", verb, "ghost"]);
        assert_ne!(out.code(), Some(0), "service {verb} ghost\n{out}");
        assert!(out.stderr_str().contains("ghost"), "{out}");
    }
    let out = d.sc(&["logs", "ghost"]);
    assert_ne!(out.code(), Some(0), "{out}");
}
