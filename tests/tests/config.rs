//! Configuration (§7): unknown keys are rejected naming the key and its line,
//! by `sc config check` and by `sc daemon` alike; every key has a default.

use sc_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn sc(args: &[&str], cwd: &Path) -> RunOutput {
    let mut c = Command::new(sc_bin());
    c.args(args).env_remove("SC_SOCKET").current_dir(cwd);
    run(c, Duration::from_secs(10))
}

/// Whether `text` names line `line` (as `line 3` or `file:3`).
fn names_line(text: &str, file: &Path, line: u32) -> bool {
    let t = text.to_lowercase();
    t.contains(&format!("line {line}")) || t.contains(&format!("{}:{line}", file.display()))
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("bad.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn config_check_accepts_valid_files() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = sc(&["config", "check", empty.to_str().unwrap()], tmp.path());
    out.assert_success();

    let full = tmp.path().join("full.toml");
    std::fs::write(
        &full,
        format!(
            "[daemon]\nsocket = \"{0}/s.sock\"\nstate_dir = \"{0}/state\"\n\n[host]\nmemory = \"4G\"\ncores = 2\nreserve = \"512M\"\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    sc(&["config", "check", full.to_str().unwrap()], tmp.path()).assert_success();
}

#[test]
fn config_check_names_unknown_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_config(
        tmp.path(),
        "[daemon]\nstate_dir = \"/tmp/x\"\nbogus_key = 1\n\n[host]\ncores = 2\n",
    );
    let out = sc(&["config", "check", p.to_str().unwrap()], tmp.path());
    assert_ne!(out.code(), Some(0), "unknown key accepted\n{out}");
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("bogus_key"),
        "the unknown key is not named\n{out}"
    );
    assert!(names_line(&all, &p, 3), "line 3 is not named\n{out}");

    // Same in a later section.
    let p = write_config(
        tmp.path(),
        "[daemon]\n\n[host]\ncores = 2\nmemroy = \"4G\"\n",
    );
    let out = sc(&["config", "check", p.to_str().unwrap()], tmp.path());
    assert_ne!(out.code(), Some(0), "unknown key accepted\n{out}");
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("memroy"),
        "the unknown key is not named\n{out}"
    );
    assert!(names_line(&all, &p, 5), "line 5 is not named\n{out}");

    // An unknown section.
    let p = write_config(tmp.path(), "[daemon]\n[nonsense]\nx = 1\n");
    let out = sc(&["config", "check", p.to_str().unwrap()], tmp.path());
    assert_ne!(out.code(), Some(0), "unknown section accepted\n{out}");
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("nonsense"),
        "the unknown section is not named\n{out}"
    );
}

#[test]
fn config_check_rejects_bad_values() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_config(tmp.path(), "[host]\nmemory = \"lots\"\n");
    let out = sc(&["config", "check", p.to_str().unwrap()], tmp.path());
    assert_ne!(out.code(), Some(0), "bad size accepted\n{out}");
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(all.contains("lots") || all.contains("memory"), "{out}");

    let missing = tmp.path().join("missing.toml");
    let out = sc(&["config", "check", missing.to_str().unwrap()], tmp.path());
    assert_ne!(out.code(), Some(0), "missing file accepted\n{out}");
    assert!(out.stderr_str().contains("missing.toml"), "{out}");
}

#[test]
fn daemon_refuses_config_with_unknown_key() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("sc.sock");
    let p = write_config(
        tmp.path(),
        &format!(
            "[daemon]\nsocket = \"{}\"\nbogus_key = 1\n",
            socket.display()
        ),
    );
    let out = sc(&["daemon", "--config", p.to_str().unwrap()], tmp.path());
    assert_ne!(
        out.code(),
        Some(0),
        "daemon started with an unknown key\n{out}"
    );
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("bogus_key"),
        "the unknown key is not named\n{out}"
    );
    assert!(names_line(&all, &p, 3), "line 3 is not named\n{out}");
    assert!(
        !socket.exists(),
        "daemon created its socket despite a bad config"
    );
}

/// `[resources]` (issue 5): accepted beside `[cluster]`, refused without it,
/// a quorum resource needs `[cluster] members`, an unknown key in a
/// resource's table is named with its line.
#[test]
fn config_check_resources() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = "[cluster]\nlisten = \"127.0.0.1:7946\"\nca = \"ca.crt\"\ncert = \"node.crt\"\nkey = \"node.key\"\n";
    let check = |body: &str| {
        let p = write_config(tmp.path(), body);
        let out = sc(&["config", "check", p.to_str().unwrap()], tmp.path());
        let all = format!("{}{}", out.stdout_str(), out.stderr_str());
        (out.code(), all, p)
    };

    let (code, all, _) = check(&format!(
        "{cluster}members = [\"a\", \"b\", \"c\"]\nlease = \"2s\"\n[resources]\ne2e-env = {{ capacity = 1, mode = \"quorum\" }}\ngpu = 4\n"
    ));
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("e2e-env (capacity 1, quorum)"), "{all}");

    let (code, all, _) = check("[resources]\ne2e-env = 1\n");
    assert_ne!(
        code,
        Some(0),
        "[resources] without [cluster] accepted\n{all}"
    );
    assert!(all.contains("[cluster]"), "{all}");

    let (code, all, _) = check(&format!(
        "{cluster}[resources]\ne2e-env = {{ capacity = 1, mode = \"quorum\" }}\n"
    ));
    assert_ne!(code, Some(0), "quorum without members accepted\n{all}");
    assert!(all.contains("e2e-env") && all.contains("members"), "{all}");

    let (code, all, p) = check(&format!(
        "{cluster}[resources]\ne2e-env = {{ capacity = 1, modes = \"quorum\" }}\n"
    ));
    assert_ne!(code, Some(0), "unknown key accepted\n{all}");
    assert!(all.contains("modes"), "the unknown key is not named\n{all}");
    assert!(names_line(&all, &p, 7), "line 7 is not named\n{all}");

    let (code, all, _) = check(&format!("{cluster}[resources]\ne2e-env = 0\n"));
    assert_ne!(code, Some(0), "capacity 0 accepted\n{all}");
    assert!(all.contains("capacity"), "{all}");
}
