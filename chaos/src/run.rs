//! One chaos run: set up the lab, converge, run workload and faults for the
//! duration, heal everything and let the queues drain (the quiet tail),
//! stop, then judge the records and print the report.

use crate::check::{self, Input, Verdict};
use crate::faults::{Ctl, Nemesis, schedule};
use crate::hosts::{Host, Mode, REATTACH_GRACE, SERVICE, SERVICE_HOST, host_name, make_certs};
use crate::lab::Lab;
use crate::net::{Net, NetKind};
use crate::stamps::StampTail;
use crate::topology::Timeline;
use crate::util::{MS, SEC, interrupted, mono_ns, secs, sleep_unless_interrupted};
use crate::workload::{Setup, Workload};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Opts {
    pub nodes: usize,
    pub duration: Duration,
    pub seed: u64,
    pub mode: Mode,
    pub net: NetKind,
    pub fault_every: Duration,
    pub tail: Duration,
    pub heal_bound: Duration,
    pub stable_bound: Duration,
    pub liveness_bound: Duration,
    pub max_outstanding: usize,
    pub max_faults: usize,
    pub keep: bool,
    pub sc: PathBuf,
    pub stamp: PathBuf,
    pub rerun: String,
}

/// Exit status: 0 all invariants hold, 1 a violation, 2 the harness failed,
/// 130 interrupted.
pub fn run(o: &Opts) -> i32 {
    let mut lab = match Lab::new(o.keep) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sc-chaos: {e}");
            return 2;
        }
    };
    match run_in(o, &mut lab) {
        Ok(code) => code,
        Err(_) if interrupted() => {
            eprintln!("sc-chaos: interrupted; removing everything this run created");
            130
        }
        Err(e) => {
            eprintln!("sc-chaos: harness error: {e}");
            for h in &lab.hosts {
                let log = std::fs::read_to_string(h.log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- last lines of {} daemon log:", h.name);
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
            }
            2
        }
    }
}

fn say(t0: u64, line: &str) {
    eprintln!("[{:>7}] {line}", secs(mono_ns().saturating_sub(t0)));
}

