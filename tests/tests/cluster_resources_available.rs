//! Cluster resources in `available` mode, configuration conflicts, and
//! units released whatever way a job ends. Three real daemons on
//! 127.0.0.1-3; judged from the `sc-stamp` jobs' own records.

use sc_tests::*;
use std::time::{Duration, Instant};

const STAMP: &str = env!("CARGO_BIN_EXE_sc-stamp");

const AVAILABLE: &str = r#"available_down = "1s"

[resources]
gpu = 1
"#;

/// Kill -9 the holder's daemon: the holder's `sc exec` stops its job when
/// its lease (the available-mode down time) runs out, and the host's claim
/// drops after the failure detector plus that margin.
#[test]
fn available_holder_daemon_killed_regranted_within_seconds() {
    let mut c = Cluster::start_with(3, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (holder, next) = holder_and_waiter(STAMP, c.d(0), c.d(1), "gpu", &log);
    let killed = Instant::now();
    c.daemons[0].kill9();
    let out = next.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let regrant = killed.elapsed();
    let out = holder.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(125), "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("lost the lease"),
        "{}",
        out.stderr_str()
    );
    let holds = read_holds(&log);
    assert_eq!(max_concurrent(&holds, "gpu"), 1, "{holds:?}");
    report(format!(
        "available re-grant after kill -9 of the holder's daemon: {regrant:?}"
    ));
    assert!(regrant < Duration::from_secs(10), "{regrant:?}");
}

