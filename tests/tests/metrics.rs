//! The `[metrics] listen` endpoint of a real daemon: scraped with a plain
//! HTTP GET over a `TcpStream`, parsed strictly as Prometheus text format,
//! its values checked against what the test made happen (admissions, a
//! pause and resume, an OOM kill, jobs by state, histogram consistency);
//! other paths, methods and oversized requests; a port already taken.

use sc_tests::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` raw and returns (status code, head, body).
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    s.write_all(request.as_bytes()).expect("send request");
    s.shutdown(std::net::Shutdown::Write)
        .expect("end the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, head.to_string(), body.to_string())
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
}

/// A GET; checks the body is as long as the head says.
fn get(port: u16, path: &str) -> (u16, String) {
    let (code, head, body) = http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"),
    );
    assert_eq!(content_length(&head), body.len(), "{head}");
    (code, body)
}

/// Samples by `name{labels}` (labels as written), after checking every line
/// of the exposition: comments are `# HELP name text` / `# TYPE name kind`,
/// every sample is `name[{k="v",...}] value` with a float value, belongs
/// to a family with one TYPE line given before it, and no sample repeats.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut f = rest.splitn(3, ' ');
            let (kw, name, arg) = (f.next(), f.next(), f.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line:?}"));
            assert!(name_ok(name), "bad metric name in {line:?}");
            match kw {
                Some("HELP") => assert!(arg.is_some_and(|a| !a.is_empty()), "{line:?}"),
                Some("TYPE") => {
                    let kind = arg.unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad TYPE in {line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "TYPE given twice for {name}"
                    );
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "empty line in the exposition");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value is not a number in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                for pair in labels.split(',') {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(name_ok(k), "bad label name in {line:?}");
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "unquoted label value in {line:?}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {line:?} has no TYPE line before it"
        );
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "sample {series} given twice"
        );
    }
    samples
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {m:#?}"))
}

#[test]
fn scraped_metrics_count_what_happened() {
    if !require_root_and_cgroups("metrics::scraped_metrics_count_what_happened") {
        return;
    }
    let port = free_port();
    let d = TestDaemon::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));

    let (code, body) = get(port, "/metrics");
    assert_eq!(code, 200, "{body}");
    let m = parse(&body);
    assert_eq!(value(&m, "sc_admissions_total"), 0.0);
    assert_eq!(value(&m, "sc_jobs{state=\"running\"}"), 0.0);

    d.sc(&["exec", "--", "true"]).assert_success();
    d.sc(&["exec", "--", "true"]).assert_success();
    let py = python3();
    let hog = "b = bytearray(256 * 1024 * 1024)";
    d.sc(&["exec", "--mem-limit", "64M", "--", &py, "-c", hog])
        .assert_code(137);

    let mut job = d.spawn(&["exec", "--json", "--", "sleep", "30"]);
    let id = job.wait_event("started", Duration::from_secs(10))["job"]
        .as_u64()
        .expect("job id")
        .to_string();
    d.sc(&["pause", &id]).assert_success();
    let m = parse(&get(port, "/metrics").1);
    assert_eq!(value(&m, "sc_jobs{state=\"paused\"}"), 1.0);
    assert_eq!(value(&m, "sc_jobs{state=\"running\"}"), 0.0);
    d.sc(&["resume", &id]).assert_success();

    let m = parse(&get(port, "/metrics").1);
    assert_eq!(value(&m, "sc_jobs{state=\"running\"}"), 1.0);
    assert_eq!(value(&m, "sc_jobs{state=\"queued\"}"), 0.0);
    assert_eq!(value(&m, "sc_admissions_total"), 4.0);
    assert_eq!(value(&m, "sc_freezes_total"), 1.0);
    assert_eq!(value(&m, "sc_thaws_total"), 1.0);
    assert_eq!(value(&m, "sc_oom_kills_total"), 1.0);
    // One queue-wait observation per admission, buckets cumulative.
    assert_eq!(value(&m, "sc_queue_wait_seconds_count"), 4.0);
    assert_eq!(value(&m, "sc_queue_wait_seconds_bucket{le=\"+Inf\"}"), 4.0);
    let buckets: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("sc_queue_wait_seconds_bucket"))
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.len() > 5, "{buckets:?}");
    assert!(value(&m, "sc_queue_wait_seconds_sum") >= 0.0);
    assert_eq!(value(&m, "sc_claim_wait_seconds_count"), 0.0);
    assert_eq!(
        value(&m, "sc_probe_failures_total{probe=\"liveness\"}"),
        0.0
    );
    // No [cluster]: no cluster families.
    assert!(!m.keys().any(|k| k.starts_with("sc_cluster_")), "{m:#?}");

    d.sc(&["cancel", &id]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(matches!(out.code(), Some(143) | Some(137)), "{out}");
}

#[test]
fn other_paths_methods_and_oversized_requests_are_refused() {
    let port = free_port();
    let _d = TestDaemon::start(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    assert_eq!(get(port, "/other").0, 404);
    assert_eq!(get(port, "/").0, 404);
    assert_eq!(get(port, "/metrics?x=1").0, 200);
    let (code, head, _) = http(
        port,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(code, 405);
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    let (code, head, body) = http(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((code, body.as_str()), (200, ""));
    assert!(content_length(&head) > 0, "{head}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(http(port, &huge).0, 431);
    // Still serving after all that.
    assert_eq!(get(port, "/metrics").0, 200);
}

#[test]
fn a_taken_metrics_port_stops_the_daemon_from_starting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sc.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.path().join("sc.sock").display(),
            dir.path().join("state").display()
        ),
    )
    .expect("write config");
    let mut cmd = std::process::Command::new(sc_bin());
    cmd.args(["daemon", "--config"]).arg(&config);
    let out = run(cmd, Duration::from_secs(20));
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr_str().contains("[metrics] listen")
            && out.stderr_str().contains(&port.to_string()),
        "{out}"
    );
    assert!(
        !dir.path().join("sc.sock").exists(),
        "no socket left behind"
    );
    // Nor the cgroup subtree it made before it gave up (named in its log).
    let err = out.stderr_str();
    let subtrees: Vec<&str> = err
        .split('"')
        .filter(|s| s.starts_with("/sys/fs/cgroup/"))
        .collect();
    for s in &subtrees {
        assert!(!std::path::Path::new(s).exists(), "{s} left behind\n{out}");
    }
    if nix::unistd::geteuid().is_root() {
        assert!(
            !subtrees.is_empty(),
            "no subtree in the daemon's log: {out}"
        );
    }
}
