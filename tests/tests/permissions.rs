//! Another uid cannot control someone else's job (§4.2: the daemon trusts
//! SO_PEERCRED, not the uid field). Root-only: it needs to switch uid.
//!
//! Two layers: a test daemon's socket is mode 0600 by default, so uid 65534
//! is stopped at connect(); with `socket_group = "nogroup"` the socket is
//! 0660 root:nogroup, uid 65534 (gid 65534) gets in, and the daemon itself
//! must refuse to let it touch root's job.

use sc_tests::*;
use std::process::Command;
use std::time::Duration;

const NOBODY: &str = "65534";

/// `sc ARGS` as uid/gid 65534, talking to `d`.
fn as_nobody(d: &TestDaemon, args: &[&str]) -> ScChild {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(sc_bin())
        .args(args)
        .env("SC_SOCKET", d.socket())
        .current_dir("/");
    spawn(c, None)
}

fn says_not_allowed(out: &RunOutput) -> bool {
    let err = out.stderr_str().to_lowercase();
    err.contains("permission") || err.contains("not allowed")
}

fn shared_socket_daemon() -> TestDaemon {
    TestDaemon::start_with(DaemonConfig {
        daemon_extra: "socket_group = \"nogroup\"".into(),
        ..DaemonConfig::default()
    })
}

/// Start `sleep 300` as root; return (its sc exec, job id, pid).
fn root_job(d: &TestDaemon) -> (ScChild, String, u32) {
    let mut job = d.spawn(&["exec", "--json", "--", "sleep", "300"]);
    let started = job.wait_event("started", Duration::from_secs(10));
    let id = started["job"].as_u64().expect("job id");
    let pid = started["pid"].as_u64().expect("pid") as u32;
    assert_eq!(d.ps_job(id).expect("listed")["owner"], 0);
    (job, id.to_string(), pid)
}

/// uid 65534 tries cancel, pause and resume on `id`: each must fail saying
/// why; the job must be untouched; then root cancels it.
fn nobody_is_refused(d: &TestDaemon, mut job: ScChild, id: &str, pid: u32) {
    for verb in ["cancel", "pause", "resume"] {
        let out = as_nobody(d, &[verb, id]).wait(CMD_TIMEOUT);
        eprintln!(
            "observed: {verb} as uid {NOBODY}: {:?}: {}",
            out.code(),
            out.stderr_str().trim()
        );
        assert_ne!(
            out.code(),
            Some(0),
            "uid {NOBODY} could {verb} root's job\n{out}"
        );
        assert!(
            says_not_allowed(&out),
            "{verb} by uid {NOBODY} refused without saying permission/not allowed\n{out}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!process_gone(pid), "job killed by another uid's cancel");
    assert!(
        !job.has_exited(),
        "sc exec ended after another uid's cancel"
    );
    assert_eq!(
        d.ps_job(id.parse().unwrap()).expect("listed")["state"],
        "Running"
    );

    // Its owner can.
    d.sc(&["cancel", id]).assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(matches!(out.code(), Some(143) | Some(137)), "{out}");
}

#[test]
fn other_uid_is_refused_at_the_private_socket() {
    if !require_root_and_cgroups("permissions::other_uid_is_refused_at_the_private_socket") {
        return;
    }
    let d = TestDaemon::start("");
    let (job, id, pid) = root_job(&d);
    nobody_is_refused(&d, job, &id, pid);
}

#[test]
fn other_uid_on_shared_socket_cannot_control_roots_job() {
    if !require_root_and_cgroups("permissions::other_uid_on_shared_socket_cannot_control_roots_job")
    {
        return;
    }
    let d = shared_socket_daemon();
    // uid 65534 can talk to this daemon at all (else this test proves nothing).
    as_nobody(&d, &["ps", "--json"])
        .wait(CMD_TIMEOUT)
        .assert_success();
    let (job, id, pid) = root_job(&d);
    nobody_is_refused(&d, job, &id, pid);
}

#[test]
fn other_uid_owns_and_controls_its_own_jobs() {
    if !require_root_and_cgroups("permissions::other_uid_owns_and_controls_its_own_jobs") {
        return;
    }
    let d = shared_socket_daemon();
    // A job submitted by uid 65534 runs as 65534 and is owned by 65534 (from
    // SO_PEERCRED), and 65534 may cancel it.
    let out = as_nobody(&d, &["exec", "--", "sh", "-c", "id -u"]).wait(CMD_TIMEOUT);
    out.assert_success();
    assert_eq!(out.stdout_str().trim(), NOBODY, "{out}");

    let mut job = as_nobody(&d, &["exec", "--json", "--", "sleep", "300"]);
    let id = job.wait_event("started", Duration::from_secs(10))["job"]
        .as_u64()
        .unwrap();
    assert_eq!(d.ps_job(id).expect("listed")["owner"], 65534);
    as_nobody(&d, &["cancel", &id.to_string()])
        .wait(CMD_TIMEOUT)
        .assert_success();
    let out = job.wait(Duration::from_secs(15));
    assert!(matches!(out.code(), Some(143) | Some(137)), "{out}");
}
