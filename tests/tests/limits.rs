//! Limits other than memory are enforced in the job's cgroup (root-only).

use sc_tests::*;
use std::time::Duration;

#[test]
fn pids_limit_caps_forks() {
    if !require_root_and_cgroups("limits::pids_limit_caps_forks") {
        return;
    }
    let d = TestDaemon::start("");
    // Try to have 40 processes at once; count how many forks succeeded.
    let script = r#"import os, time
ok = 0
kids = []
for i in range(40):
    try:
        pid = os.fork()
    except OSError:
        continue
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    ok += 1
    kids.append(pid)
print(ok)
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"#;
    let py = python3();
    let out = d.sc(&["exec", "--pids", "10", "--", &py, "-c", script]);
    out.assert_success();
    let forked: u32 = out.stdout_str().trim().parse().expect("count");
    assert!(
        forked < 10,
        "{forked} children with --pids 10 (the parent counts too)\n{out}"
    );
    // Control: without --pids every fork works.
    let out = d.sc(&["exec", "--", &py, "-c", script]);
    out.assert_success();
    assert_eq!(out.stdout_str().trim(), "40", "{out}");
}

#[test]
fn cpus_limit_throttles() {
    if !require_root_and_cgroups("limits::cpus_limit_throttles") {
        return;
    }
    let d = TestDaemon::start("");
    // Spin for 1.5 s of wall time; report the CPU time we got.
    let spin = r#"import time
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
print(time.process_time())
"#;
    let py = python3();
    let out = run(
        {
            let mut c = d.cmd();
            c.args(["exec", "--cpus", "0.25", "--", &py, "-c", spin]);
            c
        },
        Duration::from_secs(30),
    );
    out.assert_success();
    let cpu: f64 = out.stdout_str().trim().parse().expect("cpu seconds");
    // 0.25 CPU for 1.5 s is 0.375 s; allow scheduling slack.
    assert!(
        cpu < 0.75,
        "--cpus 0.25 got {cpu:.2} s of CPU in 1.5 s\n{out}"
    );
}
