//! The daemon dies while a job runs (§4.7): the job keeps running (it is the
//! CLI's child); a restarted daemon adopts it; `sc exec` still exits with the
//! command's code.

use sc_tests::*;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn restarted_daemon_adopts_running_job() {
    if !require_root_and_cgroups("restart::restarted_daemon_adopts_running_job") {
        return;
    }
    let mut d = TestDaemon::start("");
    let done = d.dir().join("done");
    let script = format!("sleep 3; echo done > {}; exit 7", done.display());
    let mut job = d.spawn(&["exec", "--json", "--", "sh", "-c", &script]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().expect("job id");
    let pid = started["pid"].as_u64().expect("pid") as u32;
    let old_cgroups = d.job_cgroups(id);
    assert!(
        !old_cgroups.is_empty(),
        "the running job has no cgroup dir: {}",
        d.status()
    );

    d.kill9();
    assert!(!process_gone(pid), "the job died with the daemon");
    d.restart();

    // The new daemon knows the job while it still runs.
    let seen = wait_for(
        Duration::from_secs(3),
        "the restarted daemon to list the job",
        || d.ps_job(id),
    );
    assert!(
        seen["state"] == "Running" || seen["state"] == "Detached",
        "adopted job in state {}",
        seen["state"]
    );
    assert!(
        !done.exists(),
        "the job finished before the check; test too slow"
    );

    let out = job.wait(Duration::from_secs(30));
    out.assert_code(7);
    assert_eq!(std::fs::read_to_string(&done).unwrap_or_default(), "done\n");

    let mut cgroups: Vec<PathBuf> = old_cgroups;
    cgroups.extend(d.job_cgroups(id));
    wait_until(
        Duration::from_secs(10),
        "the adopted job to leave sc ps",
        || d.ps_job(id).is_none(),
    );
    wait_until(
        Duration::from_secs(10),
        "the adopted job's cgroups to be removed",
        || cgroups.iter().all(|cg| !cg.exists()),
    );
    // The new daemon still works.
    d.sc(&["exec", "--", "true"]).assert_success();
}

#[test]
fn job_survives_daemon_death_without_restart() {
    let mut d = TestDaemon::start("");
    let done = d.dir().join("done");
    let script = format!("sleep 1; echo done > {}; exit 7", done.display());
    let job = d.spawn(&["exec", "--", "sh", "-c", &script]);
    wait_until(Duration::from_secs(10), "the job to be Running", || {
        d.ps().iter().any(|j| j["state"] == "Running")
    });
    d.kill9();
    let out = job.wait(Duration::from_secs(60));
    out.assert_code(7);
    assert_eq!(std::fs::read_to_string(&done).unwrap_or_default(), "done\n");
    assert!(
        out.stderr_str().to_lowercase().contains("daemon"),
        "no warning about the daemon on stderr\n{out}"
    );
}

#[test]
fn job_survives_daemon_death_without_restart_json() {
    // Same with --json: the loss of the daemon must still be reported on
    // stderr (as an event or a line), not silently dropped.
    let mut d = TestDaemon::start("");
    let script = "sleep 1; exit 7";
    let mut job = d.spawn(&["exec", "--json", "--", "sh", "-c", script]);
    job.wait_event("started", Duration::from_secs(10));
    d.kill9();
    let out = job.wait(Duration::from_secs(60));
    out.assert_code(7);
    let exited = out
        .events()
        .into_iter()
        .filter(|e| e["event"] == "exited")
        .count();
    assert_eq!(exited, 1, "{out}");
    let not_exited: String = out
        .stderr_str()
        .lines()
        .filter(|l| {
            !l.contains("\"exited\"") && !l.contains("\"started\"") && !l.contains("\"queued\"")
        })
        .collect();
    assert!(
        not_exited.to_lowercase().contains("daemon"),
        "--json: the lost daemon is not reported on stderr\n{out}"
    );
}

#[test]
fn queued_job_survives_daemon_restart() {
    // A job the daemon acknowledged is not lost (§8): the queued client
    // re-attaches to the restarted daemon and runs once there is room.
    let mut d = TestDaemon::start("");
    let (blocker, release) = d.hold_memory("3G");
    let marker = d.dir().join("ran");
    let mut job = d.spawn(&[
        "exec",
        "--json",
        "--mem",
        "3G",
        "--",
        "sh",
        "-c",
        &format!("touch {}; exit 5", marker.display()),
    ]);
    job.wait_event("queued", Duration::from_secs(10));
    d.restart();
    // Still queued behind the (still running, re-attached) blocker.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "the queued job ran while the blocker held the memory"
    );
    std::fs::write(&release, "").unwrap();
    blocker.wait(Duration::from_secs(30)).assert_success();
    let out = job.wait(Duration::from_secs(30));
    out.assert_code(5);
    assert!(marker.exists());
    // The restarted daemon never got the release pipe (a re-attach does
    // not pass it), so `sc exec` released the child itself.
    let log = d.log();
    let started: Vec<&str> = log.lines().filter(|l| l.contains("job started")).collect();
    assert!(
        started
            .last()
            .is_some_and(|l| l.contains("released_by_daemon=false")),
        "{log}"
    );
}
