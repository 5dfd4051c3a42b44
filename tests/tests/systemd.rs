//! Running under systemd: the `Type=notify` protocol of a real `sc daemon`
//! (READY=1 once its socket accepts connections, STOPPING=1 on SIGTERM)
//! received on a datagram socket of the test's own, by path and by abstract
//! address; and `configs/sc.service` checked by `.ci/verify-unit`
//! (required options, `systemd-analyze verify`).

use sc_tests::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `sc daemon` with `NOTIFY_SOCKET=notify_socket` and checks the
/// messages `rx` receives through its start and SIGTERM.
fn notifies_ready_then_stopping(rx: &UnixDatagram, notify_socket: &str, dir: &Path) {
    let socket = dir.join("sc.sock");
    let config = dir.join("sc.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n",
            socket.display(),
            dir.join("state").display()
        ),
    )
    .expect("write config");
    rx.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set timeout");
    let child = Command::new(sc_bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", notify_socket)
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sc daemon");
    let pid = child.id();
    let mut guard = Guard(Some(child));
    let mut buf = [0u8; 512];
    let n = rx
        .recv(&mut buf)
        .expect("a READY=1 datagram from the daemon");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.lines().any(|l| l.starts_with("STATUS=")), "{ready:?}");
    // Ready means ready: the socket already takes connections.
    UnixStream::connect(&socket).expect("the socket accepts connections once READY=1 is sent");
    signal(pid, libc::SIGTERM);
    let n = rx.recv(&mut buf).expect("a STOPPING=1 datagram");
    let stopping = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = guard
        .0
        .take()
        .map(|c| c.wait_with_output().expect("wait for the daemon"))
        .expect("child");
    assert!(
        status.status.success(),
        "{}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
}

/// Kills the daemon if the test fails before it exits.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn notify_socket_by_path_gets_ready_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let rx = UnixDatagram::bind(&path).expect("bind the notify socket");
    notifies_ready_then_stopping(&rx, &path.to_string_lossy(), dir.path());
}

#[test]
fn notify_socket_by_abstract_address_gets_ready_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("sc-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let rx = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
    notifies_ready_then_stopping(&rx, &format!("@{name}"), dir.path());
}

#[test]
fn unit_file_has_required_options_and_passes_systemd_analyze_verify() {
    let unit = workspace_dir().join("configs/sc.service");
    let text = std::fs::read_to_string(&unit).expect("read configs/sc.service");
    for opt in [
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "Restart=on-failure",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == opt),
            "configs/sc.service lacks {opt}"
        );
    }
    let out = run(
        {
            let mut c = Command::new(workspace_dir().join(".ci/verify-unit"));
            c.env(
                "CARGO_TARGET_DIR",
                sc_bin()
                    .parent()
                    .and_then(Path::parent)
                    .expect("target dir"),
            );
            c
        },
        Duration::from_secs(60),
    );
    out.assert_success();
    assert!(out.stdout_str().contains("verified"), "{out}");
}
