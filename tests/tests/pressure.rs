//! Pressure (issue 7, items 1–3): under memory pressure the daemon freezes
//! the lowest-priority preemptible job and thaws it once pressure has stayed
//! low for the hold-down; a waiting high-priority job that needs CPUs
//! freezes lower-priority jobs and they are thawed when it ends.
//!
//! Memory pressure is made deterministic with a configured fake capacity:
//! "available" is then that capacity minus what the jobs' cgroups use, and a
//! real memory hog in its own job cgroup pushes it below the watermark. The
//! host's PSI threshold is set to 100 % so the machine's own pressure cannot
//! interfere.

use sc_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A job that ticks until killed (at most ~100 s).
const TICK: &str = "i=0; while [ $i -lt 1000 ]; do sleep 0.1; i=$((i+1)); done";

/// Whether the kernel reports any of a job's cgroups frozen.
fn cgroup_frozen(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        let events = std::fs::read_to_string(d.join("cgroup.events")).unwrap_or_default();
        let v1 = std::fs::read_to_string(d.join("freezer.state")).unwrap_or_default();
        events.lines().any(|l| l.trim() == "frozen 1") || v1.trim() == "FROZEN"
    })
}

fn start(d: &TestDaemon, args: &[&str]) -> (ScChild, u64) {
    let mut all = vec!["exec", "--json"];
    all.extend_from_slice(args);
    let mut child = d.spawn(&all);
    let id = child.wait_event("started", T)["job"]
        .as_u64()
        .expect("job id");
    (child, id)
}

fn state(d: &TestDaemon, id: u64) -> Value {
    d.ps_job(id)
        .unwrap_or_else(|| panic!("job {id} not in sc ps"))
}

