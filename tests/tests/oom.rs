//! A job that outgrows `--mem-limit` is OOM-killed in its cgroup (root-only):
//! exit 137, a message naming the limit and the peak, `oom: true` in JSON.

use sc_protocol::units::format_size;
use sc_tests::*;
use std::time::Duration;

const HOG: &str = "b = bytearray(256 * 1024 * 1024)\nprint('survived', len(b))";

#[test]
fn oom_kill_by_mem_limit() {
    if !require_root_and_cgroups("oom::oom_kill_by_mem_limit") {
        return;
    }
    let d = TestDaemon::start("");
    let py = python3();
    let out = run(
        {
            let mut c = d.cmd();
            c.args(["exec", "--mem-limit", "64M", "--", &py, "-c", HOG]);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_code(137);
    assert!(
        !out.stdout_str().contains("survived"),
        "the hog was not limited\n{out}"
    );
    let err = out.stderr_str();
    assert!(err.contains("out of memory"), "{out}");
    let limit = format_size(64 << 20); // "64.0 MiB"
    assert!(
        err.contains(&limit),
        "OOM message does not name the limit {limit:?}\n{out}"
    );
    assert!(
        err.contains("peak"),
        "OOM message does not give the peak\n{out}"
    );
}

#[test]
fn oom_kill_reported_in_json() {
    if !require_root_and_cgroups("oom::oom_kill_reported_in_json") {
        return;
    }
    let d = TestDaemon::start("");
    let py = python3();
    let out = run(
        {
            let mut c = d.cmd();
            c.args(["exec", "--json", "--mem-limit", "64M", "--", &py, "-c", HOG]);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_code(137);
    let events = out.events();
    let exited = events_named(&events, "exited");
    assert_eq!(exited.len(), 1, "{out}");
    let ex = exited[0];
    assert_eq!(ex["oom"], true, "{ex}");
    assert_eq!(ex["signal"], 9, "{ex}");
    assert!(ex["code"].is_null(), "{ex}");
    let peak = ex["peak_mem"].as_u64().unwrap_or(0);
    assert!(
        peak > 32 << 20 && peak <= (64 << 20) + (4 << 20),
        "peak_mem {peak} should be near the 64M limit\n{ex}"
    );
}

#[test]
fn job_within_limit_is_not_oom() {
    if !require_root_and_cgroups("oom::job_within_limit_is_not_oom") {
        return;
    }
    let d = TestDaemon::start("");
    let py = python3();
    let out = d.sc(&[
        "exec",
        "--json",
        "--mem-limit",
        "256M",
        "--",
        &py,
        "-c",
        "b = bytearray(32 * 1024 * 1024)",
    ]);
    out.assert_code(0);
    let events = out.events();
    let ex = events_named(&events, "exited");
    assert_eq!(ex.len(), 1, "{out}");
    assert_eq!(ex[0]["oom"], false, "{out}");
    let peak = ex[0]["peak_mem"].as_u64().unwrap_or(0);
    assert!(
        peak >= 32 << 20,
        "peak_mem {peak} below what the job touched\n{out}"
    );
}
