//! `sc exec` exits as the command did (§4.6): its code, 128+signal, 126/127
//! for commands that cannot run, 125 for sc's own errors, 124 on --timeout.

use sc_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn exit_code_zero() {
    let d = TestDaemon::start("");
    d.sc(&["exec", "--", "true"]).assert_code(0);
}

#[test]
fn exit_code_of_command_is_passed_through() {
    let d = TestDaemon::start("");
    d.sc(&["exec", "--", "sh", "-c", "exit 3"]).assert_code(3);
    d.sc(&["exec", "--", "false"]).assert_code(1);
}

#[test]
fn killed_by_signal_gives_128_plus_signal() {
    let d = TestDaemon::start("");
    // SIGTERM = 15 → 143; SIGKILL = 9 → 137.
    d.sc(&["exec", "--", "sh", "-c", "kill -TERM $$"])
        .assert_code(143);
    d.sc(&["exec", "--", "sh", "-c", "kill -KILL $$"])
        .assert_code(137);
}

#[test]
fn not_executable_gives_126() {
    let d = TestDaemon::start("");
    let f = d.dir().join("not-executable.sh");
    std::fs::write(&f, "#!/bin/sh\necho should not run\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = d.sc(&["exec", "--", f.to_str().unwrap()]);
    out.assert_code(126);
    assert!(!out.stdout_str().contains("should not run"), "{out}");
    assert!(
        !out.stderr_str().trim().is_empty(),
        "126 without a message on stderr\n{out}"
    );
}

#[test]
fn not_found_gives_127() {
    let d = TestDaemon::start("");
    // A PATH of readable dirs only: execvp reports EACCES rather than ENOENT
    // when some PATH entry is unreadable (e.g. /root/... for non-root).
    let mut c = d.cmd();
    c.env("PATH", "/usr/local/bin:/usr/bin:/bin").args([
        "exec",
        "--",
        "sc-tests-no-such-command-xyz",
    ]);
    let out = run(c, CMD_TIMEOUT);
    out.assert_code(127);
    assert!(
        out.stderr_str().contains("sc-tests-no-such-command-xyz"),
        "127 without naming the command on stderr\n{out}"
    );
}

#[test]
fn unknown_flag_gives_125() {
    // An unknown option before `--` is a typo of an sc flag, not the command.
    let d = TestDaemon::start("");
    let marker = d.dir().join("ran");
    let m = marker.to_str().unwrap();
    let out = d.sc(&["exec", "--no-such-flag", "--", "touch", m]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("no-such-flag"), "{out}");
    let out = d.sc(&["exec", "--mem", "1G", "--memm", "2G", "--", "touch", m]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("memm"), "{out}");
    assert!(!marker.exists(), "the command ran despite a bad flag");
}

#[test]
fn bad_flag_values_give_125() {
    let d = TestDaemon::start("");
    let marker = d.dir().join("ran");
    let m = marker.to_str().unwrap();
    for (flag, value) in [
        ("--mem", "lots"),
        ("--mem-limit", "1Q"),
        ("--priority", "urgent"),
        ("--timeout", "soon"),
        ("--cpus", "0"),
        ("--pids", "x"),
    ] {
        let out = d.sc(&["exec", flag, value, "--", "touch", m]);
        out.assert_code(125);
        assert!(
            out.stderr_str().contains(value),
            "bad {flag} value not named\n{out}"
        );
    }
    let out = d.sc(&["exec"]);
    out.assert_code(125);
    assert!(!marker.exists(), "the command ran despite a bad flag");
}

#[test]
fn impossible_memory_request_is_refused_at_once_with_125() {
    let d = TestDaemon::start("");
    let marker = d.dir().join("ran");
    // The fake host has 4G: 100G can never fit. It must be refused, not queued.
    let out = run(
        {
            let mut c = d.cmd();
            c.args([
                "exec",
                "--mem",
                "100G",
                "--",
                "touch",
                marker.to_str().unwrap(),
            ]);
            c
        },
        Duration::from_secs(10),
    );
    out.assert_code(125);
    let err = out.stderr_str();
    assert!(
        err.contains("100") || err.to_lowercase().contains("memory"),
        "refusal does not say what was wrong\n{out}"
    );
    assert!(!marker.exists(), "the impossible job ran");
    // Nothing left queued.
    assert!(d.ps().is_empty(), "refused job still listed: {:?}", d.ps());
}

#[test]
fn timeout_kills_job_and_exits_124() {
    let d = TestDaemon::start("");
    let marker = d.dir().join("survived");
    let script = format!("sleep 30; touch {}", marker.display());
    let out = run(
        {
            let mut c = d.cmd();
            c.args(["exec", "--timeout", "1s", "--", "sh", "-c", &script]);
            c
        },
        Duration::from_secs(20),
    );
    out.assert_code(124);
    assert!(out.stderr_str().contains("timed out"), "{out}");
    assert!(
        out.elapsed < Duration::from_secs(15),
        "took {:?} for a 1s timeout",
        out.elapsed
    );
    assert!(!marker.exists());
    wait_until(
        Duration::from_secs(5),
        "the timed-out job to leave sc ps",
        || d.ps().is_empty(),
    );
}
