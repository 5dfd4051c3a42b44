//! `sc logs`: rotated log files, `-n`, `-f` (across rotations), markers.

use sc_tests::*;
use std::time::Duration;

#[track_caller]
fn add(d: &TestDaemon, args: &[&str]) {
    let mut v = vec!["service", "add"];
    v.extend_from_slice(args);
    d.sc(&v).assert_success();
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn logs_rotate_tail_and_follow() {
    let d = TestDaemon::start("");
    let flag = d.dir().join("go-on");
    let script = format!(
        "i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; i=$((i+1)); done; \
         n=0; while [ ! -e {flag} ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; \
         i=0; while [ $i -lt 600 ]; do echo \"late $i\"; i=$((i+1)); done; \
         echo late-done; exec sleep 1000",
        flag = flag.display()
    );
    add(
        &d,
        &[
            "chatty",
            "--log-max-size",
            "4K",
            "--log-keep",
            "3",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_until(Duration::from_secs(20), "line 1999 in the log", || {
        d.service_log("chatty").contains("line 1999\n")
    });

    // About 20 KB written, 4 KB files, 3 kept.
    let files = d.service_log_files("chatty");
    assert_eq!(files.len(), 3, "expected 3 log files: {files:?}");
    for (i, f) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() <= 4096,
            "{} is {} bytes, over --log-max-size 4K",
            f.display(),
            text.len()
        );
        if i + 1 < files.len() {
            assert!(text.ends_with('\n'), "{} was rotated mid-line", f.display());
        }
    }
    // No line lost or duplicated across the files: a contiguous run of
    // numbers ending at 1999 (the oldest were dropped with the oldest file).
    let all = d.service_log("chatty");
    let nums: Vec<u32> = all
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .map(|n| n.parse().unwrap_or_else(|_| panic!("mangled line {n:?}")))
        .collect();
    assert_eq!(nums.last(), Some(&1999));
    assert!(nums.len() > 800, "only {} lines kept", nums.len());
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap or duplicate in the log at {w:?}");
    }
    // The first lines and the start marker went with the dropped files.
    assert!(!all.contains("line 0\n"), "the oldest file was not dropped");

    // -n 5, the default 10, and a tail spanning files.
    let out = d.sc(&["logs", "chatty", "-n", "5"]);
    out.assert_success();
    assert_eq!(
        out.stdout_str(),
        "line 1995\nline 1996\nline 1997\nline 1998\nline 1999\n"
    );
    let out = d.sc(&["logs", "chatty"]);
    out.assert_success();
    assert_eq!(out.stdout_str(), last_lines(&all, 10));
    let out = d.sc(&["logs", "chatty", "-n", "700"]);
    out.assert_success();
    assert_eq!(out.stdout_str(), last_lines(&all, 700));

    // -f: the last 2 lines, then what comes, across rotations.
    let mut follow = d.spawn(&["logs", "chatty", "-f", "-n", "2"]);
    wait_until(Duration::from_secs(10), "sc logs -f to print", || {
        follow.stdout_so_far().contains("line 1999\n")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(follow.stdout_so_far(), "line 1998\nline 1999\n");
    std::fs::write(&flag, "").unwrap();
    wait_until(Duration::from_secs(20), "late-done from sc logs -f", || {
        follow.stdout_so_far().contains("late-done\n")
    });
    let mut want = String::from("line 1998\nline 1999\n");
    for i in 0..600 {
        want.push_str(&format!("late {i}\n"));
    }
    want.push_str("late-done\n");
    assert_eq!(
        follow.stdout_so_far(),
        want,
        "sc logs -f lost or repeated lines"
    );
    assert!(!follow.has_exited(), "sc logs -f ended by itself");
    // Markers reach a follower too.
    d.sc(&["service", "restart", "chatty"]).assert_success();
    wait_until(Duration::from_secs(10), "markers in sc logs -f", || {
        let s = follow.stdout_so_far();
        s.contains("--- sc: exited: ") && s.contains("--- sc: started pid ")
    });
    drop(follow);
    assert!(d.service_log_files("chatty").len() <= 3);
}

#[test]
fn log_has_output_and_markers_in_order() {
    let d = TestDaemon::start("");
    add(
        &d,
        &[
            "twice",
            "--backoff-initial",
            "100ms",
            "--max-failures",
            "3",
            "--",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exit 7",
        ],
    );
    wait_until(Duration::from_secs(10), "twice to fail", || {
        d.service("twice").is_some_and(|v| v["state"] == "failed")
    });
    let out = d.sc(&["logs", "twice", "-n", "100"]);
    out.assert_success();
    let text = out.stdout_str();
    // The file says the same.
    assert_eq!(d.service_log("twice"), text);
    assert!(
        text.contains("--- sc: restarting in 100ms (exit 7) ---"),
        "{text}"
    );
    assert!(
        text.ends_with("`sc service restart twice` ---\n"),
        "{:?}",
        &text[text.len().saturating_sub(120)..]
    );

    // One segment per run, from its `started pid` marker: the run's output
    // comes before its `exited` marker, and the restart decision after it.
    let mut runs: Vec<Vec<&str>> = Vec::new();
    for l in text.lines() {
        if l.starts_with("--- sc: started pid ") {
            let pid = l
                .trim_start_matches("--- sc: started pid ")
                .trim_end_matches(" ---");
            assert!(pid.parse::<u32>().is_ok(), "{l}");
            runs.push(Vec::new());
        }
        runs.last_mut()
            .unwrap_or_else(|| panic!("a line before the first start marker\n{text}"))
            .push(l);
    }
    assert_eq!(runs.len(), 4, "{text}");
    for (i, run) in runs.iter().enumerate() {
        let at = |want: &str| {
            run.iter()
                .position(|l| l.starts_with(want))
                .unwrap_or_else(|| panic!("run {i} has no {want:?}\n{text}"))
        };
        let exited = at("--- sc: exited: exit 7 ---");
        assert!(
            at("to-stdout") < exited && at("to-stderr") < exited,
            "run {i}: the process's output is logged after its exit marker\n{text}"
        );
        let next = if i < 3 {
            at("--- sc: restarting in ")
        } else {
            at("--- sc: failed: ")
        };
        assert!(exited < next, "run {i}\n{text}");
    }
}
