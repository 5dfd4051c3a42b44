//! sc-tests: the end-to-end harness for `sc`.
//!
//! Every test starts its own daemon ([`TestDaemon`]) in its own temporary
//! directory, with a fake host capacity (4 GiB, 2 cores, no reserve) so that
//! admission is deterministic whatever machine runs the tests, and drives the
//! real `sc` binary as a user would. Tests run in parallel threads; nothing is
//! shared between them except the machine.
//!
//! Every wait is bounded: processes are run with [`run`] / [`ScChild`] which
//! kill and panic on timeout, and conditions are polled with [`wait_until`].
//!
//! The binary under test is `$SC_BIN` if set, else `<target>/debug/sc` where
//! `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`; `scd` (the
//! daemon and every verb but `exec`, to which `sc` hands them) must be next to
//! it. They are not built by the tests: run `cargo build -p sidecar` first
//! (the workspace README's test command does `cargo build -p sidecar && cargo
//! test --workspace`).
//!
//! Root-only tests (cgroups) call [`require_root_and_cgroups`] first: it fails
//! the test loudly when the machine cannot run it, unless
//! `SC_ALLOW_NO_CGROUP=1`, in which case it prints `SKIPPED
//! (SC_ALLOW_NO_CGROUP=1): <test>` and the test returns early. When
//! `SC_ROOT_TESTS_RAN` names a file, every root-only test that runs appends its
//! name to it, so CI can check that they did run.

mod cluster;
mod daemon;
mod history;
mod process;
mod raw;
mod records;
mod services;
mod stamps;

pub use cluster::{
    CONVERGE, Cluster, DETECT_DEAD, HostSpec, PROPAGATE, TestCa, add_service, all_live, board_host,
    board_hosts, board_job, board_service, board_service_in, converged, counter, free_udp_addr,
    report, seeds_except,
};
pub use daemon::{DaemonConfig, TestDaemon, wait_for_file_script};
pub use history::history_of;
pub use process::{RunOutput, ScChild, run, spawn};
pub use raw::{RawClient, RawReply};
pub use records::{Interval, read_intervals, record_script};
pub use services::{free_port, http_server_script};
pub use stamps::{Hold, holder_and_waiter, max_concurrent, read_holds, stamp_job, tokens_of};

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default bound for one `sc` invocation that is expected to finish promptly.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The `sc` binary under test (with `scd` next to it).
pub fn sc_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SC_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SC_BIN={} does not name a file; build sc or fix SC_BIN",
            p.display()
        );
        assert_scd_beside(&p);
        return p;
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                workspace_dir().join(t)
            }
        }
        None => workspace_dir().join("target"),
    };
    let bin = target.join("debug").join("sc");
    warn_if_stale(&bin);
    assert!(
        bin.is_file(),
        "the sc binary is missing at {}: build it first with \
         `cargo build -p sidecar` (or point SC_BIN at a built sc)",
        bin.display()
    );
    assert_scd_beside(&bin);
    bin
}

/// `sc` runs every verb but `exec` by exec'ing `scd` from its own directory.
fn assert_scd_beside(sc: &Path) {
    let scd = sc.with_file_name("scd");
    assert!(
        scd.is_file(),
        "{} is missing (sc hands it every verb but exec): build both with `cargo build -p sidecar`",
        scd.display()
    );
}

/// Say so (once, on fd 2) when the binary is older than the sources it is
/// built from: the tests would test an old `sc`.
fn warn_if_stale(bin: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The older of sc and the scd beside it.
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let Some(built) = mtime(bin).min(mtime(&bin.with_file_name("scd"))) else {
            return;
        };
        fn newest(dir: &Path) -> Option<std::time::SystemTime> {
            let mut best = None;
            for e in std::fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                let t = if p.is_dir() {
                    newest(&p)
                } else {
                    e.metadata().and_then(|m| m.modified()).ok()
                };
                best = best.max(t);
            }
            best
        }
        let ws = workspace_dir();
        let src = ["sidecar/src", "supervisor/src", "protocol/src"]
            .iter()
            .filter_map(|d| newest(&ws.join(d)))
            .max();
        if src.is_some_and(|s| s > built) {
            let _ = std::io::stderr().write_all(
                format!(
                    "WARNING: {} is older than the sources; run `cargo build -p sidecar`\n",
                    bin.display()
                )
                .as_bytes(),
            );
        }
    });
}

/// The workspace root (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent dir")
        .to_path_buf()
}

