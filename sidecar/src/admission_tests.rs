//! Table tests for the admission rule.

use super::*;

const G: u64 = 1 << 30;

fn host(avail: u64, cpus: u64) -> Option<HostReading> {
    Some(HostReading {
        mem_available: avail,
        mem_reserve: 0,
        cpu_capacity_milli: cpus * 1000,
    })
}

fn job(id: JobId, priority: i32, mem: u64, cpu_milli: u32) -> Candidate {
    Candidate {
        id,
        priority,
        seq: id,
        mem,
        cpu_milli,
        blocked: None,
    }
}

fn running(mem_reserved: u64, mem_used: u64, cpu_milli: u32) -> Holder {
    Holder {
        mem_reserved,
        mem_used,
        cpu_milli,
    }
}

struct Case {
    name: &'static str,
    snapshot: Snapshot,
    start: Vec<JobId>,
}

#[test]
fn admission_table() {
    let cases = vec![
        Case {
            name: "empty host admits what fits, in rank order",
            snapshot: Snapshot {
                host: host(4 * G, 2),
                holders: vec![],
                queue: vec![job(1, 0, G, 0), job(2, 0, G, 0)],
            },
            start: vec![1, 2],
        },
        Case {
            name: "two jobs whose sum exceeds memory run one after the other",
            snapshot: Snapshot {
                host: host(4 * G, 2),
                holders: vec![],
                queue: vec![job(1, 0, 3 * G, 0), job(2, 0, 3 * G, 0)],
            },
            start: vec![1],
        },
        Case {
            name: "priority beats arrival",
            snapshot: Snapshot {
                host: host(4 * G, 2),
                holders: vec![],
                queue: vec![
                    job(1, -10, 3 * G, 0),
                    job(2, 10, 3 * G, 0),
                    job(3, 0, 3 * G, 0),
                ],
            },
            start: vec![2],
        },
        Case {
            name: "unused reservation of a running job counts",
            snapshot: Snapshot {
                // 4 GiB host, the runner uses 0.5 of its 3 GiB: 1 GiB is free.
                host: host(4 * G - G / 2, 2),
                holders: vec![running(3 * G, G / 2, 0)],
                queue: vec![job(1, 0, G + 1, 0)],
            },
            start: vec![],
        },
        Case {
            name: "a job that grew into its reservation holds nothing extra",
            snapshot: Snapshot {
                host: host(G + G / 2, 2),
                holders: vec![running(2 * G, 3 * G, 0)],
                queue: vec![job(1, 0, G, 0)],
            },
            start: vec![1],
        },
        Case {
            name: "reserve is kept free",
            snapshot: Snapshot {
                host: Some(HostReading {
                    mem_available: 4 * G,
                    mem_reserve: 2 * G,
                    cpu_capacity_milli: 2000,
                }),
                holders: vec![],
                queue: vec![job(1, 0, 3 * G, 0)],
            },
            start: vec![],
        },
        Case {
            name: "cpu requests are summed; a small one backfills beside the head",
            snapshot: Snapshot {
                host: host(16 * G, 2),
                holders: vec![running(0, 0, 1500)],
                queue: vec![job(1, 0, 0, 1000), job(2, 0, 0, 500), job(3, 0, 0, 600)],
            },
            start: vec![2],
        },
        Case {
            name: "backfill when it fits beside the head's request",
            // 2 GiB job runs (uses 2 GiB); head wants 3 GiB of 4: blocked.
            // A 1 GiB job fits now and beside the head once the runner ends.
            snapshot: Snapshot {
                host: host(2 * G, 2),
                holders: vec![running(2 * G, 2 * G, 0)],
                queue: vec![job(1, 0, 3 * G, 0), job(2, 0, G, 0)],
            },
            start: vec![2],
        },
        Case {
            name: "no backfill that would delay the head",
            // Head wants 3 GiB of 4; a 1.5 GiB job would not fit beside it.
            snapshot: Snapshot {
                host: host(2 * G, 2),
                holders: vec![running(2 * G, 2 * G, 0)],
                queue: vec![job(1, 0, 3 * G, 0), job(2, 0, G + G / 2, 0)],
            },
            start: vec![],
        },
        Case {
            name: "backfilled jobs add up against the head",
            snapshot: Snapshot {
                host: host(2 * G, 2),
                holders: vec![running(2 * G, 2 * G, 0)],
                queue: vec![
                    job(1, 0, 3 * G, 0),
                    job(2, 0, G / 2, 0),
                    job(3, 0, G / 2, 0),
                    job(4, 0, G / 2, 0),
                ],
            },
            start: vec![2, 3],
        },
        Case {
            name: "no reading admits nothing",
            snapshot: Snapshot {
                host: None,
                holders: vec![],
                queue: vec![job(1, 0, 0, 0)],
            },
            start: vec![],
        },
    ];
    for case in cases {
        let d = decide(&case.snapshot);
        assert_eq!(d.start, case.start, "case: {}", case.name);
        let waiting: Vec<JobId> = d.wait.iter().map(|w| w.id).collect();
        for id in &waiting {
            assert!(
                !case.start.contains(id),
                "case {}: {id} both started and waiting",
                case.name
            );
        }
        assert_eq!(
            waiting.len() + d.start.len(),
            case.snapshot.queue.len(),
            "case: {}",
            case.name
        );
    }
}