/// A partition: each side grants up to capacity; on heal, the holder with
/// the later claim is preempted, and the conflict is counted and shown.
#[test]
fn available_partition_grants_both_sides_then_heal_preempts_the_later() {
    let c = Cluster::start_with(3, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    c.partition(2, &[0, 1]);
    // Each side sees the other dead, then down after available_down.
    wait_until(
        Duration::from_secs(20),
        "host-c dead on host-a's board",
        || board_host(&c.d(0).board(), "host-c").is_some_and(|h| h["live"] == false),
    );
    wait_until(
        Duration::from_secs(20),
        "host-a dead on host-c's board",
        || board_host(&c.d(2).board(), "host-a").is_some_and(|h| h["live"] == false),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut first = stamp_job(STAMP, c.d(0), "gpu", &log, "majority", 60_000);
    first.wait_event("started", Duration::from_secs(20));
    let mut second = stamp_job(STAMP, c.d(2), "gpu", &log, "minority", 60_000);
    second.wait_event("started", Duration::from_secs(20));
    c.partition(2, &[]);
    // The later claim (by stamp) is preempted: normally the minority's,
    // which claimed later, but the stamps decide, not the wall clock.
    let start = Instant::now();
    while !first.has_exited() && !second.has_exited() && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut loser, mut winner) = if second.has_exited() {
        (second, first)
    } else {
        (first, second)
    };
    assert!(
        loser.has_exited(),
        "one of the two holders is preempted after the heal"
    );
    let out = loser.wait(Duration::from_secs(5));
    let stderr = out.stderr_str();
    assert!(
        stderr.contains("preempted"),
        "the later claim is preempted: {stderr}"
    );
    assert!(!winner.has_exited(), "the earlier claim keeps running");
    let status = c.d(2).status();
    let preempted = counter(&status["cluster"], "dlock_preemptions")
        + counter(&c.d(0).status()["cluster"], "dlock_preemptions");
    assert!(preempted >= 1, "the conflict is counted: {status}");
    winner.signal(9);
}

/// Hosts that disagree on a resource refuse it, naming the problem, and
/// `sc status` shows the conflict.
#[test]
fn conflicting_resource_config_is_refused_and_shown() {
    let c = Cluster::start_with(2, &[], AVAILABLE);
    let other = HostSpec {
        cluster_extra: "available_down = \"1s\"\n\n[resources]\ngpu = 2\n".into(),
        ..HostSpec::new(&c.ca, "host-z", "127.0.0.9")
    };
    let seeds: Vec<_> = c.specs.iter().map(|s| s.listen).collect();
    let z = other.start(&seeds);
    wait_until(CONVERGE, "host-z live on host-a's board", || {
        board_host(&c.d(0).board(), "host-z").is_some_and(|h| h["live"] == true)
    });
    wait_until(PROPAGATE, "the conflict shown by sc status", || {
        c.d(0).status()["cluster"]["resources"]
            .as_array()
            .is_some_and(|rs| {
                rs.iter()
                    .any(|r| r["name"] == "gpu" && r["conflict"].is_string())
            })
    });
    let out = c.d(0).sc(&["exec", "--needs", "gpu", "--", "true"]);
    assert_eq!(out.code(), Some(125));
    assert!(
        out.stderr_str().contains("host-z has gpu = 2/available"),
        "{}",
        out.stderr_str()
    );
    wait_until(PROPAGATE, "the conflict in host-z's sc status text", || {
        z.sc(&["status"]).stdout_str().contains("CONFLICT")
    });
}

/// `sc exec` killed with SIGKILL: the daemon kills its job and releases the
/// units at once; the next job (another host) starts well before any lease
/// or failure detector could have run out.
#[test]
fn units_released_when_sc_exec_is_killed() {
    let c = Cluster::start_with(3, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (holder, next) = holder_and_waiter(STAMP, c.d(0), c.d(1), "gpu", &log);
    holder.signal(9);
    let out = next.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let holds = read_holds(&log);
    assert_eq!(holds.len(), 2);
    let gap_ms = holds[1].start_ns.saturating_sub(holds[0].last_ns) / 1_000_000;
    assert!(
        holds[0].last_ns < holds[1].start_ns,
        "the killed job ran on after the next one started: {holds:?}\n--- host-a log:\n{}\n--- host-b log:\n{}",
        c.d(0).log(),
        c.d(1).log()
    );
    report(format!("hand-over after sc exec SIGKILL: {gap_ms} ms"));
}

/// `--needs` combines with `--mem`: a job claims only once it has local
/// headroom, so it never holds a resource it cannot use.
#[test]
fn needs_waits_for_local_headroom_before_claiming() {
    let c = Cluster::start_with(3, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (blocker, release) = c.d(0).hold_memory("3G");
    let mut big = c.d(0).spawn(&[
        "exec",
        "--json",
        "--mem",
        "2G",
        "--needs",
        "gpu",
        "--",
        STAMP,
        &log.display().to_string(),
        "big",
        "10",
    ]);
    let w = big.wait_event("waiting", Duration::from_secs(20));
    assert!(w["reason"].as_str().unwrap_or("").contains("memory"), "{w}");
    // Meanwhile another host takes the resource freely: host-a holds no claim.
    let other = stamp_job(STAMP, c.d(1), "gpu", &log, "other", 10);
    assert_eq!(other.wait(Duration::from_secs(20)).code(), Some(0));
    std::fs::write(&release, "").expect("release the blocker");
    assert_eq!(blocker.wait(Duration::from_secs(20)).code(), Some(0));
    assert_eq!(big.wait(Duration::from_secs(20)).code(), Some(0));
    let holds = read_holds(&log);
    assert_eq!(holds.len(), 2, "{holds:?}");
}

/// A `--needs` job that first waited for local headroom (its group was
/// prepared meanwhile, empty) must still run inside that group: the
/// daemon's kill on a client's death, the stopper's freeze and the
/// preemption all act on the group, so a job outside it outlives its units.
#[test]
fn needs_job_runs_in_its_own_group_after_waiting_for_headroom() {
    let c = Cluster::start_with(1, &[], AVAILABLE);
    c.converge();
    let (blocker, release) = c.d(0).hold_memory("3G");
    let check = c.d(0).spawn(&[
        "exec",
        "--json",
        "--mem",
        "2G",
        "--needs",
        "gpu",
        "--",
        "sh",
        "-c",
        "echo \"job=$SC_JOB_ID\"; cat /proc/self/cgroup",
    ]);
    let mut check = check;
    let w = check.wait_event("waiting", Duration::from_secs(20));
    assert!(w["reason"].as_str().unwrap_or("").contains("memory"), "{w}");
    // Long enough for the group to be prepared while the job waits.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&release, "").expect("release the blocker");
    assert_eq!(blocker.wait(Duration::from_secs(20)).code(), Some(0));
    let out = check.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let text = out.stdout_str();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("job="))
        .expect("the job printed its id")
        .to_string();
    let suffix = format!("/jobs/{id}");
    // Every hierarchy sc manages the job in: memory (v1) and the unified
    // tree on a hybrid host, the one v2 tree elsewhere.
    let managed: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("0::")
                || l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .collect();
    assert!(!managed.is_empty(), "{text}");
    for line in managed {
        assert!(
            line.ends_with(&suffix),
            "the job runs outside its group {suffix}: {line}\n{text}\n--- log:\n{}",
            c.d(0).log()
        );
    }
}

/// A holder whose daemon restarts is stopped (its claim died with the old
/// generation), and its `sc exec` says why instead of only reporting a
/// SIGKILL: the reason comes with the re-attach (chaos seed 2026 found a
/// silent exit 137).
#[test]
fn holder_stopped_by_a_daemon_restart_is_told_why() {
    let mut c = Cluster::start_with(1, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let mut holder = stamp_job(STAMP, c.d(0), "gpu", &log, "holder", 60_000);
    holder.wait_event("started", Duration::from_secs(20));
    c.daemons[0].restart();
    let out = holder.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(137), "{}", out.stderr_str());
    assert!(
        out.stderr_str()
            .contains("restarted while the job held cluster resources"),
        "{}",
        out.stderr_str()
    );
    let events = json_lines(&out.stderr_str());
    assert_eq!(events_named(&events, "cancelled").len(), 1, "{events:?}");
}

/// The hand-over metric: host-a releases `gpu` while host-b waits; host-b's
/// grant ends a hand-over, counted in its `sc_claim_handover_seconds`, and
/// its `sc_claim_wait_seconds` counts its one grant. host-a waited for
/// nobody: no hand-over there.
#[test]
fn handover_and_claim_wait_are_in_the_metrics() {
    let (pa, pb) = (free_tcp_port(), free_tcp_port());
    let extra_a = format!("\n[metrics]\nlisten = \"127.0.0.1:{pa}\"");
    let extra_b = format!("\n[metrics]\nlisten = \"127.0.0.1:{pb}\"");
    let c = Cluster::start_with(2, &[&extra_a, &extra_b], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let release = c.d(0).dir().join("release");
    let mut holder = c.d(0).spawn(&[
        "exec",
        "--json",
        "--needs",
        "gpu",
        "--",
        "sh",
        "-c",
        &wait_for_file_script(&release),
    ]);
    holder.wait_event("started", Duration::from_secs(20));
    let mut next = stamp_job(STAMP, c.d(1), "gpu", &log, "next", 10);
    next.wait_event("waiting", Duration::from_secs(20));
    std::fs::write(&release, "").expect("release the holder");
    assert_eq!(holder.wait(Duration::from_secs(20)).code(), Some(0));
    assert_eq!(next.wait(Duration::from_secs(20)).code(), Some(0));
    let b = scrape_metrics(pb);
    assert_eq!(metric(&b, "sc_claim_wait_seconds_count"), Some(1.0), "{b}");
    assert_eq!(
        metric(&b, "sc_claim_handover_seconds_count"),
        Some(1.0),
        "{b}"
    );
    let gap = metric(&b, "sc_claim_handover_seconds_sum").expect("a sum");
    // One machine, one clock: the gap is real, and far below a second.
    assert!(gap < 1.0, "{b}");
    let a = scrape_metrics(pa);
    assert_eq!(metric(&a, "sc_claim_wait_seconds_count"), Some(1.0), "{a}");
    assert_eq!(
        metric(&a, "sc_claim_handover_seconds_count"),
        Some(0.0),
        "host-a waited for nobody: {a}"
    );
    report(format!(
        "hand-over measured by the granting host: {:.0} ms",
        gap * 1000.0
    ));
}

/// The holder's daemon is killed and restarted at once while jobs wait on
/// every host, its own included: every waiter runs within seconds of the
/// restart (measured: 1.1–1.2 s, the restarted host's startup grace plus
/// a hand-over each). Written after chaos CI seed 1795311559, where jobs
/// on a restarted holder's host once waited 8.5 s with the resource free;
/// this scenario alone (also with 2, 3 and 6 s down) did not reproduce it.
#[test]
fn waiters_run_promptly_after_the_holders_daemon_restarts() {
    let mut c = Cluster::start_with(3, &[], AVAILABLE);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let mut holder = stamp_job(STAMP, c.d(1), "gpu", &log, "holder", 60_000);
    holder.wait_event("started", Duration::from_secs(20));
    let mut waiters = Vec::new();
    for (i, label) in [(1, "b1"), (0, "a1"), (1, "b2"), (2, "c1")] {
        let mut w = stamp_job(STAMP, c.d(i), "gpu", &log, label, 10);
        w.wait_event("waiting", Duration::from_secs(20));
        waiters.push((label, w));
    }
    c.daemons[1].kill9();
    std::thread::sleep(Duration::from_millis(700));
    let restarted = Instant::now();
    c.daemons[1].restart();
    let mut took = Vec::new();
    for (label, w) in waiters {
        let out = w.wait(Duration::from_secs(60));
        assert_eq!(out.code(), Some(0), "{label}: {}", out.stderr_str());
        took.push((label, restarted.elapsed()));
    }
    let _ = holder.wait(Duration::from_secs(30));
    let holds = read_holds(&log);
    assert_eq!(max_concurrent(&holds, "gpu"), 1, "{holds:?}");
    report(format!("waiters done after the restart: {took:?}"));
    let last = took.iter().map(|(_, t)| *t).max().unwrap_or_default();
    assert!(
        last < Duration::from_secs(8),
        "{took:?}\n--- host-b log:\n{}",
        c.d(1).log()
    );
}