/// A Python 3 interpreter: the system one when present (fast start, no pyenv
/// shim), else whatever `python3` is on PATH.
pub fn python3() -> String {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).is_file() {
            return p.to_string();
        }
    }
    "python3".to_string()
}

/// Poll `cond` every 20 ms until it holds; panic naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `f` every 20 ms until it returns `Some`; panic naming `what` after `timeout`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The JSON objects among the lines of `text` (e.g. `sc exec --json` events on
/// stderr); other lines are ignored.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if !l.starts_with('{') {
                return None;
            }
            serde_json::from_str::<Value>(l).ok()
        })
        .collect()
}

/// The events named `name` (field `"event"`) among `events`.
pub fn events_named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// Whether process `pid` is gone (no `/proc/<pid>`, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // Field 3, after the parenthesised comm (which may hold spaces).
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("?");
            state == "Z" || state == "X"
        }
    }
}

/// Live processes (this one and zombies aside) whose command line mentions
/// `dir`, with that command line: what a run rooted at `dir` left running.
pub fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || process_gone(pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push((pid, cmd.trim().to_string()));
        }
    }
    found
}

/// Send `sig` to `pid`; errors (already gone) are ignored.
pub fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Size of a file in bytes, 0 when missing.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The cgroup this process is in, as a directory where a child cgroup could
/// be made: the v1 memory controller's on hybrid/v1 hosts, else the v2 one.
fn own_cgroup_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(rel));
        }
        if ctrls.is_empty() {
            let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                PathBuf::from("/sys/fs/cgroup")
            } else {
                PathBuf::from("/sys/fs/cgroup/unified")
            };
            v2 = Some(base.join(rel));
        }
    }
    v2
}

/// Why cgroups cannot be used here, or `None` when a child cgroup can be made
/// below our own.
fn cgroup_problem() -> Option<String> {
    let Some(dir) = own_cgroup_dir() else {
        return Some("cannot find our cgroup in /proc/self/cgroup".into());
    };
    let probe = dir.join(format!("sc-tests-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
        Err(e) => Some(format!("cannot create a cgroup in {}: {e}", dir.display())),
    }
}

/// Gate for root-only tests. Returns true when the test may run (and records
/// it in `$SC_ROOT_TESTS_RAN`). When the machine cannot run it: panics, unless
/// `SC_ALLOW_NO_CGROUP=1`, in which case it says SKIPPED on stderr and returns
/// false (the caller returns).
pub fn require_root_and_cgroups(test: &str) -> bool {
    let problem = if !is_root() {
        Some(format!("not root (euid {})", unsafe { libc::geteuid() }))
    } else {
        cgroup_problem()
    };
    match problem {
        None => {
            record_root_test(test);
            true
        }
        Some(why) => {
            if std::env::var("SC_ALLOW_NO_CGROUP").as_deref() == Ok("1") {
                // Straight to fd 2: libtest captures eprintln! of passing tests.
                let _ = std::io::stderr().write_all(
                    format!("SKIPPED (SC_ALLOW_NO_CGROUP=1): {test}: {why}\n").as_bytes(),
                );
                false
            } else {
                panic!(
                    "{test} is root-only and cannot run here: {why}. Run the tests as root \
                     with writable cgroups, or set SC_ALLOW_NO_CGROUP=1 to skip root-only \
                     tests explicitly"
                );
            }
        }
    }
}

/// Append `test` to the file named by `$SC_ROOT_TESTS_RAN`, if set.
pub fn record_root_test(test: &str) {
    if let Some(path) = std::env::var_os("SC_ROOT_TESTS_RAN") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open SC_ROOT_TESTS_RAN={path:?}: {e}"));
        f.write_all(format!("{test}\n").as_bytes())
            .expect("write SC_ROOT_TESTS_RAN");
    }
}

/// Remove the empty cgroup directories below `dir` (deepest first), then
/// `dir` itself. Best effort: cgroups still holding processes stay.
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// SIGKILL every process in the cgroups at and below `dir` (best effort).
pub fn kill_cgroup_procs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_cgroup_procs(&e.path());
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            signal(pid, libc::SIGKILL);
        }
    }
}

/// `GET /metrics` from a daemon's `[metrics] listen` port on 127.0.0.1:
/// the body, which must come with status 200.
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of sample `name` (exactly, without labels) in a scrape.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Whether a 64-bit little-endian ELF file has a program interpreter
/// (`PT_INTERP`: linked dynamically); `None` if it is no such file.
pub fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36)?, u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}
