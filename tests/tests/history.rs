//! Learned costs: finished jobs are kept in the history store (`sc history`),
//! and a job without `--mem` is admitted with what earlier runs of the same
//! command in the same directory peaked at (`sc exec --explain` says so).

use sc_tests::*;
use serde_json::Value;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Allocates (and writes) 80 MiB, so its peak is well above the runtime's.
const ALLOC: &str = "b = b'x' * (80 << 20); print(len(b))";

fn history(d: &TestDaemon) -> Vec<Value> {
    let out = d.sc(&["history", "--json", "-n", "0"]);
    out.assert_success();
    json_lines(&out.stdout_str())
}

/// Wait until the history lists `n` jobs (the record is written just after
/// `sc exec` is told the job finished).
#[track_caller]
fn wait_history(d: &TestDaemon, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(10), "jobs in sc history", || {
        let h = history(d);
        (h.len() >= n).then_some(h)
    })
}

/// What `learning::learn` makes of one run with the default parameters
/// (p90 of one run is that run; 20% headroom; whole MiB).
fn learned_from(peak: u64) -> u64 {
    ((peak as f64 * 1.2).ceil() as u64).div_ceil(MIB) * MIB
}

fn explain_line(out: &RunOutput) -> String {
    out.stderr_str()
        .lines()
        .find(|l| l.contains("reserves memory"))
        .unwrap_or_else(|| panic!("no --explain line\n{out}"))
        .to_string()
}

#[test]
fn learned_request_used_on_second_run() {
    if !require_root_and_cgroups("history::learned_request_used_on_second_run") {
        return;
    }
    let mut d = TestDaemon::start("");
    let py = python3();
    let first = d.sc(&["exec", "--explain", "--", &py, "-c", ALLOC]);
    first.assert_success();
    let line = explain_line(&first);
    assert!(
        line.contains("default 256.0 MiB: no earlier runs of"),
        "first run should use the default: {line}"
    );
    let h = wait_history(&d, 1);
    let peak = h[0]["usage"]["peak_mem"]
        .as_u64()
        .unwrap_or_else(|| panic!("no peak recorded: {}", h[0]));
    assert!(peak >= 80 * MIB, "peak {peak} below what the job wrote");
    assert_eq!(h[0]["reserved"], 256 * MIB, "{}", h[0]);
    assert_eq!(h[0]["mem_source"], "Default", "{}", h[0]);

    let second = d.sc(&["exec", "--explain", "--json", "--", &py, "-c", ALLOC]);
    second.assert_success();
    let events = second.events();
    let explain = events_named(&events, "explain");
    assert_eq!(explain.len(), 1, "{second}");
    let want = learned_from(peak);
    assert_eq!(explain[0]["mem"], want, "{second}");
    assert_eq!(explain[0]["source"]["Learned"]["runs"], 1, "{second}");
    let why = explain[0]["why"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("learned ") && why.contains("p90 of peak memory over the last run of"),
        "{why}"
    );

    let h = wait_history(&d, 2);
    assert_eq!(h.len(), 2, "{h:?}");
    let (a, b) = (&h[0], &h[1]);
    assert!(
        a["id"].as_u64() < b["id"].as_u64(),
        "not oldest first: {h:?}"
    );
    assert_eq!(b["reserved"], want, "{b}");
    assert_eq!(b["mem_source"]["Learned"]["runs"], 1, "{b}");
    for e in [a, b] {
        assert_eq!(e["argv"][0], py.as_str(), "{e}");
        assert_eq!(e["cwd"], d.dir().display().to_string(), "{e}");
        assert_eq!(e["owner"], 0, "{e}");
        assert_eq!(e["outcome"], "exited", "{e}");
        assert_eq!(e["code"], 0, "{e}");
        assert!(e["usage"]["cpu_time_us"].as_u64().is_some(), "{e}");
        assert!(e["usage"]["ran_ms"].is_u64(), "{e}");
        assert!(e["usage"]["waited_ms"].is_u64(), "{e}");
        assert!(e["ended_at"].as_u64() >= e["queued_at"].as_u64(), "{e}");
    }

    // What was learned is rebuilt from the store by the next daemon.
    d.restart();
    let after = d.sc(&["exec", "--explain", "--", &py, "-c", ALLOC]);
    after.assert_success();
    let line = explain_line(&after);
    assert!(
        line.contains("over the last 2 runs of"),
        "a restarted daemon forgot the runs: {line}"
    );
    wait_history(&d, 3);

    // --mem still wins, and says so.
    let third = d.sc(&["exec", "--explain", "--mem", "300M", "--", "true"]);
    third.assert_success();
    assert!(
        explain_line(&third).contains("--mem 300.0 MiB given"),
        "{third}"
    );
    // Another directory is another command.
    let elsewhere = run(
        {
            let mut c = d.cmd();
            c.current_dir("/")
                .args(["exec", "--explain", "--", &py, "-c", ALLOC]);
            c
        },
        Duration::from_secs(30),
    );
    elsewhere.assert_success();
    assert!(
        explain_line(&elsewhere).contains("default 256.0 MiB"),
        "{elsewhere}"
    );
}

