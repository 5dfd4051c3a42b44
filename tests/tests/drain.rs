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
    assert!(
        !waiter.has_exited(),
        "drain --wait returned while a job runs"
    );
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

/// Two hosts sharing `gpu = 1`: host-b's waiting `--needs` job ranks first
/// (high priority), yet once host-b drains it gives its request back and the
/// resource goes to host-a's waiting job when the holder ends.
#[test]
fn draining_host_hands_back_waiting_cluster_claims() {
    let c = Cluster::start_with(2, &[], "available_down = \"1s\"\n\n[resources]\ngpu = 1\n");
    c.converge();
    let dir = c.d(0).dir().to_path_buf();
    let release = dir.join("release-holder");
    let needs_job = |d: &TestDaemon, prio: &str, script: &str| {
        d.spawn(&[
            "exec",
            "--json",
            "--needs",
            "gpu",
            "--priority",
            prio,
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    let mut holder = needs_job(c.d(0), "normal", &wait_for_file_script(&release));
    holder.wait_event("started", T);
    let b_ran = dir.join("b-ran");
    let mut on_b = needs_job(c.d(1), "high", &format!("touch {}", b_ran.display()));
    on_b.wait_event("waiting", T);
    let a_ran = dir.join("a-ran");
    let mut on_a = needs_job(c.d(0), "normal", &format!("touch {}", a_ran.display()));
    on_a.wait_event("waiting", T);

    let out = c.d(1).sc(&["drain"]);
    out.assert_success();
    assert!(out.stdout_str().contains("handed back"), "{out}");
    wait_until(T, "host-b's job to wait on the drain", || {
        waiting_reasons(&on_b)
            .last()
            .is_some_and(|r| r == "host is draining")
    });

    std::fs::write(&release, "").expect("release file");
    holder.wait(T).assert_success();
    on_a.wait(T).assert_success();
    assert!(a_ran.exists(), "host-a's job did not get the resource");
    assert!(!b_ran.exists(), "host-b's job ran on a draining host");
    assert!(
        !on_b.has_exited(),
        "host-b's job gave up instead of waiting"
    );

    c.d(1).sc(&["undrain"]).assert_success();
    on_b.wait(T).assert_success();
    assert!(b_ran.exists(), "host-b's job did not run after undrain");
}
