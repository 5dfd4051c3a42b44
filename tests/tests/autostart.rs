//! With no daemon and no `SC_SOCKET`, `sc exec` starts a private daemon
//! (§4.1): one command works on a fresh machine.

use sc_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Kills the auto-started daemon at the end, whatever happens, and removes
/// the empty cgroup subtree it leaves (a stopped daemon keeps it for the next
/// one to adopt).
struct KillOnDrop(Option<u32>, Vec<std::path::PathBuf>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal(pid, libc::SIGTERM);
            let start = std::time::Instant::now();
            while !process_gone(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            signal(pid, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in &self.1 {
            if s.starts_with("/sys/fs/cgroup") && s.components().count() > 5 {
                remove_cgroup_tree(s);
            }
        }
    }
}

fn sc_cmd(run: &Path, state: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(sc_bin());
    c.env_remove("SC_SOCKET")
        .env("XDG_RUNTIME_DIR", run)
        .env("XDG_STATE_HOME", state)
        .current_dir(cwd);
    c
}

#[test]
fn exec_starts_a_private_daemon() {
    assert!(
        !Path::new("/run/sc/sc.sock").exists(),
        "a system daemon socket exists at /run/sc/sc.sock; this test needs a machine without one"
    );
    let tmp = tempfile::Builder::new()
        .prefix("sc-auto-")
        .tempdir()
        .unwrap();
    let run_dir = tmp.path().join("run");
    let state = tmp.path().join("state");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::create_dir(&state).unwrap();
    let socket = run_dir.join("sc").join("sc.sock");
    let mut guard = KillOnDrop(None, Vec::new());

    let mut c = sc_cmd(&run_dir, &state, tmp.path());
    c.args(["exec", "--", "sh", "-c", "echo hi; exit 4"]);
    let out = run(c, Duration::from_secs(30));
    // Find the daemon for cleanup before asserting anything else.
    let mut st = sc_cmd(&run_dir, &state, tmp.path());
    st.args(["status", "--json"]);
    let status = run(st, Duration::from_secs(10));
    if status.code() == Some(0) {
        let v = status.json();
        guard.0 = v["pid"].as_u64().map(|p| p as u32);
        guard.1 = v["backend"]["subtree"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(std::path::PathBuf::from))
            .collect();
    }

    out.assert_code(4);
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
    assert!(
        out.stdout_eof,
        "the auto-started daemon holds the caller's stdout open (a pipeline would hang)\n{out}"
    );
    assert!(socket.exists(), "no socket at {}", socket.display());
    status.assert_success();
    let st = status.json();
    let pid = guard.0.expect("status has the daemon pid");
    assert!(!process_gone(pid), "daemon pid {pid} is not alive");
    assert_eq!(st["socket"], socket.to_str().unwrap(), "{st}");
    assert_eq!(
        Path::new(st["state_dir"].as_str().unwrap_or("")),
        state.join("sc"),
        "private daemon state not in $XDG_STATE_HOME/sc: {st}"
    );
    assert!(state.join("sc").is_dir());

    // The next command uses the same daemon.
    let mut c = sc_cmd(&run_dir, &state, tmp.path());
    c.args(["exec", "--", "true"]);
    run(c, Duration::from_secs(20)).assert_success();
    let mut st2 = sc_cmd(&run_dir, &state, tmp.path());
    st2.args(["status", "--json"]);
    let st2 = run(st2, Duration::from_secs(10));
    st2.assert_success();
    assert_eq!(st2.json()["pid"], pid, "a second daemon was started");
}
