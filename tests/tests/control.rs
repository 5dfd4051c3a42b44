//! `sc cancel`, `sc pause`, `sc resume`.

use sc_tests::*;
use std::time::Duration;

#[test]
fn cancel_queued_job() {
    let d = TestDaemon::start("");
    let (blocker, release) = d.hold_memory("3G");
    let marker = d.dir().join("queued-job-ran");

    let mut job = d.spawn(&[
        "exec",
        "--json",
        "--mem",
        "3G",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    let id = job.wait_event("queued", Duration::from_secs(10))["job"]
        .as_u64()
        .expect("job id");
    assert_eq!(d.ps_job(id).expect("queued job listed")["state"], "Queued");

    d.sc(&["cancel", &id.to_string()]).assert_success();
    let out = job.wait(Duration::from_secs(10));
    out.assert_code(125);
    assert!(out.stderr_str().contains("cancelled"), "{out}");
    assert!(d.ps_job(id).is_none(), "cancelled job still listed");

    std::fs::write(&release, "").unwrap();
    blocker.wait(Duration::from_secs(10)).assert_success();
    assert!(!marker.exists(), "a cancelled queued job ran");
    // Cancelling it again: it is gone.
    let again = d.sc(&["cancel", &id.to_string()]);
    assert_ne!(
        again.code(),
        Some(0),
        "cancel of a finished job succeeded\n{again}"
    );
    assert!(!again.stderr_str().trim().is_empty(), "{again}");
}

#[test]
fn cancel_running_job() {
    let d = TestDaemon::start("");
    let mut job = d.spawn(&["exec", "--json", "--", "sleep", "300"]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().expect("job id");
    let pid = started["pid"].as_u64().expect("pid") as u32;
    assert!(!process_gone(pid));

    d.sc(&["cancel", &id.to_string()]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(
        matches!(out.code(), Some(143) | Some(137)),
        "expected 143 (SIGTERM) or 137 (SIGKILL)\n{out}"
    );
    wait_until(
        Duration::from_secs(5),
        "the cancelled job's process to be gone",
        || process_gone(pid),
    );
    wait_until(
        Duration::from_secs(5),
        "the cancelled job to leave sc ps",
        || d.ps_job(id).is_none(),
    );
}

#[test]
fn cancel_unknown_job_fails() {
    let d = TestDaemon::start("");
    let out = d.sc(&["cancel", "999999"]);
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(!out.stderr_str().trim().is_empty(), "{out}");
    let out = d.sc(&["pause", "999999"]);
    assert_ne!(out.code(), Some(0), "{out}");
    let out = d.sc(&["resume", "999999"]);
    assert_ne!(out.code(), Some(0), "{out}");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !require_root_and_cgroups("control::pause_freezes_and_resume_thaws") {
        return;
    }
    let d = TestDaemon::start("");
    let counter = d.dir().join("counter");
    let tick = format!(
        "i=0; while [ $i -lt 400 ]; do echo x >> {}; sleep 0.05; i=$((i+1)); done",
        counter.display()
    );
    let mut job = d.spawn(&["exec", "--json", "--", "sh", "-c", &tick]);
    let id = job.wait_event("started", Duration::from_secs(10))["job"]
        .as_u64()
        .expect("job id");
    let ids = id.to_string();
    wait_until(Duration::from_secs(5), "the counter to tick", || {
        file_len(&counter) >= 6
    });

    d.sc(&["pause", &ids]).assert_success();
    assert_eq!(d.ps_job(id).expect("listed")["state"], "Paused");
    // Let a tick that was mid-flight land, then nothing may move for 1 s.
    std::thread::sleep(Duration::from_millis(150));
    let frozen_at = file_len(&counter);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        file_len(&counter),
        frozen_at,
        "the counter moved while paused"
    );
    assert!(!job.has_exited(), "sc exec exited while its job was paused");

    d.sc(&["resume", &ids]).assert_success();
    assert_eq!(d.ps_job(id).expect("listed")["state"], "Running");
    wait_until(
        Duration::from_secs(5),
        "the counter to move after resume",
        || file_len(&counter) > frozen_at + 4,
    );

    d.sc(&["cancel", &ids]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(matches!(out.code(), Some(143) | Some(137)), "{out}");
}

#[test]
fn paused_job_can_be_cancelled() {
    if !require_root_and_cgroups("control::paused_job_can_be_cancelled") {
        return;
    }
    let d = TestDaemon::start("");
    let mut job = d.spawn(&["exec", "--json", "--", "sleep", "300"]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().unwrap();
    let pid = started["pid"].as_u64().unwrap() as u32;
    d.sc(&["pause", &id.to_string()]).assert_success();
    // A frozen process cannot act on SIGTERM: cancel must still end it.
    d.sc(&["cancel", &id.to_string()]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(matches!(out.code(), Some(143) | Some(137)), "{out}");
    wait_until(Duration::from_secs(5), "the process to be gone", || {
        process_gone(pid)
    });
}

#[test]
fn cancel_escalates_to_sigkill() {
    // A job that ignores SIGTERM is SIGKILLed after the grace period.
    let d = TestDaemon::start_with(DaemonConfig {
        daemon_extra: "kill_grace = \"1s\"".into(),
        ..DaemonConfig::default()
    });
    let mut job = d.spawn(&[
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        "trap '' TERM; i=0; while [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done",
    ]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().unwrap();
    let pid = started["pid"].as_u64().unwrap() as u32;
    std::thread::sleep(Duration::from_millis(200)); // let sh install its trap
    d.sc(&["cancel", &id.to_string()]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    out.assert_code(137);
    assert!(out.elapsed < Duration::from_secs(12), "{out}");
    wait_until(
        Duration::from_secs(5),
        "the job's process to be gone",
        || process_gone(pid),
    );
}
