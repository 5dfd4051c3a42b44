//! `sc sim-dlock`: run a batch of seeds (in parallel, results in seed
//! order), print every violation with its seed and trace tail, and a
//! summary table per mode.
//!
//! For digging into one seed: `SC_SIM_TRACE=1` prints every traced event
//! (grants, stops, faults) as it happens, `SC_SIM_VERBOSE=1` a line of
//! counters per run.

use super::super::Mode;
use super::world::{RunConfig, RunResult};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimMode {
    Quorum,
    Available,
    /// Every seed in both modes.
    Both,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// How many seeds to run (in each mode).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed; a violation names the seed to rerun with --seeds 1.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Hosts at the start (2 to 50); available mode adds up to 3 joiners.
    #[arg(long, default_value_t = 5)]
    pub hosts: usize,
    #[arg(long, value_enum, default_value_t = SimMode::Both)]
    pub mode: SimMode,
    /// Simulated seconds of load and faults; a quiet tail follows.
    #[arg(long, default_value_t = 30)]
    pub secs: u64,
    /// Load only, no faults.
    #[arg(long)]
    pub no_faults: bool,
    /// Runs in parallel (default: the number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run every seed even after a violation.
    #[arg(long)]
    pub keep_going: bool,
}

/// Totals over a batch of one mode.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub runs: u64,
    pub grants: u64,
    pub handovers: u64,
    pub handover_ms: Vec<u64>,
    pub preemptions: u64,
    pub lost_leases: u64,
    pub stopper_kills: u64,
    pub self_downs: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub token_regressions: u64,
    pub minority_grants: u64,
    pub blackouts: u64,
    pub detector_flaps: u64,
    pub fencing_after_clock_step: u64,
    pub violations: u64,
    pub sim_ms: u64,
    pub max_drain_ms: u64,
    pub max_wait_ms: u64,
}

impl Summary {
    pub fn add(&mut self, r: &RunResult) {
        let s = &r.stats;
        self.runs += 1;
        self.grants += s.grants;
        self.handovers += s.handovers;
        self.handover_ms.extend(&s.handover_ms);
        self.preemptions += s.preemptions;
        self.lost_leases += s.lost_leases;
        self.stopper_kills += s.stopper_kills;
        self.self_downs += s.self_downs;
        self.crashes += s.crashes;
        self.partitions += s.partitions;
        self.token_regressions += s.token_regressions;
        self.minority_grants += s.minority_grants;
        self.blackouts += s.blackouts;
        self.detector_flaps += s.detector_flaps;
        self.fencing_after_clock_step += s.fencing_after_clock_step;
        self.violations += u64::from(r.violation.is_some());
        self.sim_ms += s.sim_ms;
        self.max_drain_ms = self.max_drain_ms.max(s.drain_ms);
        self.max_wait_ms = self.max_wait_ms.max(s.max_wait_ms);
    }

    fn pct(&self, p: usize) -> u64 {
        let mut v = self.handover_ms.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0;
        }
        v[(v.len() - 1) * p / 100]
    }

    /// (column, value) pairs of one table row.
    fn cells(&self, mode: Mode, hosts: usize, wall: Duration) -> Vec<(&'static str, String)> {
        vec![
            ("mode", mode.as_str().to_string()),
            ("hosts", hosts.to_string()),
            ("runs", self.runs.to_string()),
            ("grants", self.grants.to_string()),
            ("hand-overs", self.handovers.to_string()),
            (
                "hand-over p50/p99 ms",
                format!("{}/{}", self.pct(50), self.pct(99)),
            ),
            ("preemptions", self.preemptions.to_string()),
            ("lost leases", self.lost_leases.to_string()),
            ("stopper kills", self.stopper_kills.to_string()),
            ("self-down", self.self_downs.to_string()),
            ("crashes", self.crashes.to_string()),
            ("partitions", self.partitions.to_string()),
            ("blackouts", self.blackouts.to_string()),
            ("detector flaps", self.detector_flaps.to_string()),
            ("token regressions K=2", self.token_regressions.to_string()),
            (
                "K=1 regressions after clock steps",
                self.fencing_after_clock_step.to_string(),
            ),
            ("minority grants", self.minority_grants.to_string()),
            (
                "max wait s",
                format!("{:.1}", self.max_wait_ms as f64 / 1000.0),
            ),
            (
                "max drain s",
                format!("{:.1}", self.max_drain_ms as f64 / 1000.0),
            ),
            ("violations", self.violations.to_string()),
            ("sim s", (self.sim_ms / 1000).to_string()),
            ("wall s", format!("{:.1}", wall.as_secs_f64())),
        ]
    }

    pub fn header() -> String {
        let names: Vec<&str> = Summary::default()
            .cells(Mode::Quorum, 0, Duration::ZERO)
            .into_iter()
            .map(|c| c.0)
            .collect();
        format!("| {} |\n|{}", names.join(" | "), "---|".repeat(names.len()))
    }

    pub fn row(&self, mode: Mode, hosts: usize, wall: Duration) -> String {
        let values: Vec<String> = self
            .cells(mode, hosts, wall)
            .into_iter()
            .map(|c| c.1)
            .collect();
        format!("| {} |", values.join(" | "))
    }
}

