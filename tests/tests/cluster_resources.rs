//! Cluster resources end to end (`sc exec --needs`): three real daemons on
//! 127.0.0.1-3 decide peer to peer who runs next. Every job is the compiled
//! `sc-stamp`, which records start/tick/end with CLOCK_MONOTONIC and the
//! fencing tokens sc gave it; the tests judge from those records only.

use sc_tests::*;
use std::time::{Duration, Instant};

const STAMP: &str = env!("CARGO_BIN_EXE_sc-stamp");

/// Quorum mode over the three hosts, lease 3 s (T_down 5 s).
const QUORUM: &str = r#"members = ["host-a", "host-b", "host-c"]
lease = "3s"

[resources]
e2e = { capacity = 1, mode = "quorum" }
gpu = { capacity = 2, mode = "quorum" }
"#;

#[test]
fn thirty_jobs_from_three_hosts_never_exceed_capacity() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let mut jobs = Vec::new();
    for i in 0..30 {
        let needs = ["e2e", "gpu", "e2e,gpu"][i % 3];
        jobs.push(stamp_job(
            STAMP,
            c.d(i % 3),
            needs,
            &log,
            &format!("job{i}"),
            40,
        ));
    }
    for j in jobs {
        let out = j.wait(Duration::from_secs(180));
        assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    }
    let holds = read_holds(&log);
    assert_eq!(holds.len(), 30, "every job ran: {holds:?}");
    assert!(holds.iter().all(|h| h.ended), "every job ended normally");
    assert_eq!(max_concurrent(&holds, "e2e"), 1, "capacity 1");
    let gpu = max_concurrent(&holds, "gpu");
    assert!(gpu <= 2, "capacity 2, saw {gpu} at once");
    let toks = tokens_of(&holds, "e2e");
    assert_eq!(toks.len(), 20);
    assert!(
        toks.windows(2).all(|w| w[0] < w[1]),
        "e2e fencing tokens increase with each grant: {toks:?}"
    );
}

#[test]
fn waiting_job_names_the_holder_and_board_shows_the_queue() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let mut holder = stamp_job(STAMP, c.d(1), "e2e", &log, "holder", 4000);
    holder.wait_event("started", Duration::from_secs(20));
    let mut waiter = stamp_job(STAMP, c.d(0), "e2e", &log, "waiter", 10);
    waiter.wait_event("waiting", Duration::from_secs(20));
    let names_holder = |w: &ScChild| {
        w.events_so_far().iter().any(|e| {
            e["event"] == "waiting"
                && e["reason"].as_str().is_some_and(|r| {
                    r.contains("e2e held by host-b job 1 (") && r.contains("sc-stamp")
                })
        })
    };
    let start = Instant::now();
    while !names_holder(&waiter) && start.elapsed() < PROPAGATE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        names_holder(&waiter),
        "a waiting event naming the holder: {:?}",
        waiter.events_so_far()
    );
    let ps = c.d(0).ps();
    assert!(
        ps.iter()
            .any(|j| j["waiting"].to_string().contains("host-b")),
        "sc ps carries the same: {ps:?}"
    );
    wait_until(PROPAGATE, "e2e holder and queue on sc board", || {
        let b = c.d(2).board();
        let r = b["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == "e2e").cloned());
        r.is_some_and(|r| r["holders"][0]["host"] == "host-b" && r["queue"][0]["host"] == "host-a")
    });
    let text = c.d(2).sc(&["board"]);
    assert!(text.stdout_str().contains("e2e"), "{}", text.stdout_str());
    assert_eq!(holder.wait(Duration::from_secs(30)).code(), Some(0));
    assert_eq!(waiter.wait(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn unknown_resource_and_too_many_units_are_refused_at_once() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let out = c.d(0).sc(&["exec", "--needs", "nope", "--", "true"]);
    assert_eq!(out.code(), Some(125));
    assert!(out.stderr_str().contains("nope"), "{}", out.stderr_str());
    let out = c.d(0).sc(&["exec", "--needs", "gpu:3", "--", "true"]);
    assert_eq!(out.code(), Some(125));
    assert!(
        out.stderr_str().contains("capacity 2"),
        "{}",
        out.stderr_str()
    );
}

/// Kill -9 the holder's daemon: its `sc exec` stops the job when the lease
/// runs out, and only after that does another host's job start.
#[test]
fn holder_daemon_killed_job_stopped_then_another_host_runs() {
    let mut c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (holder, next) = holder_and_waiter(STAMP, c.d(0), c.d(1), "e2e", &log);
    let killed = Instant::now();
    c.daemons[0].kill9();
    let out = holder.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(125), "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("lost the lease"),
        "{}",
        out.stderr_str()
    );
    let out = next.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{}", out.stderr_str());
    let regrant = killed.elapsed();
    let holds = read_holds(&log);
    let (h, n) = (&holds[0], &holds[1]);
    assert_eq!((h.label.as_str(), n.label.as_str()), ("holder", "next"));
    assert!(!h.ended, "the holder was stopped, not finished");
    assert!(
        h.last_ns < n.start_ns,
        "the stopped holder's last tick comes before the next start"
    );
    assert_eq!(max_concurrent(&holds, "e2e"), 1);
    report(format!(
        "quorum re-grant after kill -9 of the holder's daemon: {regrant:?}"
    ));
    assert!(regrant < Duration::from_secs(15), "{regrant:?}");
}

/// SIGSTOP the holder's daemon for longer than the lease: the job is
/// stopped before anyone else is granted.
#[test]
fn holder_daemon_stopped_longer_than_the_lease() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (holder, next) = holder_and_waiter(STAMP, c.d(0), c.d(2), "e2e", &log);
    let pid = nix::unistd::Pid::from_raw(c.d(0).pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let out = holder.wait(Duration::from_secs(20));
    let out_next = next.wait(Duration::from_secs(30));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(out.code(), Some(125), "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("lost the lease"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(out_next.code(), Some(0), "{}", out_next.stderr_str());
    let holds = read_holds(&log);
    assert_eq!(holds.len(), 2);
    assert!(holds[0].last_ns < holds[1].start_ns, "{holds:?}");
}

/// A host cut off from the other two (a minority) starts nothing, while
/// the majority goes on.
#[test]
fn cut_off_minority_host_starts_nothing() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    // host-c drops everything from and to host-a and host-b.
    c.partition(2, &[0, 1]);
    std::thread::sleep(Duration::from_secs(1));
    let mut minority = stamp_job(STAMP, c.d(2), "e2e", &log, "minority", 10);
    let majority = stamp_job(STAMP, c.d(0), "e2e", &log, "majority", 10);
    assert_eq!(majority.wait(Duration::from_secs(30)).code(), Some(0));
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        !minority.has_exited(),
        "the minority host must not start its job"
    );
    let holds = read_holds(&log);
    assert!(holds.iter().all(|h| h.label != "minority"), "{holds:?}");
    let waiting: Vec<_> = minority
        .events_so_far()
        .into_iter()
        .filter(|e| e["event"] == "waiting")
        .collect();
    assert!(!waiting.is_empty());
    minority.signal(9);
}