fn run_in(o: &Opts, lab: &mut Lab) -> Result<i32, String> {
    let started = mono_ns();
    let dir = lab.path().to_path_buf();
    eprintln!(
        "sc-chaos: {} hosts, {} mode, {} network, seed {}, {} of faults; run dir {}",
        o.nodes,
        o.mode.as_str(),
        if o.net == NetKind::Netns {
            "netns"
        } else {
            "loopback"
        },
        o.seed,
        secs(o.duration.as_nanos() as u64),
        dir.display()
    );
    let net = Net::setup(o.net, o.nodes, &dir)?;
    let certs = make_certs(&o.sc, &dir, &net)?;
    for (i, c) in certs.iter().enumerate() {
        lab.hosts.push(Host::new(i, &dir, &net, o.mode, c)?);
    }
    let net = Arc::new(Mutex::new(net));
    lab.net = Some(net.clone());
    for i in 0..o.nodes {
        lab.hosts[i].start(&o.sc, &net.lock().unwrap(), i)?;
    }
    for i in 0..o.nodes {
        lab.hosts[i].wait_listening(Duration::from_secs(20))?;
        let subtrees = lab.hosts[i].subtrees(&o.sc, &net.lock().unwrap(), i);
        crate::guard::note_cgroups(&dir, &subtrees);
        lab.subtrees.extend(subtrees);
    }
    converge(o, lab, &net)?;
    say(started, &format!("{} daemons up and converged", o.nodes));

    let log = dir.join("stamps.log");
    let setup = Setup {
        sc: o.sc.clone(),
        stamp: o.stamp.clone(),
        log: log.clone(),
        sockets: lab.hosts.iter().map(|h| h.socket.clone()).collect(),
        dirs: lab.hosts.iter().map(|h| h.dir.clone()).collect(),
        service_at: format!("{SERVICE}@{}", host_name(SERVICE_HOST)),
        max_outstanding: o.max_outstanding,
    };
    let t0 = mono_ns();
    let mut timeline = Timeline::new(o.nodes, t0);
    lab.workload = Some(Workload::start(setup, net.clone(), o.seed));
    let dur = o.duration.as_nanos() as u64;
    let plan = schedule(
        o.seed,
        dur,
        o.fault_every.as_nanos() as u64,
        net.lock().unwrap().one_way_possible(),
    );
    let mut nemesis = Nemesis::new(plan, o.nodes, o.max_faults);
    say(
        t0,
        &format!("workload started; {} faults planned", nemesis.planned()),
    );
    let mut stamps = StampTail::new(log.clone());
    let mut next_summary = t0 + 5 * SEC;
    while mono_ns() < t0 + dur {
        if interrupted() {
            return Err("interrupted".into());
        }
        stamps.poll();
        let workload = lab.workload.as_ref().unwrap();
        let mut ctl = Ctl {
            sc: &o.sc,
            hosts: &mut lab.hosts,
            net: &net,
            workload,
            stamps: &stamps,
            timeline: &mut timeline,
        };
        for line in nemesis.step(t0, &mut ctl) {
            say(t0, &line);
        }
        if mono_ns() >= next_summary {
            next_summary += 5 * SEC;
            say(t0, &live(&nemesis, &stamps, lab));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let faults_end = mono_ns();

    // The quiet tail: heal everything, no new jobs, let the queues drain.
    {
        let workload = lab.workload.as_ref().unwrap();
        workload.stop_spawning();
        let mut ctl = Ctl {
            sc: &o.sc,
            hosts: &mut lab.hosts,
            net: &net,
            workload,
            stamps: &stamps,
            timeline: &mut timeline,
        };
        nemesis.heal_all(&mut ctl);
    }
    let left = lab.workload.as_ref().unwrap().outstanding();
    // The drain bound: the tail, plus the outstanding jobs' hold times
    // run one after another (the worst case for the capacity-1 resource).
    let holds: u64 = left.iter().map(|c| c.spec.hold_ms).sum();
    let bound = o.tail.as_nanos() as u64 + (holds * MS).min(120 * SEC);
    say(
        t0,
        &format!(
            "faults stopped; all healed; quiet tail: {} clients to drain within {}",
            left.len(),
            secs(bound)
        ),
    );
    let tail_end = mono_ns() + bound;
    let mut undrained = Vec::new();
    loop {
        stamps.poll();
        let left = lab.workload.as_ref().unwrap().outstanding();
        if left.is_empty() {
            say(t0, "all queues drained");
            break;
        }
        if mono_ns() >= tail_end {
            undrained = left.iter().map(|c| c.spec.label.clone()).collect();
            crate::records::dump_views(o, lab, &net, "stuck");
            // Their daemons kill the jobs when the clients go: give them
            // the time below before the daemons stop.
            lab.workload
                .as_ref()
                .unwrap()
                .kill_all_and_reap(Duration::from_secs(5));
            say(
                t0,
                &format!(
                    "{} clients still not done after the tail: {}",
                    left.len(),
                    undrained.join(" ")
                ),
            );
            break;
        }
        if mono_ns() >= next_summary {
            next_summary += 5 * SEC;
            say(t0, &live(&nemesis, &stamps, lab));
        }
        if !sleep_unless_interrupted(Duration::from_millis(100)) {
            return Err("interrupted".into());
        }
    }
    wait_for_adopted_jobs(o, lab, &net, t0);
    // Let the daemons record the last ends in their history stores.
    sleep_unless_interrupted(Duration::from_secs(2));
    stamps.poll();
    lab.stop_all(Duration::from_secs(15));
    let orphans = lab.orphans();

    let clients = lab.workload.as_ref().unwrap().records();
    let holds = sc_tests::read_holds(&log);
    crate::records::save_records(&dir, &clients, &nemesis, &timeline, t0);
    let histories: Vec<_> = lab
        .hosts
        .iter()
        .map(|h| check::history_of(&h.state_dir))
        .collect();
    let leftover: Vec<Vec<String>> = lab
        .hosts
        .iter()
        .map(|h| crate::records::job_records(&h.state_dir))
        .collect();
    let input = Input {
        mode: o.mode,
        n: o.nodes,
        holds: &holds,
        clients: &clients,
        timeline: &timeline,
        heal_bound: o.heal_bound.as_nanos() as u64,
        stable_bound: o.stable_bound.as_nanos() as u64,
        liveness_bound: o.liveness_bound.as_nanos() as u64,
        histories: &histories,
        leftover_records: &leftover,
        undrained: &undrained,
        restarted: &stamps.restarted,
        t0,
        faults_end,
    };
    let mut verdicts: Vec<Verdict> = check::check_all(&input);
    verdicts.push(orphans);
    let restarts: u32 = lab
        .hosts
        .iter()
        .map(|h| h.incarnations.saturating_sub(1))
        .sum();
    let report = crate::report::render(&crate::report::Summary {
        header: vec![
            format!(
                "{} hosts, {} mode, {} network; {} of faults, then a quiet tail of {}",
                o.nodes,
                o.mode.as_str(),
                if o.net == NetKind::Netns {
                    "netns"
                } else {
                    "loopback"
                },
                secs(dur),
                secs(mono_ns().saturating_sub(faults_end))
            ),
            format!(
                "daemon restarts: {restarts}; topology changes: {}; wall time {}",
                timeline.points.len() - 1,
                secs(mono_ns() - started)
            ),
        ],
        faults: &nemesis.counts,
        fault_errors: &nemesis.errors,
        clients: &clients,
        holds: &holds,
        verdicts: &verdicts,
        seed: o.seed,
        rerun: o.rerun.clone(),
    });
    print!("{report}");
    let fail = verdicts.iter().any(|v| !v.pass);
    if fail && !o.keep {
        eprintln!("sc-chaos: violations found; rerun with --keep to keep the logs and state dirs");
    }
    lab.teardown();
    Ok(if fail { 1 } else { 0 })
}

/// Wait until every daemon's board lists every host live.
fn converge(o: &Opts, lab: &mut Lab, net: &Arc<Mutex<Net>>) -> Result<(), String> {
    let names: Vec<String> = (0..o.nodes).map(host_name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let end = mono_ns() + 60 * SEC;
    for i in 0..o.nodes {
        loop {
            let board = lab.hosts[i].query(&o.sc, &net.lock().unwrap(), i, &["board", "--json"]);
            if board.is_some_and(|b| sc_tests::converged(&b, &names)) {
                break;
            }
            if mono_ns() > end {
                return Err(format!(
                    "{} did not see every host live within 60 s",
                    host_name(i)
                ));
            }
            if !sleep_unless_interrupted(Duration::from_millis(200)) {
                return Err("interrupted".into());
            }
        }
    }
    Ok(())
}

/// One status line for stderr.
fn live(nemesis: &Nemesis, stamps: &StampTail, lab: &mut Lab) -> String {
    let faults: u32 = nemesis.counts.values().sum();
    let clients = lab
        .workload
        .as_ref()
        .map(|w| w.outstanding().len())
        .unwrap_or(0);
    let up = lab
        .hosts
        .iter_mut()
        .map(|h| h.alive() && !h.stopped)
        .filter(|u| *u)
        .count();
    format!(
        "faults {faults} | jobs started {}, ended {}, running {} | clients outstanding {clients} | e2e hand-overs {} | daemons up {up}/{}",
        stamps.starts,
        stamps.ends,
        stamps.running(mono_ns()),
        stamps.handovers,
        lab.hosts.len()
    )
}

/// Jobs a restarted daemon adopted and whose `sc exec` is gone (it was
/// killed, or gave up after a lost lease) end only when the daemon's
/// re-attach grace runs out, as "abandoned". Stopping the daemons before
/// that would leave their records and groups behind — a teardown artefact,
/// not a lost job — so wait for them, a little longer than the grace.
fn wait_for_adopted_jobs(o: &Opts, lab: &Lab, net: &Arc<Mutex<Net>>, t0: u64) {
    let deadline = mono_ns() + (REATTACH_GRACE + Duration::from_secs(5)).as_nanos() as u64;
    let mut said = false;
    loop {
        let adopted: usize = lab
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let ps = h.query(&o.sc, &net.lock().unwrap(), i, &["ps", "--json"]);
                ps.and_then(|v| {
                    v["jobs"].as_array().map(|jobs| {
                        jobs.iter()
                            .filter(|j| j["state"].as_str() == Some("Detached"))
                            .count()
                    })
                })
                .unwrap_or(0)
            })
            .sum();
        if adopted == 0 {
            return;
        }
        if mono_ns() >= deadline {
            say(
                t0,
                &format!("{adopted} adopted jobs still waiting for their sc exec"),
            );
            return;
        }
        if !said {
            said = true;
            say(
                t0,
                &format!(
                    "waiting for {adopted} adopted jobs whose sc exec is gone (re-attach grace)"
                ),
            );
        }
        if !sleep_unless_interrupted(Duration::from_millis(200)) {
            return;
        }
    }
}
