//! `sc drain` / `sc undrain`: a draining host finishes its running jobs,
//! admits none (they wait with "host is draining"), keeps draining across
//! a daemon restart, and runs the queue again once undrained.

use sc_tests::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn waiting_reasons(job: &ScChild) -> Vec<String> {
    events_named(&job.events_so_far(), "waiting")
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn drain_finishes_running_jobs_and_holds_the_queue_until_undrain() {
    let mut d = TestDaemon::start("");
    let release = d.dir().join("release-running");
    let mut running = d.spawn(&[
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        &wait_for_file_script(&release),
    ]);
    running.wait_event("started", T);

    let out = d.sc(&["drain"]);
    out.assert_success();
    assert!(out.stdout_str().contains("draining"), "{out}");
    let st = d.status();
    assert_eq!(st["draining"], true, "{st}");
    let text = d.sc(&["status"]);
    assert!(text.stdout_str().contains("draining:"), "{text}");

    let ran = d.dir().join("queued-ran");
    let mut queued = d.spawn(&[
        "exec",
        "--json",
        "--",
        "touch",
        ran.to_str().expect("utf-8 path"),
    ]);
    let id = queued.wait_event("queued", T)["job"]
        .as_u64()
        .expect("job id");
    wait_until(T, "the queued job to say the host is draining", || {
        waiting_reasons(&queued)
            .iter()
            .any(|r| r == "host is draining")
    });
    assert_eq!(d.ps_job(id).expect("listed")["state"], "Queued");

    // The running job is not disturbed: it finishes normally.
    std::fs::write(&release, "").expect("release file");
    running.wait(T).assert_success();
    assert!(!ran.exists(), "a job was admitted on a draining host");

    // Drain survives a restart of the daemon.
    d.restart();
    assert_eq!(d.status()["draining"], true, "drain lost in a restart");
    // `--wait` returns at once: nothing runs any more.
    d.sc(&["drain", "--wait"]).assert_success();
    assert!(!ran.exists(), "a job was admitted on a draining host");

    d.sc(&["undrain"]).assert_success();
    assert_eq!(d.status()["draining"], false);
    queued.wait(T).assert_success();
    assert!(ran.exists(), "the queued job did not run after undrain");
}

#[test]
fn drain_wait_returns_once_running_jobs_finished() {
    let d = TestDaemon::start("");
    let release = d.dir().join("release");
    let mut running = d.spawn(&[
        "exec",
        "--json",
        "--",
        "sh",
        "-c",
        &wait_for_file_script(&release),
    ]);
    running.wait_event("started", T);
    let mut waiter = d.spawn(&["drain", "--wait"]);
    wait_until(T, "drain --wait to report the running job", || {
        waiter.stderr_so_far().contains("waiting for 1 running job")
    });
    assert!(!waiter.has_exited(), "drain --wait returned while a job runs");
    std::fs::write(&release, "").expect("release file");
    running.wait(T).assert_success();
    let out = waiter.wait(T);
    out.assert_success();
    assert!(out.stdout_str().contains("drained"), "{out}");
}

#[test]
fn only_root_or_the_daemon_user_may_drain() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run sc as another user");
        return;
    }
    let d = TestDaemon::start_with(DaemonConfig {
        daemon_extra: "socket_group = \"nogroup\"".into(),
        ..DaemonConfig::default()
    });
    for verb in ["drain", "undrain"] {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(sc_bin())
            .arg(verb)
            .env("SC_SOCKET", d.socket())
            .current_dir("/");
        let out = spawn(c, None).wait(T);
        assert_eq!(out.code(), Some(125), "{out}");
        assert!(out.stderr_str().contains("permission denied"), "{out}");
    }
    assert_eq!(d.status()["draining"], false);
}