fn events_named_in(child: &ScChild, name: &str) -> Vec<Value> {
    child
        .events_so_far()
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

/// A daemon with 600M of fake capacity, a 400M watermark and the host's PSI
/// out of play, polling every 100 ms with `hold_down` before each thaw.
fn pressure_daemon(hold_down: &str) -> TestDaemon {
    TestDaemon::start_with(DaemonConfig {
        memory: "600M".into(),
        extra: [
            "default_mem = \"16M\"".to_string(),
            "pressure_mem_low = \"400M\"".to_string(),
            "pressure_psi = 100.0".to_string(),
            format!("pressure_hold_down = \"{hold_down}\""),
            "pressure_freeze_gap = \"300ms\"".to_string(),
            "pressure_poll = \"100ms\"".to_string(),
        ]
        .join("\n"),
        ..DaemonConfig::default()
    })
}

/// The hog: 300M of touched memory in its own (--no-preempt) job cgroup
/// leaves under 300M of the 600M "available", below the 400M watermark.
/// It ends once the returned file exists.
fn start_hog(d: &TestDaemon) -> (ScChild, u64, PathBuf) {
    let release = d.dir().join("release-hog");
    let hog_py = format!(
        "import os, time\nb = b'x' * (300 << 20)\nfor _ in range(600):\n    if os.path.exists({:?}):\n        break\n    time.sleep(0.05)\n",
        release.display().to_string()
    );
    let py = python3();
    let (hog, id) = start(
        d,
        &["--mem", "450M", "--no-preempt", "--", &py, "-c", &hog_py],
    );
    (hog, id, release)
}

#[test]
fn memory_pressure_freezes_the_lowest_preemptible_job_and_thaws_it_after_the_hold_down() {
    if !require_root_and_cgroups("pressure::memory_pressure_freezes_and_thaws") {
        return;
    }
    let d = pressure_daemon("2s");
    let tick = ["sh", "-c", TICK];
    let low: Vec<&str> = [&["--priority", "low", "--"][..], &tick].concat();
    let (mut a, a_id) = start(&d, &low);
    let low_np: Vec<&str> = [&["--priority", "low", "--no-preempt", "--"][..], &tick].concat();
    let (mut b, b_id) = start(&d, &low_np);
    let high: Vec<&str> = [&["--priority", "high", "--"][..], &tick].concat();
    let (mut c, c_id) = start(&d, &high);
    // No pressure yet: everything runs.
    for id in [a_id, b_id, c_id] {
        assert_eq!(state(&d, id)["state"], "Running", "job {id}");
    }

    let (hog, hog_id, release) = start_hog(&d);

    wait_until(T, "the low-priority preemptible job to be frozen", || {
        state(&d, a_id)["state"] == "Paused"
    });
    let view = state(&d, a_id);
    assert_eq!(view["paused"]["reason"], "MemoryPressure", "{view}");
    let text = view["state_text"].as_str().unwrap_or_default().to_string();
    assert!(text.starts_with("paused (memory pressure) for"), "{view}");
    wait_until(T, "job A's cgroup to be frozen by the kernel", || {
        cgroup_frozen(&d.job_cgroups(a_id))
    });
    let paused = a.wait_event("paused", T);
    assert_eq!(paused["by"], "memory pressure", "{paused}");
    let ps_text = d.sc(&["ps"]);
    ps_text.assert_success();
    assert!(
        ps_text
            .stdout_str()
            .contains("paused (memory pressure) for"),
        "{ps_text}"
    );

    // Let the freeze gap pass a few times over: nothing else may be frozen
    // (B is --no-preempt; C is high and B, lower, still runs; the hog is
    // --no-preempt).
    wait_until(T, "the hog to be over the watermark for a while", || {
        state(&d, a_id)["paused"]["paused_ms"].as_u64().unwrap_or(0) >= 1500
    });
    for id in [b_id, c_id, hog_id] {
        let v = state(&d, id);
        assert_eq!(v["state"], "Running", "job {id} was frozen: {v}");
        assert!(
            !cgroup_frozen(&d.job_cgroups(id)),
            "job {id}'s cgroup is frozen"
        );
    }
    assert!(events_named_in(&b, "paused").is_empty(), "B was paused");
    assert!(events_named_in(&c, "paused").is_empty(), "C was paused");
    assert!(
        events_named_in(&a, "resumed").is_empty(),
        "A was thawed while the pressure lasted"
    );

    // Pressure ends with the hog; A is thawed after the hold-down.
    std::fs::write(&release, "").unwrap();
    hog.wait(T).assert_success();
    wait_until(T, "job A to be thawed", || {
        state(&d, a_id)["state"] == "Running"
    });
    let resumed = a.wait_event("resumed", T);
    assert!(
        resumed["paused_ms"].as_u64().unwrap_or(0) >= 2000,
        "thawed before the 2 s hold-down: {resumed}"
    );
    assert!(state(&d, a_id)["paused"].is_null());
    wait_until(T, "job A's cgroup to be thawed", || {
        !cgroup_frozen(&d.job_cgroups(a_id))
    });
    assert!(!a.has_exited() && !b.has_exited() && !c.has_exited());

    for id in [a_id, b_id, c_id] {
        d.sc(&["cancel", &id.to_string()]).assert_success();
    }
    for child in [a, b, c] {
        child.wait(T);
    }
}

#[test]
fn a_high_priority_job_preempts_a_lower_one_for_cpus_and_it_is_thawed_when_it_ends() {
    if !require_root_and_cgroups("pressure::high_priority_preempts_for_cpus") {
        return;
    }
    // 2 cores, memory pressure off: only the CPU rule acts.
    let d = TestDaemon::start("pressure = false");
    let tick = ["sh", "-c", TICK];
    let low: Vec<&str> = [&["--priority", "low", "--cpus", "1", "--"][..], &tick].concat();
    let (mut a, a_id) = start(&d, &low);
    let low_np: Vec<&str> = [
        &["--priority", "low", "--cpus", "1", "--no-preempt", "--"][..],
        &tick,
    ]
    .concat();
    let (mut n, n_id) = start(&d, &low_np);

    let release = d.dir().join("release-high");
    let (high, high_id) = start(
        &d,
        &[
            "--priority",
            "high",
            "--cpus",
            "1",
            "--",
            "sh",
            "-c",
            &wait_for_file_script(&release),
        ],
    );
    // It started only because A was frozen for it; N (--no-preempt) was not.
    let view = state(&d, a_id);
    assert_eq!(view["state"], "Paused", "{view}");
    assert_eq!(
        view["paused"]["reason"]["Preempted"]["for_job"], high_id,
        "{view}"
    );
    let text = view["state_text"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        text.contains(&format!("preempted for job {high_id}")),
        "{view}"
    );
    let paused = a.wait_event("paused", T);
    assert_eq!(
        paused["by"],
        format!("preempted for job {high_id}"),
        "{paused}"
    );
    wait_until(T, "job A's cgroup to be frozen by the kernel", || {
        cgroup_frozen(&d.job_cgroups(a_id))
    });
    assert_eq!(state(&d, n_id)["state"], "Running");
    assert!(!cgroup_frozen(&d.job_cgroups(n_id)));
    assert!(events_named_in(&n, "paused").is_empty());
    // Its CPUs are lent, not free: a low job asking for one CPU must wait.
    let mut late = d.spawn(&["exec", "--json", "--cpus", "1", "--", "true"]);
    let w = late.wait_event("waiting", T);
    assert!(
        w["reason"].as_str().unwrap_or_default().contains("cpu"),
        "{w}"
    );

    std::fs::write(&release, "").unwrap();
    high.wait(T).assert_success();
    wait_until(T, "job A to be thawed", || {
        state(&d, a_id)["state"] == "Running"
    });
    a.wait_event("resumed", T);
    wait_until(T, "job A's cgroup to be thawed", || {
        !cgroup_frozen(&d.job_cgroups(a_id))
    });
    assert!(!a.has_exited() && !n.has_exited());

    for id in [a_id, n_id] {
        d.sc(&["cancel", &id.to_string()]).assert_success();
    }
    late.wait(T).assert_success();
    for child in [a, n] {
        child.wait(T);
    }
}

/// A job the daemon froze for memory pressure keeps that reason across a
/// daemon restart (it is in its record), so the new daemon thaws it once
/// the pressure is gone, instead of taking it for a pause by hand.
#[test]
fn a_pressure_freeze_survives_a_daemon_restart_and_is_thawed_by_the_next_daemon() {
    if !require_root_and_cgroups("pressure::freeze_survives_restart") {
        return;
    }
    let mut d = pressure_daemon("1s");
    let tick = ["sh", "-c", TICK];
    let low: Vec<&str> = [&["--priority", "low", "--"][..], &tick].concat();
    let (mut a, a_id) = start(&d, &low);
    let (hog, _, release) = start_hog(&d);
    wait_until(T, "job A frozen for memory pressure", || {
        state(&d, a_id)["state"] == "Paused"
    });
    a.wait_event("paused", T);
    d.restart();
    wait_until(
        T,
        "job A re-attached, still frozen for memory pressure",
        || {
            d.ps_job(a_id).is_some_and(|v| {
                v["state"] == "Paused" && v["paused"]["reason"] == "MemoryPressure"
            })
        },
    );
    assert!(cgroup_frozen(&d.job_cgroups(a_id)), "A is still frozen");
    std::fs::write(&release, "").unwrap();
    assert_eq!(hog.wait(T).code(), Some(0));
    wait_until(T, "job A thawed by the new daemon", || {
        state(&d, a_id)["state"] == "Running"
    });
    assert!(!cgroup_frozen(&d.job_cgroups(a_id)), "A's cgroup thawed");
    a.signal(15);
}
