//! The cluster (DESIGN §6): daemons on 127.0.0.1/2/3 gossiping over QUIC
//! with mutual TLS: convergence of the board, failure detection and rejoin,
//! refusal of a peer from another CA or another cluster id. The user's view
//! (`--wait-for NAME@HOST`, update order, `sc board`) is in
//! `cluster_board.rs`; the shared three-host harness in `sc_tests::cluster`.
//!
//! Timings that matter for the report (failure detection, convergence) are
//! written to fd 2 with a `CLUSTER-TIMING` prefix; run with `--nocapture` to
//! see them for passing tests.

use sc_tests::*;
use std::time::{Duration, Instant};
#[test]
fn three_hosts_converge_and_share_jobs_and_services() {
    let c = Cluster::start(3, &["labels = { gpu = \"a100\" }"]);
    c.converge();
    let (a, b, hc) = (c.d(0), c.d(1), c.d(2));

    // Each board: three hosts, exactly one of them itself, with its node info.
    for (i, d) in c.daemons.iter().enumerate() {
        let board = d.board();
        assert_eq!(board["cluster_id"], "sc", "{board}");
        let hosts = board_hosts(&board);
        assert_eq!(
            hosts.len(),
            3,
            "expected 3 hosts on {}: {board}",
            c.specs[i].name
        );
        for h in &hosts {
            let me = h["name"] == c.specs[i].name.as_str();
            assert_eq!(
                h["is_self"], me,
                "is_self wrong on {}: {h}",
                c.specs[i].name
            );
            let spec = c
                .specs
                .iter()
                .find(|s| h["name"] == s.name.as_str())
                .unwrap();
            assert_eq!(h["gossip_addr"], spec.listen.to_string(), "{h}");
            assert_eq!(h["node"]["name"], h["name"], "{h}");
            assert_eq!(h["node"]["cores"], 2, "{h}");
            assert_eq!(h["node"]["mem_total"], 4u64 << 30, "{h}");
            assert!(h["headroom"].is_object(), "no headroom: {h}");
        }
    }
    // host-a's labels reach the others.
    let a_on_b = b.board_host("host-a").unwrap();
    assert_eq!(
        a_on_b["node"]["labels"],
        serde_json::json!([["gpu", "a100"]]),
        "{a_on_b}"
    );
    assert_eq!(
        b.board_host("host-b").unwrap()["node"]["labels"],
        serde_json::json!([])
    );

    // sc status names this node and counts traffic.
    let st = a.cluster_status();
    assert_eq!(st["node_name"], "host-a", "{st}");
    assert_eq!(st["cluster_id"], "sc", "{st}");
    assert_eq!(st["listen"], c.specs[0].listen.to_string(), "{st}");
    // live_hosts counts the other hosts (not itself).
    assert_eq!(st["live_hosts"], 2, "{st}");
    assert_eq!(st["dead_hosts"], 0, "{st}");
    assert!(counter(&st, "messages_sent") > 0, "{st}");
    assert!(counter(&st, "messages_received") > 0, "{st}");
    assert_eq!(counter(&st, "dropped_unauthorised"), 0, "{st}");
    assert_eq!(counter(&st, "dropped_malformed"), 0, "{st}");

    // A job on host-c shows on host-a's board with its summary and state.
    let mut job = hc.spawn(&["exec", "--json", "--name", "marker", "--", "sleep", "5"]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let t0 = Instant::now();
    let seen = wait_for(PROPAGATE, "marker (host-c) on host-a's board", || {
        board_job(a, "host-c", "marker").filter(|j| j["state"] == "Running")
    });
    report(format!(
        "job on host-c reached host-a in {:?}",
        t0.elapsed()
    ));
    let local = hc
        .ps()
        .into_iter()
        .find(|j| j["name"] == "marker")
        .expect("marker in host-c's sc ps");
    assert_eq!(
        seen["id"], local["id"],
        "ids differ: board {seen}, ps {local}"
    );
    if let Some(id) = started["id"].as_u64() {
        assert_eq!(seen["id"], id, "{seen} vs started event {started}");
    }
    assert!(seen["started_at"].as_u64().is_some(), "{seen}");
    assert!(seen["waiting"].is_null(), "{seen}");
    assert_eq!(
        seen["owner"].as_u64(),
        Some(unsafe { libc::geteuid() } as u64),
        "{seen}"
    );
    // And on host-b too; host-a and host-b list no job of their own.
    wait_until(PROPAGATE, "marker (host-c) on host-b's board", || {
        board_job(b, "host-c", "marker").is_some()
    });
    let board = a.board();
    for h in ["host-a", "host-b"] {
        assert_eq!(
            board_host(&board, h).unwrap()["jobs"],
            serde_json::json!([]),
            "{board}"
        );
    }
    assert_eq!(
        board_host(&board, "host-c").unwrap()["headroom"]["jobs_running"],
        1,
        "{board}"
    );

    // A service added on host-b shows on host-a, ready.
    add_service(b, &["web", "--", "sleep", "1000"]);
    let t0 = Instant::now();
    let svc = wait_for(PROPAGATE, "web (host-b) ready on host-a's board", || {
        board_service(a, "host-b", "web").filter(|s| s["ready"] == true)
    });
    report(format!(
        "service on host-b reached host-a in {:?}",
        t0.elapsed()
    ));
    assert_eq!(svc["state"], "running", "{svc}");
    assert_eq!(svc["restarts"], 0, "{svc}");

    // The job ends: it leaves host-a's board (the key is deleted).
    job.wait(Duration::from_secs(20)).assert_success();
    wait_until(PROPAGATE, "marker to leave host-a's board", || {
        board_job(a, "host-c", "marker").is_none()
    });
    // Removing the service removes it from the board too.
    b.sc(&["service", "remove", "web"]).assert_success();
    wait_until(PROPAGATE, "web to leave host-a's board", || {
        board_service(a, "host-b", "web").is_none()
    });
}

#[test]
fn killed_host_is_marked_dead_then_rejoins() {
    let mut c = Cluster::start(3, &[]);
    c.converge();
    let _job = c.daemons[2].spawn(&["exec", "--json", "--name", "doomed", "--", "sleep", "120"]);
    for i in 0..2 {
        wait_until(PROPAGATE, "doomed (host-c) on host-a and host-b", || {
            board_job(c.d(i), "host-c", "doomed").is_some_and(|j| j["state"] == "Running")
        });
    }

    c.daemons[2].kill9();
    let t0 = Instant::now();
    let mut dead_at: [Option<Duration>; 2] = [None, None];
    while dead_at.iter().any(Option::is_none) {
        for (i, at) in dead_at.iter_mut().enumerate() {
            if at.is_none()
                && c.d(i)
                    .board_host("host-c")
                    .is_some_and(|h| h["live"] == false)
            {
                *at = Some(t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < DETECT_DEAD + Duration::from_secs(5),
            "host-c not seen dead within {:?} (host-a: {:?}, host-b: {:?})",
            t0.elapsed(),
            dead_at[0],
            dead_at[1]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    report(format!(
        "kill -9 of host-c detected by host-a after {:?}, by host-b after {:?}",
        dead_at[0].unwrap(),
        dead_at[1].unwrap()
    ));
    for (i, at) in dead_at.iter().enumerate() {
        assert!(
            at.unwrap() <= DETECT_DEAD,
            "{} took {:?} (> {DETECT_DEAD:?}) to see host-c dead",
            c.specs[i].name,
            at.unwrap()
        );
    }

    // Dead, with its jobs still listed under the dead host, on both boards.
    for i in 0..2 {
        let d = c.d(i);
        let board = d.board();
        let h = board_host(&board, "host-c").unwrap();
        assert_eq!(h["live"], false, "{h}");
        assert!(
            h["dead_for_ms"].as_u64().is_some(),
            "dead without dead_for_ms: {h}"
        );
        assert!(
            h["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["summary"] == "doomed"),
            "the dead host's job is gone from the board: {h}"
        );
        // The others are still live.
        assert!(all_live(&board, &["host-a", "host-b"]), "{board}");
        let st = d.cluster_status();
        assert_eq!(st["live_hosts"], 1, "{st}");
        assert_eq!(st["dead_hosts"], 1, "{st}");
        // The text view says so.
        let out = d.sc(&["board"]);
        out.assert_success();
        let text = out.stdout_str();
        let line = text
            .lines()
            .find(|l| l.starts_with("host-c "))
            .unwrap_or_else(|| panic!("no host-c line:\n{text}"));
        assert!(line.contains("dead"), "{text}");
        let job_line = text
            .lines()
            .find(|l| l.starts_with("host-c/") && l.contains("doomed"))
            .unwrap_or_else(|| panic!("no host-c/ job line:\n{text}"));
        assert!(job_line.contains("(host dead)"), "{text}");
    }
    // dead_for_ms grows.
    let d1 = c.d(0).board_host("host-c").unwrap()["dead_for_ms"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let d2 = c.d(0).board_host("host-c").unwrap()["dead_for_ms"]
        .as_u64()
        .unwrap();
    assert!(d2 > d1, "dead_for_ms did not grow: {d1} then {d2}");

    // Restarted (same config, new generation): live again everywhere, once.
    c.daemons[2].restart();
    let t0 = Instant::now();
    for i in 0..3 {
        wait_until(CONVERGE, "host-c live again on every board", || {
            all_live(&c.d(i).board(), &["host-a", "host-b", "host-c"])
        });
    }
    report(format!(
        "restarted host-c live everywhere after {:?}",
        t0.elapsed()
    ));
    for i in 0..3 {
        wait_until(
            CONVERGE,
            "host-c's node info and headroom on every board",
            || converged(&c.d(i).board(), &["host-a", "host-b", "host-c"]),
        );
    }
    report(format!(
        "restarted host-c's node info everywhere after {:?}",
        t0.elapsed()
    ));
    for i in 0..3 {
        let board = c.d(i).board();
        let named_c = board_hosts(&board)
            .iter()
            .filter(|h| h["name"] == "host-c")
            .count();
        assert_eq!(named_c, 1, "host-c listed {named_c} times: {board}");
        let h = board_host(&board, "host-c").unwrap();
        assert!(h["dead_for_ms"].is_null(), "{h}");
        assert!(h["node"].is_object(), "{h}");
        assert_eq!(c.d(i).cluster_status()["dead_hosts"], 0);
    }
}

#[test]
fn host_with_a_certificate_from_another_ca_cannot_join() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let (a, b) = (c.d(0), c.d(1));

    // Its own CA, the others as seeds.
    let rogue_ca = TestCa::new();
    let x = HostSpec::new(&rogue_ca, "host-x", "127.0.0.3");
    let xd = x.start(&[c.specs[0].listen, c.specs[1].listen]);
    add_service(&xd, &["evil", "--", "sleep", "1000"]);
    let _job = xd.spawn(&["exec", "--name", "intruder-job", "--", "sleep", "60"]);
    wait_until(
        Duration::from_secs(10),
        "intruder-job to run on host-x",
        || xd.ps().iter().any(|j| j["name"] == "intruder-job"),
    );
    // And an impostor under host-b's own name, from the same rogue CA: it
    // must not take host-b's place on host-a's board.
    let y = HostSpec::new(&rogue_ca, "host-b", "127.0.0.3");
    let yd = y.start(&[c.specs[0].listen]);
    add_service(&yd, &["evil2", "--", "sleep", "1000"]);

    // Both refuse its connections.
    for d in [a, b] {
        wait_until(
            Duration::from_secs(15),
            "dropped_unauthorised > 0 on host-a and host-b",
            || d.cluster_counter("dropped_unauthorised") > 0,
        );
    }
    // For several seconds, nothing of it shows on their boards.
    let t0 = Instant::now();
    let mut polls = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        for d in [a, b] {
            let board = d.board();
            let hosts = board_hosts(&board);
            let names: Vec<&str> = hosts.iter().filter_map(|h| h["name"].as_str()).collect();
            assert_eq!(names, ["host-a", "host-b"], "{board}");
            assert_eq!(
                board_host(&board, "host-b").unwrap()["gossip_addr"],
                c.specs[1].listen.to_string(),
                "the impostor took host-b's place: {board}"
            );
            for h in &hosts {
                assert!(
                    h["jobs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|j| j["summary"] != "intruder-job"),
                    "{board}"
                );
                assert!(
                    h["services"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|s| s["name"] != "evil" && s["name"] != "evil2"),
                    "{board}"
                );
            }
            assert!(all_live(&board, &["host-a", "host-b"]), "{board}");
            polls += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(polls >= 10);
    for d in [a, b] {
        let st = d.cluster_status();
        assert!(counter(&st, "dropped_unauthorised") > 0, "{st}");
        assert_eq!(st["live_hosts"], 1, "{st}");
        assert_eq!(st["dead_hosts"], 0, "{st}");
    }
    // The intruder sees nobody but itself.
    let board = xd.board();
    let names: Vec<String> = board_hosts(&board)
        .iter()
        .filter_map(|h| h["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names, ["host-x"], "{board}");
    assert_eq!(board_hosts(&board)[0]["is_self"], true, "{board}");
    let st = xd.cluster_status();
    assert_eq!(st["live_hosts"], 0, "{st}");
    report(format!("the intruder's own counters: {}", st["counters"]));
    let board = yd.board();
    assert_eq!(board_hosts(&board).len(), 1, "{board}");
    assert_eq!(board_hosts(&board)[0]["is_self"], true, "{board}");
    // And host-a cannot wait on its service.
    let out = a.sc(&["exec", "--wait-for", "evil@host-x", "--", "true"]);
    out.assert_code(125);
}

/// A host with a valid certificate but another `cluster_id` is dropped
/// before chitchat sees it, counted, and never shows on the board.
#[test]
fn host_of_another_cluster_id_is_kept_off_the_board() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let mut x = HostSpec::new(&c.ca, "host-x", "127.0.0.3");
    x.cluster_extra = "cluster_id = \"other\"".into();
    let xd = x.start(&[c.specs[0].listen, c.specs[1].listen]);
    for d in [c.d(0), c.d(1)] {
        wait_until(
            Duration::from_secs(15),
            "dropped_wrong_cluster_id > 0 on host-a and host-b",
            || d.cluster_counter("dropped_wrong_cluster_id") > 0,
        );
    }
    let names = |d: &TestDaemon| -> Vec<String> {
        board_hosts(&d.board())
            .iter()
            .filter_map(|h| h["name"].as_str().map(str::to_string))
            .collect()
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        for d in [c.d(0), c.d(1)] {
            assert_eq!(names(d), ["host-a", "host-b"]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(names(&xd), ["host-x"]);
}
