//! The history store against a real redb file in a temp dir: records
//! survive reopening, the oldest go beyond `keep`, the summary is rebuilt,
//! and a corrupt file does not stop anything.

use super::*;
use sc_protocol::JobUsage;

const M: u64 = 1 << 20;

fn entry(id: u64, argv: &str, outcome: &str, peak_mib: u64) -> HistoryEntry {
    HistoryEntry {
        id,
        owner: 1000,
        argv: argv.split(' ').map(String::from).collect(),
        cwd: "/src".into(),
        name: None,
        requests: Default::default(),
        reserved: 256 * M,
        priority: 0,
        queued_at: id * 10,
        started_at: Some(id * 10 + 1),
        ended_at: id * 10 + 5,
        outcome: outcome.into(),
        code: Some(0),
        signal: None,
        reason: None,
        usage: JobUsage {
            peak_mem: Some(peak_mib * M),
            ..Default::default()
        },
        mem_source: None,
    }
}

fn argv(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

fn params() -> LearnParams {
    LearnParams {
        headroom: 1.0,
        percentile: 100,
        ..LearnParams::default()
    }
}

#[test]
fn records_survive_reopening_and_teach_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = History::open(dir.path(), params(), 100);
        h.record(&entry(1, "make all", "exited", 100)).unwrap();
        h.record(&entry(2, "make all", "spawn-failed", 900))
            .unwrap();
        h.record(&entry(3, "make test", "exited", 50)).unwrap();
        assert_eq!(h.learned(&argv("make all"), "/src").unwrap().mem, 100 * M);
    }
    let h = History::open(dir.path(), params(), 100);
    let (all, bad) = h.list(0).unwrap();
    assert_eq!(bad, 0);
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        h.list(2)
            .unwrap()
            .0
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    let l = h.learned(&argv("make all"), "/src").unwrap();
    assert_eq!(
        (l.mem, l.runs),
        (100 * M, 1),
        "the spawn failure must not count"
    );
    assert!(h.learned(&argv("make all"), "/elsewhere").is_none());
}

#[test]
fn oldest_records_go_beyond_keep() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), params(), 3);
    for id in 1..=5 {
        h.record(&entry(id, "true", "exited", 1)).unwrap();
    }
    let ids: Vec<u64> = h.list(0).unwrap().0.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![3, 4, 5]);
}

#[test]
fn a_corrupt_store_is_moved_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("history.redb"), vec![0x5a; 8192]).unwrap();
    let h = History::open(dir.path(), params(), 10);
    h.record(&entry(1, "true", "exited", 1)).unwrap();
    assert_eq!(h.list(0).unwrap().0.len(), 1);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("history.redb.bad-")
        })
        .count();
    assert_eq!(aside, 1, "the corrupt file was not kept aside");
}
