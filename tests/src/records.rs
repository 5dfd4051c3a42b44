//! Jobs that record when they ran, so tests judge scheduling from the jobs'
//! own records (CLOCK_MONOTONIC, shared by every process on the host).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SCRIPT: &str = r#"
import os, sys, time
args = sys.argv[1:]
path, label, sleep_s = args[0], args[1], float(args[2])
until_exists = None
await_label = None
i = 3
while i < len(args):
    if args[i] == "--until-exists":
        until_exists = args[i + 1]
    elif args[i] == "--await-label":
        await_label = args[i + 1]
    i += 2
job = os.environ.get("SC_JOB_ID", "-")
def rec(kind):
    with open(path, "a") as f:
        f.write("%s %s %d %s\n" % (kind, label, time.monotonic_ns(), job))
rec("start")
deadline = time.monotonic() + 60
if until_exists:
    while not os.path.exists(until_exists) and time.monotonic() < deadline:
        time.sleep(0.02)
if await_label:
    deadline = time.monotonic() + 10
    def seen():
        try:
            with open(path) as f:
                return any(l.startswith("start %s " % await_label) for l in f)
        except OSError:
            return False
    while not seen() and time.monotonic() < deadline:
        time.sleep(0.02)
time.sleep(sleep_s)
rec("end")
"#;

/// Write the recording script into `dir` and return its path. A job runs it
/// as `python3 SCRIPT RECORDS LABEL SLEEP_S [--until-exists FILE]
/// [--await-label OTHER]`: it appends `start LABEL NS JOB` to RECORDS, waits
/// (bounded) for FILE to exist and/or for OTHER's start line, sleeps, and
/// appends `end LABEL NS JOB`.
pub fn record_script(dir: &Path) -> PathBuf {
    let p = dir.join("record.py");
    std::fs::write(&p, SCRIPT).expect("write record.py");
    p
}

/// When one labelled job ran, in CLOCK_MONOTONIC nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: u64,
    pub end: Option<u64>,
}

impl Interval {
    /// Whether two finished intervals share any instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        let (a_end, b_end) = (
            self.end.expect("unfinished"),
            other.end.expect("unfinished"),
        );
        self.start < b_end && other.start < a_end
    }
}

/// Parse the records file: label → interval. Panics on a malformed line or a
/// label that started twice.
#[track_caller]
pub fn read_intervals(path: &Path) -> BTreeMap<String, Interval> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut map: BTreeMap<String, Interval> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 3, "malformed record line {line:?} in:\n{text}");
        let ns: u64 = f[2].parse().expect("record ns");
        match f[0] {
            "start" => {
                let prev = map.insert(
                    f[1].to_string(),
                    Interval {
                        start: ns,
                        end: None,
                    },
                );
                assert!(prev.is_none(), "{} started twice:\n{text}", f[1]);
            }
            "end" => {
                let iv = map
                    .get_mut(f[1])
                    .unwrap_or_else(|| panic!("{} ended before starting:\n{text}", f[1]));
                iv.end = Some(ns);
            }
            _ => panic!("malformed record line {line:?}"),
        }
    }
    map
}
