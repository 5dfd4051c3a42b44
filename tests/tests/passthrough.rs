//! The command runs "exactly as if typed" (§1, §4.4): stdin, stdout, env and
//! cwd are the caller's; `SC_JOB_ID` is set; `--json` events go to stderr only.

use sc_tests::*;
use std::time::Duration;

#[test]
fn stdin_is_passed_through() {
    let d = TestDaemon::start("");
    let mut c = d.cmd();
    c.args(["exec", "--", "cat"]);
    let out = spawn(c, Some(b"hello\n".to_vec())).wait(CMD_TIMEOUT);
    out.assert_success();
    assert_eq!(out.stdout_str(), "hello\n", "{out}");
}

#[test]
fn env_is_passed_through() {
    let d = TestDaemon::start("");
    let mut c = d.cmd();
    c.env("FOO", "bar baz")
        .args(["exec", "--", "sh", "-c", "printf '%s' \"$FOO\""]);
    let out = run(c, CMD_TIMEOUT);
    out.assert_success();
    assert_eq!(out.stdout_str(), "bar baz", "{out}");
}

#[test]
fn cwd_is_the_callers() {
    let d = TestDaemon::start("");
    let work = d.dir().join("some dir");
    std::fs::create_dir(&work).unwrap();
    let mut c = d.cmd();
    c.current_dir(&work).args(["exec", "--", "pwd", "-P"]);
    let out = run(c, CMD_TIMEOUT);
    out.assert_success();
    assert_eq!(
        out.stdout_str().trim_end(),
        work.canonicalize().unwrap().to_str().unwrap(),
        "{out}"
    );
}

#[test]
fn job_id_is_exported_and_matches_events() {
    let d = TestDaemon::start("");
    let out = d.sc(&[
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        "printf '%s' \"$SC_JOB_ID\"",
    ]);
    out.assert_success();
    let id: u64 = out
        .stdout_str()
        .parse()
        .unwrap_or_else(|_| panic!("SC_JOB_ID is not a number\n{out}"));
    let events = out.events();
    let started = events_named(&events, "started");
    assert_eq!(started.len(), 1, "expected one started event\n{out}");
    assert_eq!(
        started[0]["job"], id,
        "SC_JOB_ID differs from the started event\n{out}"
    );
    // The daemon released the held child itself, through the pipe `sc exec`
    // passed with its request (daemon/release.rs), and the environment
    // it wrote arrived.
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("job started") && l.contains(&format!("job={id} ")))
        .unwrap_or_else(|| panic!("no `job started` line for job {id}\n{log}"));
    assert!(line.contains("released_by_daemon=true"), "{line}");
    // A second job gets another id.
    let out2 = d.sc(&["exec", "--", "sh", "-c", "printf '%s' \"$SC_JOB_ID\""]);
    out2.assert_success();
    assert_ne!(out2.stdout_str(), out.stdout_str(), "job ids reused");
}

#[test]
fn json_events_go_to_stderr_and_describe_the_run() {
    let d = TestDaemon::start("");
    let out = d.sc(&[
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    out.assert_code(3);
    assert_eq!(
        out.stdout_str(),
        "out\n",
        "stdout must be only the command's\n{out}"
    );
    assert!(out.stderr_str().contains("err\n"), "{out}");
    let events = out.events();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n);
    let (started, exited) = (pos("started"), pos("exited"));
    assert!(
        started.is_some() && exited.is_some(),
        "events: {names:?}\n{out}"
    );
    assert!(started < exited, "started after exited: {names:?}");
    if let Some(q) = pos("queued") {
        assert!(q < started.unwrap(), "queued after started: {names:?}");
    }
    let job = &events[started.unwrap()]["job"];
    assert!(job.is_u64(), "started event without job id\n{out}");
    assert!(
        events[started.unwrap()]["pid"].as_u64().unwrap_or(0) > 0,
        "no pid\n{out}"
    );
    let ex = &events[exited.unwrap()];
    assert_eq!(&ex["job"], job);
    assert_eq!(ex["code"], 3, "{ex}");
    assert!(ex["signal"].is_null(), "{ex}");
    assert_eq!(ex["oom"], false, "{ex}");
    assert!(ex.get("waited_ms").is_some_and(|v| v.is_u64()), "{ex}");
    // Every event line is its own JSON object; no other JSON on stdout.
    assert!(serde_json::from_str::<serde_json::Value>(out.stdout_str().trim()).is_err());
}

#[test]
fn stdout_pipe_closes_when_job_ends() {
    // `sc exec ... | consumer` must not hang: nothing but the job keeps the
    // caller's stdout open.
    let d = TestDaemon::start("");
    let out = run(
        {
            let mut c = d.cmd();
            c.args(["exec", "--", "echo", "hi"]);
            c
        },
        Duration::from_secs(20),
    );
    out.assert_success();
    assert!(
        out.stdout_eof && out.stderr_eof,
        "stdout/stderr still open after exit\n{out}"
    );
}

#[test]
fn json_event_lines_are_never_torn_by_job_output() {
    // The job writes to the same stderr as the events; each event must reach
    // it as one whole line (one write), whatever the job prints meanwhile.
    // Several jobs at once so that the CLI gets descheduled mid-event now and
    // then (the bug this catches is a race).
    let d = TestDaemon::start("");
    let spam = "i=0; while [ $i -lt 2000 ]; do echo e >&2; i=$((i+1)); done";
    for round in 0..8 {
        let children: Vec<ScChild> = (0..4)
            .map(|_| d.spawn(&["exec", "--json", "--", "sh", "-c", spam]))
            .collect();
        for child in children {
            let out = child.wait(CMD_TIMEOUT);
            out.assert_success();
            let err = out.stderr_str();
            // The stderr without the job's own "e" lines.
            let ours: Vec<&str> = err.lines().filter(|l| *l != "e").collect();
            for line in ours.iter().filter(|l| l.contains("\"event\"")) {
                assert!(
                    serde_json::from_str::<serde_json::Value>(line).is_ok(),
                    "round {round}: torn event line {line:?}\nother stderr lines: {ours:#?}"
                );
            }
            let events = out.events();
            for name in ["started", "exited"] {
                assert_eq!(
                    events_named(&events, name).len(),
                    1,
                    "round {round}: no intact {name} event\nother stderr lines: {ours:#?}"
                );
            }
        }
    }
}
