//! `sc` and `scd` (docs/decisions.md, "Two executables"): `sc` hands every
//! verb but `exec` to the `scd` beside it, says so clearly when there is
//! none, and is linked statically where the build can do it.

use sc_tests::*;
use std::path::Path;
use std::process::Command;

/// Copy the built `sc` alone into `dir`. Until every process forked by
/// another test thread while the copy was open for writing has exec'd, it
/// holds the file open and exec fails with ETXTBSY: wait that out here.
fn copy_sc_alone(dir: &Path) {
    let sc = dir.join("sc");
    std::fs::copy(sc_bin(), &sc).expect("copy sc");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Command::new(&sc).arg("exec").arg("--help").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: {e}",
                    sc.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot run {}: {e}", sc.display()),
            Ok(_) => return,
        }
    }
}

/// The copy made by [`copy_sc_alone`], with a `PATH` that holds no `scd`
/// either.
fn lonely_sc(dir: &Path) -> Command {
    let mut c = Command::new(dir.join("sc"));
    c.env("PATH", "/usr/bin:/bin")
        .env("SC_SOCKET", dir.join("nothing.sock"));
    c
}

#[test]
fn verbs_other_than_exec_run_in_scd_with_sc_s_name() {
    let d = TestDaemon::start("");
    // Same process (exec'd in place), same argv[0]: help and errors say `sc`.
    let out = d.sc(&["status", "--json"]);
    out.assert_success();
    assert_eq!(
        out.json()["socket"],
        d.socket().to_str().expect("utf-8 path"),
        "{out}"
    );
    let out = d.sc(&["no-such-verb"]);
    assert_eq!(out.code(), Some(125), "{out}");
    assert!(
        out.stderr_str().contains("Usage: sc "),
        "the error should name sc: {out}"
    );
    let version = d.sc(&["--version"]);
    version.assert_success();
    assert!(version.stdout_str().starts_with("sc "), "{version}");
}

#[test]
fn sc_without_scd_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    copy_sc_alone(tmp.path());
    let mut ps = lonely_sc(tmp.path());
    ps.arg("ps");
    let out = run(ps, CMD_TIMEOUT);
    assert_eq!(out.code(), Some(125), "{out}");
    let err = out.stderr_str();
    assert!(
        err.contains("scd") && err.contains("cargo build --release -p sidecar"),
        "{out}"
    );
    // exec itself runs in sc, and fails only where it needs the daemon.
    let mut help = lonely_sc(tmp.path());
    help.args(["exec", "--help"]);
    let out = run(help, CMD_TIMEOUT);
    out.assert_success();
    assert!(out.stdout_str().contains("--mem"), "{out}");
    // No daemon, no SC_SOCKET: the private daemon it would start is scd.
    assert!(
        !Path::new("/run/sc/sc.sock").exists(),
        "a system daemon socket exists at /run/sc/sc.sock; this test needs a machine without one"
    );
    let (run_dir, state) = (tmp.path().join("run"), tmp.path().join("state"));
    let mut exec = lonely_sc(tmp.path());
    exec.env_remove("SC_SOCKET")
        .env("XDG_RUNTIME_DIR", &run_dir)
        .env("XDG_STATE_HOME", &state)
        .args(["exec", "--", "true"]);
    let out = run(exec, CMD_TIMEOUT);
    assert_eq!(out.code(), Some(125), "{out}");
    assert!(out.stderr_str().contains("scd"), "{out}");
}

/// The build links `sc` statically on a Linux/glibc host with a static libc
/// (tools/rustc-wrapper); if the wrapper stopped doing it, `sc exec` would
/// quietly lose a tenth of its speed.
#[test]
fn sc_is_static_where_the_build_can_link_it_so() {
    let libc_a = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-print-file-name=libc.a")
        .output()
        .expect("run cc -print-file-name=libc.a");
    let libc_a = String::from_utf8_lossy(&libc_a.stdout).trim().to_string();
    let gnu = cfg!(all(target_os = "linux", target_env = "gnu"));
    if !gnu || libc_a == "libc.a" {
        panic!(
            "this host cannot link sc statically (target gnu: {gnu}, libc.a: {libc_a:?}); \
             install libc6-dev or run the tests elsewhere"
        );
    }
    let elf = std::fs::read(sc_bin()).expect("read sc");
    assert_eq!(
        elf_has_interpreter(&elf),
        Some(false),
        "sc has a PT_INTERP: it was linked dynamically"
    );
    let scd = std::fs::read(sc_bin().with_file_name("scd")).expect("read scd");
    assert_eq!(
        elf_has_interpreter(&scd),
        Some(true),
        "scd is expected dynamic (only sc and sc-stamp are static)"
    );
    // The hand-over benchmark's job: static so that its own start is as
    // short as a compiled program's can be (docs/benchmarks.md).
    let stamp = std::fs::read(env!("CARGO_BIN_EXE_sc-stamp")).expect("read sc-stamp");
    assert_eq!(
        elf_has_interpreter(&stamp),
        Some(false),
        "sc-stamp has a PT_INTERP: it was linked dynamically"
    );
}
