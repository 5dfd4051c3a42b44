//! Following the shared stamp log while the run goes (the final checks
//! re-read it whole with `sc_tests::read_holds`): who holds what right now
//! (for the "kill the holder's daemon" faults), counts for the live
//! summary, and labels that started more than once (a job run twice).
//!
//! Record format (tests/src/bin/sc-stamp.rs):
//! `start|tick|end LABEL MONO_NS JOB RESOURCES TOKENS`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Open {
    pub resources: Vec<String>,
    pub last_ns: u64,
}

pub struct StampTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    pub open: BTreeMap<String, Open>,
    pub starts: u64,
    pub ends: u64,
    /// Labels with more than one `start` record.
    pub restarted: Vec<String>,
    seen: std::collections::HashSet<String>,
    /// Host of the last e2e holder, to count hand-overs between hosts.
    last_e2e_host: Option<String>,
    pub handovers: u64,
}

/// The host index encoded in a label `h<i>-<seq>`.
pub fn host_of(label: &str) -> Option<usize> {
    label.strip_prefix('h')?.split('-').next()?.parse().ok()
}

impl StampTail {
    pub fn new(path: PathBuf) -> StampTail {
        StampTail {
            path,
            offset: 0,
            partial: String::new(),
            open: BTreeMap::new(),
            starts: 0,
            ends: 0,
            restarted: Vec::new(),
            seen: Default::default(),
            last_e2e_host: None,
            handovers: 0,
        }
    }

    /// Read what was appended since the last call.
    pub fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let Some(cut) = self.partial.rfind('\n') else {
            return;
        };
        let lines: String = self.partial.drain(..=cut).collect();
        for line in lines.lines() {
            self.line(line);
        }
    }

    fn line(&mut self, line: &str) {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 6 {
            return;
        }
        let Ok(t) = f[2].parse::<u64>() else { return };
        let label = f[1].to_string();
        match f[0] {
            "start" => {
                self.starts += 1;
                if !self.seen.insert(label.clone()) {
                    self.restarted.push(label.clone());
                }
                let resources: Vec<String> = f[4].split(',').map(str::to_string).collect();
                if resources.iter().any(|r| r == "e2e") {
                    let host = label.split('-').next().map(str::to_string);
                    if self.last_e2e_host.is_some() && self.last_e2e_host != host {
                        self.handovers += 1;
                    }
                    self.last_e2e_host = host;
                }
                self.open.insert(
                    label,
                    Open {
                        resources,
                        last_ns: t,
                    },
                );
            }
            "end" => {
                self.ends += 1;
                self.open.remove(&label);
            }
            _ => {
                if let Some(o) = self.open.get_mut(&label) {
                    o.last_ns = o.last_ns.max(t);
                }
            }
        }
    }

    /// Hosts whose jobs hold `res` now (ticked within the last 200 ms).
    pub fn holders(&self, res: &str, now: u64) -> Vec<usize> {
        self.open
            .iter()
            .filter(|(_, o)| o.resources.iter().any(|r| r == res))
            .filter(|(_, o)| now.saturating_sub(o.last_ns) < 200 * crate::util::MS)
            .filter_map(|(l, _)| host_of(l))
            .collect()
    }

    /// Jobs that ticked within the last 200 ms.
    pub fn running(&self, now: u64) -> usize {
        self.open
            .values()
            .filter(|o| now.saturating_sub(o.last_ns) < 200 * crate::util::MS)
            .count()
    }
}
