//! What a run leaves in its run dir for a person to read (kept with
//! `--keep`): the clients' records, the faults, the topology timeline, and
//! when the quiet tail did not drain, every daemon's own view.

use crate::faults::Nemesis;
use crate::hosts::host_name;
use crate::lab::Lab;
use crate::net::Net;
use crate::run::Opts;
use crate::topology::Timeline;
use std::sync::{Arc, Mutex};

/// What the harness saw, into the run dir (kept with `--keep`): every
/// client with its events, the faults, the topology timeline.
pub fn save_records(
    dir: &std::path::Path,
    clients: &[crate::workload::ClientRecord],
    nemesis: &Nemesis,
    timeline: &Timeline,
    t0: u64,
) {
    let rel = |t: u64| (t as i128 - t0 as i128) as f64 / 1e9;
    let lines: Vec<String> = clients
        .iter()
        .map(|c| {
            serde_json::json!({
                "label": c.spec.label, "host": host_name(c.spec.host), "needs": c.spec.needs_arg(),
                "mem": c.spec.mem, "priority": c.spec.priority, "wait_for": c.spec.wait_for,
                "hold_ms": c.spec.hold_ms, "pid": c.pid, "spawned": rel(c.spawned_ns),
                "exited": c.exited_ns.map(rel), "code": c.code, "killed": c.killed_ns.map(rel),
                "events": c.events.iter().map(|(t, e)| serde_json::json!([rel(*t), e])).collect::<Vec<_>>(),
                "stderr": c.text,
            })
            .to_string()
        })
        .collect();
    let _ = std::fs::write(dir.join("clients.jsonl"), lines.join("\n"));
    let faults: Vec<String> = nemesis
        .log
        .iter()
        .map(|(t, l)| format!("{:.3} {l}", rel(*t)))
        .collect();
    let _ = std::fs::write(dir.join("faults.log"), faults.join("\n"));
    let topo: Vec<String> = timeline
        .points
        .iter()
        .map(|(t, s)| format!("{:.3} {s:?}", rel(*t)))
        .collect();
    let _ = std::fs::write(dir.join("topology.log"), topo.join("\n"));
}

/// Every daemon's board, status and queue, into `<run dir>/<what>/`: the
/// evidence for a stuck cluster (kept with `--keep`).
pub fn dump_views(o: &Opts, lab: &Lab, net: &Arc<Mutex<Net>>, what: &str) {
    let dir = lab.path().join(what);
    let _ = std::fs::create_dir_all(&dir);
    for (i, h) in lab.hosts.iter().enumerate() {
        for verb in ["board", "status", "ps"] {
            let v = h.query(&o.sc, &net.lock().unwrap(), i, &[verb, "--json"]);
            let text = v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default());
            let _ = std::fs::write(
                dir.join(format!("{}-{verb}.json", h.name)),
                text.unwrap_or_else(|| "no answer".into()),
            );
        }
    }
    eprintln!(
        "sc-chaos: every daemon's board, status and queue saved in {}",
        dir.display()
    );
}

/// Job records (`jobs/*.json`) in a state dir.
pub fn job_records(state_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(state_dir.join("jobs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}
