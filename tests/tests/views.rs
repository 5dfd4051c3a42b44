//! `sc ps --json` and `sc status --json` describe the daemon and its jobs.

use sc_tests::*;
use std::time::Duration;

#[test]
fn status_reports_host_and_backend() {
    let d = TestDaemon::start("");
    let st = d.status();
    assert_eq!(st["pid"], d.pid(), "{st}");
    assert_eq!(st["cores"], 2, "{st}");
    assert_eq!(st["mem_total"], 4u64 << 30, "{st}");
    assert_eq!(st["mem_reserve"], 0, "{st}");
    assert_eq!(st["jobs_queued"], 0, "{st}");
    assert_eq!(st["jobs_running"], 0, "{st}");
    assert_eq!(st["reserved"], 0, "{st}");
    assert!(
        st["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{st}"
    );
    assert!(
        st["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(st["socket"], d.socket().to_str().unwrap(), "{st}");
    let backend = &st["backend"];
    assert!(backend["kind"].is_string(), "{st}");
    assert!(backend["enforced"].is_array(), "{st}");
    assert!(backend["subtree"].is_array(), "{st}");
    // Human form works too.
    let out = d.sc(&["status"]);
    out.assert_success();
    assert!(!out.stdout_str().trim().is_empty(), "{out}");
}

#[test]
fn status_backend_is_cgroup_when_root() {
    if !require_root_and_cgroups("views::status_backend_is_cgroup_when_root") {
        return;
    }
    let d = TestDaemon::start("");
    let st = d.status();
    let b = &st["backend"];
    assert!(
        b["kind"].as_str().unwrap_or("").starts_with("cgroup"),
        "{st}"
    );
    let enforced: Vec<&str> = b["enforced"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for what in ["memory", "freeze"] {
        assert!(
            enforced.contains(&what),
            "{what} not enforced as root: {st}"
        );
    }
    let subtrees = d.subtrees();
    assert!(!subtrees.is_empty(), "{st}");
    for s in &subtrees {
        assert!(s.is_dir(), "subtree {} does not exist", s.display());
        assert!(s.starts_with("/sys/fs/cgroup"), "{}", s.display());
        // Never a hierarchy's root.
        assert!(
            s.components().count() > 5,
            "subtree at a hierarchy root: {}",
            s.display()
        );
    }
}

#[test]
fn ps_lists_running_and_queued_jobs() {
    let d = TestDaemon::start("");
    let release = d.dir().join("release");
    let block = wait_for_file_script(&release);
    let work = d.dir().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut c = d.cmd();
    c.current_dir(&work).args([
        "exec",
        "--json",
        "--mem",
        "3G",
        "--cpus",
        "1.5",
        "--pids",
        "100",
        "--priority",
        "high",
        "--name",
        "big",
        "--",
        "sh",
        "-c",
        &block,
    ]);
    let mut running = spawn(c, None);
    let started = running.wait_event("started", Duration::from_secs(10));
    let rid = started["job"].as_u64().unwrap();
    let mut queued = d.spawn(&["exec", "--json", "--mem", "2G", "--", "true"]);
    let qid = queued.wait_event("queued", Duration::from_secs(10))["job"]
        .as_u64()
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the second job to be Queued",
        || d.ps_job(qid).is_some_and(|j| j["state"] == "Queued"),
    );

    let ps = d.ps();
    assert_eq!(ps.len(), 2, "{ps:#?}");
    let r = ps
        .iter()
        .find(|j| j["id"] == rid)
        .expect("running job listed");
    assert_eq!(r["state"], "Running", "{r}");
    assert_eq!(r["name"], "big");
    assert_eq!(r["owner"], unsafe { libc::getuid() });
    assert_eq!(r["argv"][0], "sh", "{r}");
    assert_eq!(r["argv"][2], block.as_str(), "{r}");
    assert_eq!(r["cwd"], work.to_str().unwrap(), "{r}");
    assert_eq!(r["requests"]["mem"], 3u64 << 30, "{r}");
    assert_eq!(r["requests"]["cpu_milli"], 1500, "{r}");
    assert_eq!(r["requests"]["pids"], 100, "{r}");
    assert_eq!(r["reserved"], 3u64 << 30, "{r}");
    assert_eq!(r["priority"], 10, "{r}");
    assert_eq!(r["pid"], started["pid"], "{r}");
    assert!(r["waiting"].is_null(), "{r}");
    assert!(r["position"].is_null(), "{r}");
    assert!(r["running_ms"].is_u64(), "{r}");

    let q = ps
        .iter()
        .find(|j| j["id"] == qid)
        .expect("queued job listed");
    assert_eq!(q["state"], "Queued", "{q}");
    assert_eq!(q["position"], 1, "{q}");
    assert!(q["pid"].is_null(), "{q}");
    assert!(q["running_ms"].is_null(), "{q}");
    assert!(
        !q["waiting"].is_null(),
        "a queued job should say why it waits: {q}"
    );
    assert!(
        q["waiting"].to_string().to_lowercase().contains("memory"),
        "waits for memory: {q}"
    );

    let st = d.status();
    assert_eq!(st["jobs_running"], 1, "{st}");
    assert_eq!(st["jobs_queued"], 1, "{st}");
    assert_eq!(st["reserved"], 3u64 << 30, "{st}");

    // Human form lists both.
    let out = d.sc(&["ps"]);
    out.assert_success();
    assert!(out.stdout_str().contains("big"), "{out}");

    std::fs::write(&release, "").unwrap();
    running.wait(Duration::from_secs(10)).assert_success();
    queued.wait(Duration::from_secs(10)).assert_success();
    wait_until(Duration::from_secs(5), "ps to be empty", || {
        d.ps().is_empty()
    });
}