/// Both supervisors of a holder gone at once: its daemon SIGSTOPped and
/// its `sc exec` SIGKILLed (the 5-host chaos run with seed 2026). The stop
/// guard `sc exec` left beside the job stops it, so the job never runs on
/// beside the next holder, which the others grant after T_down.
#[test]
fn holder_stopped_when_its_daemon_is_stopped_and_its_sc_exec_killed() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let (holder, next) = holder_and_waiter(STAMP, c.d(0), c.d(2), "e2e", &log);
    guard_stops_the_holder(&c, holder, next, &log);
}

/// The same with the guard started as `sc stop-guard` (the fallback `sc
/// exec` takes when it cannot fork one safely), forced by `SC_STOP_GUARD`.
#[test]
fn holder_stopped_by_an_exec_started_guard_when_both_supervisors_go() {
    let c = Cluster::start_with(3, &[], QUORUM);
    c.converge();
    let log = c.d(0).dir().join("holds.log");
    let mut cmd = c.d(0).cmd();
    cmd.env("SC_STOP_GUARD", "exec").args([
        "exec",
        "--json",
        "--needs",
        "e2e",
        "--",
        STAMP,
        &log.display().to_string(),
        "holder",
        "60000",
    ]);
    let mut holder = spawn(cmd, None);
    holder.wait_event("started", Duration::from_secs(20));
    // The guard is an `sc stop-guard` process started by this `sc exec`,
    // not a fork of it.
    let parent = holder.pid().to_string();
    let guards: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .to_string();
            let cmdline = std::fs::read(dir.join("cmdline")).ok()?;
            (ppid == parent).then(|| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        })
        .filter(|c| c.contains(" stop-guard"))
        .collect();
    assert_eq!(
        guards.len(),
        1,
        "no `sc stop-guard` child of sc exec {parent}"
    );
    let mut next = stamp_job(STAMP, c.d(2), "e2e", &log, "next", 10);
    next.wait_event("waiting", Duration::from_secs(20));
    guard_stops_the_holder(&c, holder, next, &log);
}

/// Stop host-a's daemon, kill the holder's `sc exec`: the guard stops the
/// job, and the next holder starts only after it.
fn guard_stops_the_holder(c: &Cluster, holder: ScChild, next: ScChild, log: &std::path::Path) {
    let pid = nix::unistd::Pid::from_raw(c.d(0).pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    holder.signal(9);
    let out_holder = holder.wait(Duration::from_secs(10));
    let out_next = next.wait(Duration::from_secs(30));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(out_next.code(), Some(0), "{}", out_next.stderr_str());
    let guard = json_lines(&out_holder.stderr_str());
    assert_eq!(
        events_named(&guard, "guard_stopped").len(),
        1,
        "the guard says it stopped the job: {}",
        out_holder.stderr_str()
    );
    let holds = read_holds(log);
    assert_eq!(holds.len(), 2, "{holds:?}");
    assert!(
        holds[0].last_ns < holds[1].start_ns,
        "the holder ran on beside the next one: {holds:?}"
    );
}
