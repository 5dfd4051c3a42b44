//! The CI batch: 194 runs (97 seeds in both modes) over 3, 5 and 7 hosts
//! with 15 simulated seconds of faults each, and one run per mode at 50
//! hosts, with every invariant of `check.rs` and `tail.rs` asserted; plus
//! checks that the checker itself catches a double grant, a stale token
//! and a grant without a quorum, and that a seed replays exactly. A
//! failure prints each violating seed with its trace tail and the line to
//! rerun it.
//!
//! Sized on a debug build: about 60 s of CPU in all, the 50-host pair the
//! longest single test (about 22 s), so about 30 s on two idle cores.
//! `sc sim-dlock` runs the big batches.

use super::super::Mode;
use super::check::End;
use super::host::{Job, JobState, Life};
use super::report::{describe, run_batch};
use super::world::{RunConfig, World};

/// Every seed in `seeds`, in both modes, must pass; and the runs must have
/// done something (a sim that never grants proves nothing).
fn batch(hosts: usize, seeds: std::ops::Range<u64>, fault_secs: u64) {
    let configs: Vec<RunConfig> = seeds
        .flat_map(|seed| {
            [Mode::Quorum, Mode::Available].map(|mode| RunConfig {
                seed,
                hosts,
                mode,
                fault_ms: fault_secs * 1000,
                faults: true,
            })
        })
        .collect();
    let results = run_batch(&configs, 1, false);
    let failures: Vec<String> = results
        .iter()
        .map(describe)
        .filter(|d| !d.is_empty())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let grants: u64 = results.iter().map(|r| r.stats.grants).sum();
    let faults: u64 = results
        .iter()
        .map(|r| r.stats.crashes + r.stats.partitions)
        .sum();
    assert!(
        grants > 5 * results.len() as u64,
        "only {grants} grants in {} runs",
        results.len()
    );
    assert!(
        faults > results.len() as u64,
        "only {faults} crashes and partitions"
    );
}

#[test]
fn three_hosts() {
    batch(3, 1..51, 15);
}

#[test]
fn five_hosts() {
    batch(5, 1..33, 15);
}

#[test]
fn seven_hosts() {
    batch(7, 1..15, 15);
}

#[test]
fn fifty_hosts() {
    batch(50, 1..2, 3);
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = RunConfig {
        seed: 42,
        hosts: 5,
        mode: Mode::Quorum,
        fault_ms: 10_000,
        faults: true,
    };
    let (a, b) = (super::run(cfg), super::run(cfg));
    assert_eq!(format!("{:?}", a.stats), format!("{:?}", b.stats));
}

/// The checks fire on the true state, whatever the engines think: two
/// running jobs on the capacity-1 resource, a token that does not grow, a
/// quorum grant without a recent round trip to a quorum.
#[test]
fn the_checker_catches_what_it_should() {
    for mode in [Mode::Quorum, Mode::Available] {
        let mut w = World::new(RunConfig {
            seed: 1,
            hosts: 3,
            mode,
            fault_ms: 1000,
            faults: false,
        });
        for h in 0..2 {
            w.start_host(h);
            w.hosts[h].jobs.insert(
                10 + h as u64,
                Job {
                    needs: vec![("e2e".into(), 1)],
                    prio: 0,
                    asked: 0,
                    hold: 100,
                    state: JobState::Running {
                        since: 0,
                        tokens: vec![("e2e".into(), 5 + h as u64)],
                        deadline: None,
                        stopping: false,
                    },
                },
            );
        }
        // Available mode counts only hosts that know each other, hold
        // each other live and have been connected for T_heal: handshakes
        // every 50 ms until then.
        let end = w.check.t_heal + 1;
        for t in (0..=end).step_by(50) {
            w.now = t;
            for (a, b) in [(0, 1), (1, 0)] {
                let syn = w.net.syn(a, b);
                let (syn_ack, _) = w.net.deliver(t, syn);
                let (ack, _) = w.net.deliver(t, syn_ack.expect("no SynAck"));
                w.net.deliver(t, ack.expect("no Ack"));
            }
            w.topology_changed();
        }
        w.now = end;
        w.topology_changed();
        assert_eq!(w.hosts[1].life, Life::Up);
        w.check_grant(1, 11, &[("e2e".into(), 6)]);
        let v = w.check.violation.take().expect("double grant not caught");
        assert!(v.invariant.starts_with("capacity"), "{}", v.invariant);
        // And a token that does not grow is caught in quorum mode.
        if mode == Mode::Quorum {
            w.check_stop(0, 10, End::Done);
            w.hosts[0].jobs.clear();
            w.check_grant(1, 11, &[("e2e".into(), 6)]);
            let v = w.check.violation.take().expect("stale token not caught");
            assert!(v.invariant.starts_with("fencing"), "{}", v.invariant);
            // And a grant on a host nobody has exchanged values with: no
            // member can have echoed its lease.
            w.hosts[1].jobs.clear();
            w.check_grant(2, 12, &[("e2e".into(), 8)]);
            let v = w
                .check
                .violation
                .take()
                .expect("grant without a quorum not caught");
            assert!(
                v.invariant.starts_with("no minority grants"),
                "{}",
                v.invariant
            );
        }
    }
}
