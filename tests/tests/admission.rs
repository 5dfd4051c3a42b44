//! Memory admission (§4): on a 4G host two 3G jobs never run at the same
//! time, while two 1G jobs do. Judged from the jobs' own monotonic records.

use sc_tests::*;
use std::time::Duration;

#[test]
fn jobs_that_do_not_fit_together_are_serialised() {
    let d = TestDaemon::start("");
    let script = record_script(d.dir());
    let records = d.dir().join("records");
    let py = python3();
    let spawn_job = |label: &str| {
        d.spawn(&[
            "exec",
            "--json",
            "--mem",
            "3G",
            "--",
            &py,
            script.to_str().unwrap(),
            records.to_str().unwrap(),
            label,
            "1",
        ])
    };
    let a = spawn_job("a");
    let b = spawn_job("b");
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    a.assert_success();
    b.assert_success();
    let iv = read_intervals(&records);
    assert_eq!(iv.len(), 2, "records: {iv:?}");
    assert!(
        !iv["a"].overlaps(&iv["b"]),
        "two 3G jobs ran at the same time on a 4G host: {iv:?}"
    );
    // The one that waited said why.
    let waited: Vec<serde_json::Value> = [&a, &b]
        .iter()
        .flat_map(|o| o.events())
        .filter(|e| e["event"] == "waiting")
        .collect();
    assert!(
        waited
            .iter()
            .any(|e| e["reason"].to_string().to_lowercase().contains("memory")),
        "no waiting event naming memory\n{a}\n{b}"
    );
}

#[test]
fn jobs_that_fit_together_run_concurrently() {
    // Control for the test above: the records do show overlap when the
    // daemon allows it. Each job waits (bounded, 10 s) for the other's start
    // record, so serialised jobs could not overlap.
    let d = TestDaemon::start("");
    let script = record_script(d.dir());
    let records = d.dir().join("records");
    let py = python3();
    let spawn_job = |label: &str, other: &str| {
        d.spawn(&[
            "exec",
            "--mem",
            "1G",
            "--",
            &py,
            script.to_str().unwrap(),
            records.to_str().unwrap(),
            label,
            "0.2",
            "--await-label",
            other,
        ])
    };
    let a = spawn_job("a", "b");
    let b = spawn_job("b", "a");
    let (a, b) = (
        a.wait(Duration::from_secs(30)),
        b.wait(Duration::from_secs(30)),
    );
    a.assert_success();
    b.assert_success();
    let iv = read_intervals(&records);
    assert_eq!(iv.len(), 2, "records: {iv:?}");
    assert!(
        iv["a"].overlaps(&iv["b"]),
        "two 1G jobs on a 4G host did not run together: {iv:?}"
    );
    assert!(
        a.elapsed < Duration::from_secs(8) && b.elapsed < Duration::from_secs(8),
        "1G jobs waited for each other ({:?}, {:?})",
        a.elapsed,
        b.elapsed
    );
}
