//! The cluster board seen from the user's side: `--wait-for NAME@HOST`,
//! versioned application of a peer's updates (nothing goes back, nothing
//! reappears), the `sc board` text view, and a host without a cluster.
//! Membership, failure detection and refusals are in `cluster.rs`.
//!
//! Timings that matter for the report (failure detection, convergence) are
//! written to fd 2 with a `CLUSTER-TIMING` prefix; run with `--nocapture` to
//! see them for passing tests.

use sc_tests::*;
use serde_json::Value;
use std::time::{Duration, Instant};
#[test]
fn wait_for_a_service_on_another_host() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let (a, b) = (c.d(0), c.d(1));

    // web on host-b: running, but not ready until the flag file exists.
    let flag = b.dir().join("web-ready");
    let probe = format!("exec:test -f {}", flag.display());
    add_service(
        b,
        &[
            "web",
            "--readiness",
            &probe,
            "--readiness-period",
            "100ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    wait_until(
        PROPAGATE,
        "web (host-b, not ready) on host-a's board",
        || board_service(a, "host-b", "web").is_some_and(|s| s["ready"] == false),
    );

    let out_file = a.dir().join("ran");
    let script = format!("echo ran > {}", out_file.display());
    let mut job = a.spawn(&[
        "exec",
        "--json",
        "--name",
        "waiter",
        "--wait-for",
        "web@host-b",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let waiting = job.wait_event("waiting", Duration::from_secs(10));
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap_or("")
            .contains("web@host-b"),
        "waiting event should name web@host-b: {waiting}"
    );
    // Still queued a while later, and the board says what it waits for.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!job.has_exited(), "ran before web@host-b was ready");
    assert!(!out_file.exists(), "ran before web@host-b was ready");
    let mine = board_job(a, "host-a", "waiter").expect("waiter on host-a's own board");
    assert_eq!(mine["state"], "Queued", "{mine}");
    assert!(
        mine["waiting"]
            .as_str()
            .unwrap_or("")
            .contains("web@host-b"),
        "{mine}"
    );
    // host-b sees the waiting job of host-a too.
    wait_until(PROPAGATE, "waiter (host-a) on host-b's board", || {
        board_job(b, "host-a", "waiter").is_some_and(|j| j["state"] == "Queued")
    });

    // Ready on host-b: the job runs.
    std::fs::write(&flag, "").unwrap();
    let t0 = Instant::now();
    let mut on_board = None;
    let mut started = None;
    while started.is_none() {
        if on_board.is_none()
            && board_service(a, "host-b", "web").is_some_and(|s| s["ready"] == true)
        {
            on_board = Some(t0.elapsed());
        }
        if job.events_so_far().iter().any(|e| e["event"] == "started") {
            started = Some(t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the job did not start within 20 s of web@host-b becoming ready\n{}",
            job.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = job.wait(Duration::from_secs(20));
    out.assert_success();
    report(format!(
        "after the flag: web ready on host-a's board at {on_board:?}, --wait-for web@host-b job started at {:?}",
        started.unwrap()
    ));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "ran\n");
    let events = out.events();
    let pos = |name: &str| events.iter().position(|e| e["event"] == name);
    assert!(
        pos("waiting").is_some() && pos("waiting") < pos("started"),
        "waiting should come before started\n{out}"
    );
    // Ready now: another job does not wait.
    let out = a.sc(&["exec", "--json", "--wait-for", "web@host-b", "--", "true"]);
    out.assert_success();
    assert!(
        events_named(&out.events(), "waiting").is_empty(),
        "waited for a ready service\n{out}"
    );

    // Unknown service on a known host, unknown host: refused at once.
    for (arg, word) in [
        ("nope@host-b", "nope"),
        ("web@no-such-host", "no-such-host"),
    ] {
        let out = a.sc(&["exec", "--wait-for", arg, "--", "true"]);
        out.assert_code(125);
        assert!(out.stderr_str().contains(word), "{out}");
        assert!(out.elapsed < Duration::from_secs(5), "not at once\n{out}");
    }
    // NAME@<own name> is the local service.
    let out = a.sc(&["exec", "--wait-for", "web@host-a", "--", "true"]);
    out.assert_code(125);
    add_service(a, &["local", "--", "sleep", "1000"]);
    let out = a.sc(&["exec", "--wait-for", "local@host-a", "--", "true"]);
    out.assert_success();
}

/// A crash-looping service on host-b: its `restarts` only grows on host-b,
/// so the values host-a reads for it must never go down (chitchat applies a
/// peer's updates in version order), and end equal to host-b's own.
#[test]
fn a_peers_updates_are_seen_in_order() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let (a, b) = (c.d(0), c.d(1));
    add_service(
        b,
        &[
            "flappy",
            "--backoff-initial",
            "10ms",
            "--backoff-max",
            "10ms",
            "--max-failures",
            "100000",
            "--failure-window",
            "1s",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    let mut seen: Vec<u64> = Vec::new();
    let record = |board: &Value, seen: &mut Vec<u64>| {
        if let Some(s) = board_service_in(board, "host-b", "flappy") {
            let r = s["restarts"].as_u64().expect("restarts");
            if let Some(&last) = seen.last() {
                assert!(
                    r >= last,
                    "host-a saw flappy@host-b's restarts go back from {last} to {r}; \
                     history so far: {seen:?}"
                );
            }
            seen.push(r);
        }
    };
    let t0 = Instant::now();
    let mut polls = 0;
    while polls < 60 || distinct(&seen) < 10 {
        record(&a.board(), &mut seen);
        polls += 1;
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "flappy@host-b hardly moved on host-a in 60 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    // Stop it on host-b: host-a ends on host-b's own count.
    b.sc(&["service", "stop", "flappy"]).assert_success();
    let final_b = wait_for(Duration::from_secs(10), "flappy stopped on host-b", || {
        b.service("flappy")
            .filter(|s| s["state"] == "stopped")
            .map(|s| s["restarts"].as_u64().unwrap())
    });
    wait_until(PROPAGATE, "host-a to read host-b's final restarts", || {
        let board = a.board();
        record(&board, &mut seen);
        board_service_in(&board, "host-b", "flappy")
            .is_some_and(|s| s["state"] == "stopped" && s["restarts"] == final_b)
    });
    report(format!(
        "{} polls, {} distinct restarts values seen on host-a, final {final_b}",
        seen.len(),
        distinct(&seen)
    ));
    assert!(final_b >= *seen.iter().max().unwrap());
}

fn distinct(v: &[u64]) -> usize {
    let mut d = v.to_vec();
    d.dedup();
    d.len()
}

/// Short jobs one after the other on host-b: host-a must never see a job
/// come back once it saw it gone, nor an older job after a newer one.
#[test]
fn a_peers_short_jobs_never_reappear() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let (a, b) = (c.d(0), c.d(1));
    let done = std::sync::atomic::AtomicBool::new(false);
    let history = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut history: Vec<Vec<u64>> = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let board = a.board();
                let ids: Vec<u64> = board_host(&board, "host-b")
                    .and_then(|h| h["jobs"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|j| j["id"].as_u64())
                    .collect();
                history.push(ids);
                std::thread::sleep(Duration::from_millis(10));
            }
            history
        });
        for i in 0..30 {
            let name = format!("j{i}");
            // Long enough to be published and gossiped now and then.
            b.sc(&["exec", "--name", &name, "--", "sleep", "0.05"])
                .assert_success();
        }
        // Let host-a catch up with the last deletion.
        wait_until(PROPAGATE, "host-b's jobs to leave host-a's board", || {
            board_host(&a.board(), "host-b").is_some_and(|h| h["jobs"] == serde_json::json!([]))
        });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        poller.join().unwrap()
    });
    let mut gone: std::collections::BTreeSet<u64> = Default::default();
    let mut max_seen = 0u64;
    let mut all_seen: std::collections::BTreeSet<u64> = Default::default();
    let mut prev: Vec<u64> = Vec::new();
    for (k, ids) in history.iter().enumerate() {
        for id in ids {
            assert!(
                !gone.contains(id),
                "job {id} of host-b reappeared on host-a after it was gone (poll {k}): {history:?}"
            );
            assert!(
                *id >= max_seen || all_seen.contains(id),
                "host-a saw job {id} of host-b after the newer {max_seen} (poll {k}): {history:?}"
            );
        }
        for id in &prev {
            if !ids.contains(id) {
                gone.insert(*id);
            }
        }
        for id in ids {
            all_seen.insert(*id);
            max_seen = max_seen.max(*id);
        }
        prev = ids.clone();
    }
    report(format!(
        "{} polls, host-a saw {} of host-b's 30 short jobs",
        history.len(),
        all_seen.len()
    ));
    assert!(
        !all_seen.is_empty(),
        "host-a never saw any of host-b's jobs: the test checked nothing"
    );
}