#[test]
fn waiting_positions_and_reasons() {
    let d = decide(&Snapshot {
        host: host(G, 2),
        holders: vec![running(3 * G, 3 * G, 0)],
        queue: vec![job(1, 0, 2 * G, 0), job(2, 5, 2 * G, 0), job(3, 0, 0, 3000)],
    });
    assert!(d.start.is_empty());
    assert_eq!(d.wait[0].id, 2);
    assert_eq!(d.wait[0].position, 1);
    assert_eq!(
        d.wait[0].reason,
        WaitReason::Memory {
            need: 2 * G,
            free: G
        }
    );
    assert_eq!(d.wait[1].id, 1);
    assert_eq!(d.wait[1].position, 2);
    assert_eq!(
        d.wait[2].reason,
        WaitReason::Cpu {
            need: 3000,
            free: 2000
        }
    );
}

#[test]
fn head_of_line_reason_when_it_fits_but_may_not_pass() {
    let d = decide(&Snapshot {
        host: host(2 * G, 2),
        holders: vec![running(2 * G, 2 * G, 0)],
        queue: vec![job(1, 0, 3 * G, 0), job(2, 0, 2 * G, 0)],
    });
    assert_eq!(d.wait[1].reason, WaitReason::Behind { ahead: 1 });
}

/// The head is never overtaken forever: whatever small jobs arrive, once the
/// original runners end the head fits.
#[test]
fn head_eventually_starts() {
    let mut holders = vec![running(2 * G, 2 * G, 0)];
    let mut queue = vec![job(1, 0, 3 * G, 0)];
    let total = 4 * G;
    for round in 0..20u64 {
        queue.push(job(100 + round, 0, G / 2, 0));
        let used: u64 = holders.iter().map(|h| h.mem_used).sum();
        let d = decide(&Snapshot {
            host: host(total - used, 2),
            holders: holders.clone(),
            queue: queue.clone(),
        });
        if d.start.contains(&1) {
            return;
        }
        queue.retain(|c| !d.start.contains(&c.id));
        // Each round the oldest holder ends, started jobs become holders.
        holders.remove(0);
        for _ in &d.start {
            holders.push(running(G / 2, G / 2, 0));
        }
    }
    panic!("the head never started");
}

#[test]
fn blocked_jobs_wait_without_blocking_others() {
    let mut waiting = job(1, 10, 3 * G, 0);
    waiting.blocked = Some(WaitReason::Service {
        name: "web".into(),
        state: "starting".into(),
    });
    let d = decide(&Snapshot {
        host: host(4 * G, 2),
        holders: vec![],
        queue: vec![waiting, job(2, 0, 3 * G, 0)],
    });
    assert_eq!(d.start, vec![2]);
    assert_eq!(d.wait.len(), 1);
    assert!(matches!(d.wait[0].reason, WaitReason::Service { .. }));
}

#[test]
fn impossible_requests() {
    assert!(impossible(4 * G, 0, 2000, 5 * G, 0).is_some());
    assert!(impossible(4 * G, G, 2000, 4 * G, 0).is_some());
    assert!(impossible(4 * G, 0, 2000, 4 * G, 0).is_none());
    assert!(impossible(4 * G, 0, 2000, 0, 2001).is_some());
}
