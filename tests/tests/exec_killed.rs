//! `sc exec` killed with SIGKILL (§4.7): the daemon sees the socket close and
//! kills the job's cgroup; the job's cgroup is removed (root-only).

use sc_tests::*;
use std::time::Duration;

#[test]
fn sigkill_of_sc_exec_kills_the_job() {
    if !require_root_and_cgroups("exec_killed::sigkill_of_sc_exec_kills_the_job") {
        return;
    }
    let d = TestDaemon::start("");
    let mut job = d.spawn(&["exec", "--json", "--", "sleep", "300"]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().expect("job id");
    let pid = started["pid"].as_u64().expect("pid") as u32;

    let ps = d.ps_job(id).expect("running job listed");
    assert_eq!(ps["state"], "Running", "{ps}");
    assert_eq!(
        ps["pid"], pid,
        "ps and the started event disagree on the pid: {ps}"
    );

    let cgroups = d.job_cgroups(id);
    assert!(
        !cgroups.is_empty(),
        "the running job has no cgroup dir under any subtree of: {}",
        d.status()
    );
    for cg in &cgroups {
        assert!(
            cg.is_dir(),
            "job cgroup {} missing while the job runs",
            cg.display()
        );
    }
    // The job's process is in the memory cgroup (v1) or the unified one.
    let in_cgroup = cgroups.iter().any(|cg| {
        std::fs::read_to_string(cg.join("cgroup.procs"))
            .map(|procs| procs.lines().any(|l| l.trim() == pid.to_string()))
            .unwrap_or(false)
    });
    assert!(in_cgroup, "pid {pid} is in none of {cgroups:?}");

    // Kill only the sc exec process, not its process group.
    job.signal(libc::SIGKILL);
    wait_until(Duration::from_secs(5), "sc exec to die", || {
        job.has_exited()
    });

    wait_until(
        Duration::from_secs(10),
        "the orphaned job (sleep) to be killed",
        || process_gone(pid),
    );
    wait_until(
        Duration::from_secs(10),
        "the job's cgroup dirs to be removed",
        || cgroups.iter().all(|cg| !cg.exists()),
    );
    wait_until(Duration::from_secs(10), "sc ps to be empty", || {
        d.ps().is_empty()
    });
}

#[test]
fn sigkill_of_queued_sc_exec_dequeues_the_job() {
    let d = TestDaemon::start("");
    let (blocker, release) = d.hold_memory("3G");
    let marker = d.dir().join("ran");
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
        .unwrap();
    job.signal(libc::SIGKILL);
    wait_until(
        Duration::from_secs(10),
        "the dead client's job to leave the queue",
        || d.ps_job(id).is_none(),
    );
    std::fs::write(&release, "").unwrap();
    blocker.wait(Duration::from_secs(10)).assert_success();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the job of a dead sc exec ran");
}