#[test]
fn board_text_lists_hosts_and_jobs() {
    let c = Cluster::start(3, &[]);
    c.converge();
    let (a, hc) = (c.d(0), c.d(2));
    let _job = hc.spawn(&["exec", "--name", "marker", "--", "sleep", "30"]);
    let id = wait_for(PROPAGATE, "marker (host-c) on host-a's board", || {
        board_job(a, "host-c", "marker")
            .filter(|j| j["state"] == "Running")
            .and_then(|j| j["id"].as_u64())
    });
    add_service(c.d(1), &["web", "--", "sleep", "1000"]);
    wait_until(PROPAGATE, "web (host-b) ready on host-a's board", || {
        board_service(a, "host-b", "web").is_some_and(|s| s["ready"] == true)
    });
    let out = a.sc(&["board"]);
    out.assert_success();
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{text}");
    assert!(lines[0].contains("SERVICES"), "{text}");
    let host_line = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_string()
    };
    let la = host_line("host-a");
    assert!(
        la.starts_with("host-a *"),
        "host-a is the answering host:\n{text}"
    );
    assert!(la.contains("live"), "{text}");
    let lb = host_line("host-b");
    assert!(!lb.contains('*'), "{text}");
    assert!(lb.contains("live"), "{text}");
    assert!(lb.contains("web (running, ready)"), "{text}");
    assert!(host_line("host-c").contains("live"), "{text}");
    let job = format!("host-c/{id}");
    let jl = lines
        .iter()
        .find(|l| l.starts_with(&format!("{job} ")))
        .unwrap_or_else(|| panic!("no {job} line:\n{text}"));
    assert!(jl.contains("running"), "{text}");
    assert!(jl.contains("marker"), "{text}");
    assert!(!jl.contains("host dead"), "{text}");
    // From host-c, the * moves.
    let out = hc.sc(&["board"]);
    out.assert_success();
    let text = out.stdout_str();
    assert!(text.lines().any(|l| l.starts_with("host-c *")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{job} "))),
        "{text}"
    );

    // --watch --json: a fresh document again and again, until killed.
    let mut watch = a.spawn(&["board", "--watch", "--json"]);
    let docs = wait_for(Duration::from_secs(10), "two boards from --watch", || {
        let docs = json_lines(&watch.stdout_so_far());
        (docs.len() >= 2).then_some(docs)
    });
    assert!(!watch.has_exited(), "sc board --watch exited");
    for d in &docs {
        assert_eq!(board_hosts(d).len(), 3, "{d}");
    }
    drop(watch);
}

#[test]
fn board_without_a_cluster_is_refused() {
    let d = TestDaemon::start("");
    let out = d.sc(&["board"]);
    out.assert_code(125);
    assert!(!out.stderr_str().trim().is_empty(), "no message\n{out}");
    d.sc(&["board", "--json"]).assert_code(125);
    let st = d.status();
    assert!(
        st["cluster"].is_null(),
        "a daemon without [cluster] reports a cluster: {st}"
    );
    let out = d.sc(&["exec", "--wait-for", "web@host-b", "--", "true"]);
    out.assert_code(125);
    assert!(out.stderr_str().contains("cluster"), "{out}");
}
