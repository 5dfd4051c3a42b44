//! This host's board entries, from the daemon's state: what the cluster
//! publisher hands to chitchat each tick.

use super::state::Daemon;
use crate::cluster::board::LocalState;
use sc_protocol::board::{BoardJob, BoardService, Headroom, NodeInfo};

/// Cut a command line to something a table can show.
pub fn summary(argv: &[String], name: Option<&str>) -> String {
    if let Some(n) = name {
        return n.to_string();
    }
    let line = argv.join(" ");
    if line.chars().count() > 80 {
        let mut s: String = line.chars().take(79).collect();
        s.push('…');
        s
    } else {
        line
    }
}

pub fn local_state(d: &Daemon, node_name: &str, labels: &[(String, String)]) -> LocalState {
    let snap = d.snapshot();
    let info = d.tree.info();
    let running = d.jobs.values().filter(|j| j.holds_resources()).count() as u32;
    let queued = d.jobs.values().filter(|j| j.is_queued()).count() as u32;
    LocalState {
        node: NodeInfo {
            name: node_name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cores: d.capacity.cores,
            mem_total: d.capacity.mem_total,
            labels: labels.to_vec(),
            backend: info.kind.to_string(),
        },
        headroom: Headroom {
            mem_available: snap.host.map(|h| h.mem_available).unwrap_or(0),
            mem_reserved: snap.holders.iter().map(|h| h.mem_reserved).sum(),
            cpu_reserved_milli: snap.holders.iter().map(|h| h.cpu_milli).sum::<u32>(),
            jobs_running: running,
            jobs_queued: queued,
            psi_some_avg10_x100: sc_supervisor::host::read_memory_psi().map(|p| (p * 100.0) as u32),
        },
        jobs: d
            .jobs
            .values()
            .map(|j| BoardJob {
                id: j.id,
                owner: j.owner,
                summary: summary(&j.exec.argv, j.exec.name.as_deref()),
                requests: j.exec.requests.clone(),
                priority: j.exec.priority,
                state: j.state,
                waiting: j.last_wait.as_ref().map(|(r, _)| r.to_string()),
                queued_at: j.queued_wall,
                started_at: j.started_wall,
                needs: j.exec.needs.clone(),
            })
            .collect(),
        services: d
            .services
            .entries
            .values()
            .map(|e| {
                let st = e.status();
                BoardService {
                    name: e.spec.name.clone(),
                    state: st.state,
                    ready: st.ready,
                    restarts: st.restarts,
                    last_reason: st.last_reason,
                }
            })
            .collect(),
    }
}
