//! The cluster (DESIGN §6): daemons on 127.0.0.1/2/3 gossiping over QUIC
//! with mutual TLS. Convergence of the board, failure detection and rejoin,
//! refusal of a peer from another CA, `--wait-for NAME@HOST`, versioned
//! application of a peer's updates, and the `sc board` text view.
//!
//! Timings that matter for the report (failure detection, convergence) are
//! written to fd 2 with a `CLUSTER-TIMING` prefix; run with `--nocapture` to
//! see them for passing tests.

use sc_tests::*;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a fresh cluster may take to list every host live everywhere.
const CONVERGE: Duration = Duration::from_secs(20);
/// Upper bound for a board change (job, service) to reach another host.
const PROPAGATE: Duration = Duration::from_secs(10);
/// Upper bound for noticing a killed host (the design target is ~2 s).
const DETECT_DEAD: Duration = Duration::from_secs(10);

/// Straight to fd 2, so it shows even when libtest captures output.
fn report(line: String) {
    let _ = std::io::stderr().write_all(format!("CLUSTER-TIMING {line}\n").as_bytes());
}

/// A cluster of daemons from one CA; each daemon seeds with all the others.
struct Cluster {
    // Daemons first: they drop (stop) before the certificates go.
    daemons: Vec<TestDaemon>,
    specs: Vec<HostSpec>,
    _ca: TestCa,
}

impl Cluster {
    /// Hosts `host-a`, `host-b`, ... on 127.0.0.1, 127.0.0.2, ...;
    /// `host_extra[i]` goes into host i's `[host]`.
    #[track_caller]
    fn start(n: usize, host_extra: &[&str]) -> Cluster {
        let ca = TestCa::new();
        let specs: Vec<HostSpec> = (0..n)
            .map(|i| {
                let name = format!("host-{}", (b'a' + i as u8) as char);
                let mut s = HostSpec::new(&ca, &name, &format!("127.0.0.{}", i + 1));
                s.host_extra = host_extra.get(i).unwrap_or(&"").to_string();
                s
            })
            .collect();
        let daemons = specs
            .iter()
            .map(|s| s.start(&seeds_except(&specs, &s.name)))
            .collect();
        Cluster {
            daemons,
            specs,
            _ca: ca,
        }
    }

    fn names(&self) -> Vec<&str> {
        self.specs.iter().map(|s| s.name.as_str()).collect()
    }

    fn d(&self, i: usize) -> &TestDaemon {
        &self.daemons[i]
    }

    /// Wait until every daemon's board lists every host live; returns how
    /// long it took.
    #[track_caller]
    fn converge(&self) -> Duration {
        let start = Instant::now();
        let names = self.names();
        for d in &self.daemons {
            wait_until(
                CONVERGE,
                "every host live, with its node info, on every board",
                || converged(&d.board(), &names),
            );
        }
        let took = start.elapsed();
        report(format!("{} hosts converged in {took:?}", names.len()));
        took
    }
}

/// Every host of `names` is live on `board`, with its node info and headroom.
fn converged(board: &Value, names: &[&str]) -> bool {
    all_live(board, names)
        && names.iter().all(|n| {
            board_host(board, n).is_some_and(|h| h["node"].is_object() && h["headroom"].is_object())
        })
}

fn seeds_except(specs: &[HostSpec], name: &str) -> Vec<SocketAddr> {
    specs
        .iter()
        .filter(|s| s.name != name)
        .map(|s| s.listen)
        .collect()
}

/// `sc service add ARGS` on `d`, which must succeed.
#[track_caller]
fn add_service(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

/// Host `host`'s job named (summary) `summary` on `d`'s board.
fn board_job(d: &TestDaemon, host: &str, summary: &str) -> Option<Value> {
    d.board_host(host)?["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["summary"] == summary)
        .cloned()
}

/// Host `host`'s service `name` on `d`'s board.
fn board_service(d: &TestDaemon, host: &str, name: &str) -> Option<Value> {
    board_service_in(&d.board(), host, name)
}

fn board_service_in(board: &Value, host: &str, name: &str) -> Option<Value> {
    board_host(board, host)?["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

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

/// A host with a valid certificate but another `cluster_id` is dropped
/// before chitchat sees it, counted, and never shows on the board.
#[test]
fn host_of_another_cluster_id_is_kept_off_the_board() {
    let c = Cluster::start(2, &[]);
    c.converge();
    let mut x = HostSpec::new(&c._ca, "host-x", "127.0.0.3");
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
