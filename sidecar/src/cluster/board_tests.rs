//! Board publication and reading, without a network.

use super::*;
use sc_protocol::{JobState, ServiceState};

fn state(mem_available: u64, jobs: Vec<u64>) -> LocalState {
    LocalState {
        node: NodeInfo {
            name: "a".into(),
            version: "0.1.0".into(),
            cores: 2,
            mem_total: 1000,
            labels: vec![],
            backend: "none".into(),
        },
        headroom: Headroom {
            mem_available,
            mem_reserved: 0,
            cpu_reserved_milli: 0,
            jobs_running: jobs.len() as u32,
            jobs_queued: 0,
            psi_some_avg10_x100: None,
        },
        jobs: jobs
            .into_iter()
            .map(|id| BoardJob {
                id,
                owner: 0,
                summary: "make".into(),
                requests: Default::default(),
                priority: 0,
                state: JobState::Running,
                waiting: None,
                queued_at: 1,
                started_at: Some(2),
                needs: Vec::new(),
            })
            .collect(),
        services: vec![BoardService {
            name: "web".into(),
            state: ServiceState::Running,
            ready: true,
            restarts: 0,
            last_reason: None,
        }],
    }
}

#[test]
fn publisher_writes_only_changes_and_deletes_ended_jobs() {
    let t0 = Instant::now();
    let mut p = Publisher::default();
    let first = p.changes(&state(500, vec![1, 2]), 1000, t0);
    let keys: Vec<&str> = first.set.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["headroom", "job/1", "job/2", "node", "svc/web"]);
    assert!(first.delete.is_empty());
    // Nothing changed: nothing written.
    assert_eq!(
        p.changes(&state(500, vec![1, 2]), 1000, t0),
        Changes::default()
    );
    // Small memory drift: headroom not republished.
    assert_eq!(
        p.changes(&state(505, vec![1, 2]), 1000, t0),
        Changes::default()
    );
    // Job 1 ended: its key goes, headroom (count changed) is republished.
    let c = p.changes(&state(505, vec![2]), 1000, t0);
    assert_eq!(c.delete, vec!["job/1".to_string()]);
    assert_eq!(c.set.len(), 1);
    assert_eq!(c.set[0].0, "headroom");
    // A small drift is held back while the published figure is fresh...
    let c = p.changes(&state(506, vec![2]), 1000, t0 + Duration::from_secs(1));
    assert_eq!(c, Changes::default());
    // ...and published once it is stale.
    let c = p.changes(&state(506, vec![2]), 1000, t0 + HEADROOM_MAX_AGE);
    assert_eq!(c.set.len(), 1);
    assert_eq!(c.set[0].0, "headroom");
}

#[test]
fn board_reads_hosts_and_counts_undecodable_values() {
    let published = publish(&state(500, vec![7]));
    let kv: Vec<(&str, &str)> = published
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut bad = kv.clone();
    bad.push(("job/9", "v1 {broken"));
    bad.push(("svc/x", "v7 {}"));
    let mut clock = DeathClock::default();
    let mut undecodable = Undecodable::default();
    let t0 = Instant::now();
    let view = read_board(
        "sc",
        vec![
            HostKeys {
                name: "a",
                generation: 1,
                gossip_addr: "127.0.0.1:1".into(),
                live: true,
                is_self: true,
                kv: kv.clone(),
            },
            HostKeys {
                name: "b",
                generation: 5,
                gossip_addr: "127.0.0.2:1".into(),
                live: false,
                is_self: false,
                kv: bad,
            },
            // An older generation of b is ignored.
            HostKeys {
                name: "b",
                generation: 4,
                gossip_addr: "127.0.0.2:1".into(),
                live: false,
                is_self: false,
                kv: vec![],
            },
        ],
        &mut clock,
        t0,
        &mut undecodable,
    );
    assert_eq!(view.hosts.len(), 2);
    assert_eq!(view.hosts[0].jobs[0].id, 7);
    assert!(view.hosts[0].services[0].ready);
    assert_eq!(view.hosts[1].jobs.len(), 1, "the good job of b is kept");
    assert_eq!(view.undecodable_values, 2);
    // Read again (the next tick): the same bad values do not count twice.
    let again = read_board(
        "sc",
        vec![HostKeys {
            name: "b",
            generation: 5,
            gossip_addr: "x".into(),
            live: false,
            is_self: false,
            kv: vec![("job/9", "v1 {broken")],
        }],
        &mut clock,
        t0,
        &mut undecodable,
    );
    assert_eq!(again.undecodable_values, 2);
    assert_eq!(view.hosts[1].dead_for_ms, Some(0));
    assert_eq!(
        clock.dead_for("b", 5, false, t0 + Duration::from_secs(2)),
        Some(Duration::from_secs(2))
    );
}

#[test]
fn remote_gate_answers() {
    use crate::daemon::services::Gate;
    let published = publish(&state(500, vec![]));
    let kv: Vec<(&str, &str)> = published
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut clock = DeathClock::default();
    let mut n = Undecodable::default();
    let view = read_board(
        "sc",
        vec![HostKeys {
            name: "b",
            generation: 1,
            gossip_addr: "x".into(),
            live: true,
            is_self: false,
            kv,
        }],
        &mut clock,
        Instant::now(),
        &mut n,
    );
    assert_eq!(remote_gate(&view, "web", "b"), Gate::Ready);
    assert!(matches!(remote_gate(&view, "db", "b"), Gate::Failed(_)));
    assert!(matches!(remote_gate(&view, "web", "c"), Gate::Failed(_)));
}