/// Run `configs` on `jobs` threads; results come back in input order.
/// With `stop_early`, runs not yet started are skipped after a violation.
pub fn run_batch(configs: &[RunConfig], jobs: usize, stop_early: bool) -> Vec<RunResult> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let out: Mutex<Vec<Option<RunResult>>> = Mutex::new(vec![None; configs.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= configs.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = super::run(configs[i]);
                    if r.violation.is_some() && stop_early {
                        stop.store(true, Ordering::Relaxed);
                    }
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// A violation as printed: seed, invariant, detail, trace tail, rerun line.
pub fn describe(r: &RunResult) -> String {
    let mut s = String::new();
    let Some(v) = &r.violation else { return s };
    let c = &r.config;
    let _ = writeln!(
        s,
        "VIOLATION seed {} ({} mode, {} hosts) at {} ms: {}\n{}\ntrace tail:",
        c.seed,
        c.mode.as_str(),
        c.hosts,
        v.at_ms,
        v.invariant,
        v.detail
    );
    for line in &v.trace {
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(
        s,
        "rerun: sc sim-dlock --first-seed {} --seeds 1 --hosts {} --mode {} --secs {}{}",
        c.seed,
        c.hosts,
        c.mode.as_str(),
        c.fault_ms / 1000,
        if c.faults { "" } else { " --no-faults" }
    );
    s
}

pub fn main(args: SimArgs) -> ExitCode {
    if !(2..=50).contains(&args.hosts) || args.seeds == 0 || args.secs == 0 {
        eprintln!("sim-dlock: --hosts must be 2 to 50, --seeds and --secs at least 1");
        return ExitCode::from(2);
    }
    let modes: &[Mode] = match args.mode {
        SimMode::Quorum => &[Mode::Quorum],
        SimMode::Available => &[Mode::Available],
        SimMode::Both => &[Mode::Quorum, Mode::Available],
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut rows = Vec::new();
    let mut all = Vec::new();
    let mut failed = false;
    for &mode in modes {
        let configs: Vec<RunConfig> = (0..args.seeds)
            .map(|i| RunConfig {
                seed: args.first_seed + i,
                hosts: args.hosts,
                mode,
                fault_ms: args.secs * 1000,
                faults: !args.no_faults,
            })
            .collect();
        let started = Instant::now();
        let results = run_batch(&configs, jobs, !args.keep_going);
        let mut sum = Summary::default();
        all.extend(results.iter().cloned());
        for r in &results {
            sum.add(r);
            if r.violation.is_some() {
                failed = true;
                print!("{}", describe(r));
            }
        }
        rows.push(sum.row(mode, args.hosts, started.elapsed()));
        if failed && !args.keep_going {
            break;
        }
    }
    println!("{}", Summary::header());
    for r in rows {
        println!("{r}");
    }
    if std::env::var_os("SC_SIM_VERBOSE").is_some() {
        for r in &all {
            let s = &r.stats;
            eprintln!(
                "seed {} {}: sim {} ms, events {}, steps {}, publishes {}, messages {}, grants {}, restarts {}",
                r.config.seed,
                r.config.mode.as_str(),
                s.sim_ms,
                s.events,
                s.steps,
                s.publishes,
                s.messages,
                s.grants,
                s.restarts
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
