//! Queued jobs start in rank order: priority first, then arrival (§4).

use sc_tests::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn queued_jobs_start_by_priority() {
    let d = TestDaemon::start("");
    let script = record_script(d.dir());
    let records = d.dir().join("records");
    let release = d.dir().join("release");
    let py = python3();
    let (script_s, records_s, release_s) = (
        script.to_str().unwrap(),
        records.to_str().unwrap(),
        release.to_str().unwrap(),
    );

    // The blocker fills the host (3G of 4G) until `release` exists.
    let mut blocker = d.spawn(&[
        "exec",
        "--json",
        "--mem",
        "3G",
        "--name",
        "blocker",
        "--",
        &py,
        script_s,
        records_s,
        "blocker",
        "0",
        "--until-exists",
        release_s,
    ]);
    let started = blocker.wait_event("started", Duration::from_secs(10));
    let blocker_id = started["job"].as_u64().expect("job id");

    // Three 3G jobs queue behind it, submitted low, high, normal.
    let mut queued = Vec::new();
    for prio in ["low", "high", "normal"] {
        let mut child = d.spawn(&[
            "exec",
            "--json",
            "--mem",
            "3G",
            "--priority",
            prio,
            "--name",
            prio,
            "--",
            &py,
            script_s,
            records_s,
            prio,
            "0.1",
        ]);
        let ev = child.wait_event("queued", Duration::from_secs(10));
        let id = ev["job"].as_u64().expect("job id");
        wait_until(
            Duration::from_secs(10),
            &format!("{prio} job {id} Queued in ps"),
            || d.ps_job(id).is_some_and(|j| j["state"] == "Queued"),
        );
        queued.push((prio, id, child));
    }

    let ps = d.ps();
    let job = |id: u64| -> &Value { ps.iter().find(|j| j["id"] == id).expect("listed") };
    assert_eq!(job(blocker_id)["state"], "Running", "ps: {ps:#?}");
    for (prio, id, _) in &queued {
        assert_eq!(job(*id)["state"], "Queued", "{prio}: {ps:#?}");
        assert_eq!(job(*id)["name"], *prio, "{ps:#?}");
    }
    // Queue positions follow rank: high 1, normal 2, low 3.
    let pos = |prio: &str| {
        let id = queued.iter().find(|q| q.0 == prio).unwrap().1;
        job(id)["position"].as_u64()
    };
    assert_eq!(
        (pos("high"), pos("normal"), pos("low")),
        (Some(1), Some(2), Some(3)),
        "queue positions: {ps:#?}"
    );
    // Nobody but the blocker has run yet.
    assert_eq!(read_intervals(&records).len(), 1);

    std::fs::write(&release, "").unwrap();
    blocker.wait(Duration::from_secs(20)).assert_success();
    for (prio, _, child) in queued {
        let out = child.wait(Duration::from_secs(30));
        assert_eq!(out.code(), Some(0), "{prio} job\n{out}");
    }
    let iv = read_intervals(&records);
    let mut order: Vec<(&str, u64)> = ["low", "high", "normal"]
        .iter()
        .map(|p| (*p, iv[*p].start))
        .collect();
    order.sort_by_key(|x| x.1);
    let order: Vec<&str> = order.iter().map(|x| x.0).collect();
    assert_eq!(order, ["high", "normal", "low"], "records: {iv:?}");
    // And they never overlapped (3G each on a 4G host).
    for a in ["low", "high", "normal", "blocker"] {
        for b in ["low", "high", "normal", "blocker"] {
            if a < b {
                assert!(!iv[a].overlaps(&iv[b]), "{a} and {b} overlapped: {iv:?}");
            }
        }
    }
}