#[test]
fn ps_json_shows_where_the_reservation_came_from() {
    let d = TestDaemon::start("");
    let (holder, release) = d.hold_memory("1G");
    let job = wait_for(Duration::from_secs(10), "the holder in sc ps", || {
        d.ps().into_iter().find(|j| j["state"] == "Running")
    });
    assert_eq!(job["mem_source"], "Requested", "{job}");
    assert_eq!(job["reserved"], 1024 * MIB, "{job}");
    std::fs::write(&release, b"").unwrap();
    holder.wait(CMD_TIMEOUT).assert_success();
}

#[test]
fn history_survives_a_daemon_restart() {
    let mut d = TestDaemon::start("");
    let out = d.sc(&["exec", "--", "sh", "-c", "exit 3"]);
    out.assert_code(3);
    d.sc(&["exec", "--name", "second", "--", "true"])
        .assert_success();
    let before = wait_history(&d, 2);
    d.kill9();
    // The reader the chaos suite uses sees the same records.
    assert_eq!(history_of(d.state_dir()).unwrap(), before);
    d.restart();
    let after = history(&d);
    assert_eq!(after, before, "history changed across a restart");
    assert_eq!(after[0]["outcome"], "exited");
    assert_eq!(after[0]["code"], 3);
    assert_eq!(after[1]["name"], "second");
    // -n keeps the newest.
    let last = json_lines(&d.sc(&["history", "--json", "-n", "1"]).stdout_str());
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["id"], after[1]["id"]);
    // The table names the command and its outcome.
    let table = d.sc(&["history"]);
    table.assert_success();
    let text = table.stdout_str();
    assert!(
        text.contains("exit 3") && text.contains("sh -c exit 3"),
        "{text}"
    );
    assert!(text.contains("second"), "{text}");
}

#[test]
fn a_corrupt_history_store_does_not_stop_jobs() {
    let mut d = TestDaemon::start("");
    d.kill9();
    std::fs::write(d.state_dir().join("history.redb"), vec![0x42; 16384]).unwrap();
    d.restart();
    d.sc(&["exec", "--", "true"]).assert_success();
    let h = wait_history(&d, 1);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        d.log().contains("is unreadable"),
        "the daemon did not say the store was bad\n{}",
        d.log()
    );
}

#[test]
fn learning_config_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sc.toml");
    for (text, key) in [
        ("[learning]\npercentile = 0\n", "percentile"),
        ("[learning]\nheadroom = 0.5\n", "headroom"),
        ("[learning]\nruns = 0\n", "runs"),
        ("[learning]\nwindow = 3\n", "window"),
    ] {
        std::fs::write(&path, text).unwrap();
        let mut c = std::process::Command::new(sc_bin());
        c.args(["config", "check"]).arg(&path);
        let out = run(c, CMD_TIMEOUT);
        assert_ne!(out.code(), Some(0), "{text} was accepted\n{out}");
        assert!(out.stderr_str().contains(key), "{text}: {out}");
    }
}
