//! `sc-chaos`: start N real `sc daemon`s, each a host of its own (network
//! namespaces as root, else 127.0.0.x), run a contending `sc exec --needs`
//! workload from every host, kill, stop and partition them on a seeded
//! schedule, and check the cluster-resource invariants from the jobs' own
//! records (issue 6; CLUSTER-LOCKS §6). Exits non-zero on any violation.

mod check;
mod faults;
mod guard;
mod hosts;
mod lab;
mod net;
mod plan;
mod records;
mod report;
mod run;
mod stamps;
mod topology;
mod util;
mod workload;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "sc-chaos", about = "Chaos harness for sc cluster resources")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Quorum,
    Available,
}

#[derive(Clone, Copy, ValueEnum)]
enum NetArg {
    Netns,
    Loopback,
}

#[derive(Subcommand)]
enum Verb {
    /// One run: faults for DURATION, a quiet tail, then the report.
    Run {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "90s", value_parser = util::parse_duration)]
        duration: Duration,
        /// Default: from the clock (printed, to rerun).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_enum, default_value = "quorum")]
        mode: ModeArg,
        /// Default: netns when root, else loopback.
        #[arg(long, value_enum)]
        net: Option<NetArg>,
        /// Mean time between faults.
        #[arg(long, default_value = "3s", value_parser = util::parse_duration)]
        fault_every: Duration,
        /// The quiet tail after the faults (plus the outstanding jobs' holds).
        #[arg(long, default_value = "20s", value_parser = util::parse_duration)]
        tail: Duration,
        /// Available mode: hosts connected this long count as one side.
        #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
        heal_bound: Duration,
        /// Liveness: how long the whole cluster must have been healthy
        /// (T_down + 5 s: a host back from a fault may first be voted DOWN).
        #[arg(long, default_value = "10s", value_parser = util::parse_duration)]
        stable_bound: Duration,
        /// Liveness: the longest a job may wait while its resources are free.
        #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
        liveness_bound: Duration,
        /// Clients in flight per host at most.
        #[arg(long, default_value_t = 5)]
        max_outstanding: usize,
        /// Disruptive faults (all but client kills) in force at once at most.
        #[arg(long, default_value_t = 1)]
        max_faults: usize,
        /// Keep the run dir (logs, state dirs, stamp log) afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Remove what crashed runs left (their namespaces, processes, cgroups
    /// and run dirs); never touches a live run's.
    Clean,
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `$VAR`, else `name` next to this executable, else in the workspace's
/// target/debug and target/release.
fn find_bin(var: &str, name: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{var}={} is not a file", p.display()))
        };
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(d) = exe.parent()
    {
        tried.push(d.join(name));
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target");
    tried.push(ws.join("debug").join(name));
    tried.push(ws.join("release").join(name));
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "cannot find {name} (tried {}); build it (cargo build -p sidecar -p sc-tests --bins) or set {var}",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::install_signal_handlers();
    match cli.verb {
        Verb::Clean => {
            for line in guard::clean_stale() {
                eprintln!("removed {line}");
            }
            ExitCode::SUCCESS
        }
        Verb::Run {
            nodes,
            duration,
            seed,
            mode,
            net,
            fault_every,
            tail,
            heal_bound,
            stable_bound,
            liveness_bound,
            max_outstanding,
            max_faults,
            keep,
        } => {
            if nodes < 2 {
                eprintln!("sc-chaos: --nodes must be at least 2");
                return ExitCode::from(2);
            }
            let net = match net {
                Some(NetArg::Netns) => net::NetKind::Netns,
                Some(NetArg::Loopback) => net::NetKind::Loopback,
                None if is_root() => net::NetKind::Netns,
                None => net::NetKind::Loopback,
            };
            if net == net::NetKind::Netns && !is_root() {
                eprintln!("sc-chaos: --net netns needs root");
                return ExitCode::from(2);
            }
            let seed = seed.unwrap_or_else(|| util::mono_ns() ^ std::process::id() as u64);
            let mode = match mode {
                ModeArg::Quorum => hosts::Mode::Quorum,
                ModeArg::Available => hosts::Mode::Available,
            };
            let (sc, stamp) = match (find_bin("SC_BIN", "sc"), find_bin("SC_STAMP", "sc-stamp")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("sc-chaos: {e}");
                    return ExitCode::from(2);
                }
            };
            for line in guard::clean_stale() {
                eprintln!("sc-chaos: removed what a crashed run left: {line}");
            }
            let rerun = format!(
                "sc-chaos run --nodes {nodes} --duration {}s --seed {seed} --mode {} --net {} --fault-every {}ms --max-faults {max_faults}",
                duration.as_secs(),
                mode.as_str(),
                if net == net::NetKind::Netns {
                    "netns"
                } else {
                    "loopback"
                },
                fault_every.as_millis()
            );
            let opts = run::Opts {
                nodes,
                duration,
                seed,
                mode,
                net,
                fault_every,
                tail,
                heal_bound,
                stable_bound,
                liveness_bound,
                max_outstanding,
                max_faults,
                keep,
                sc,
                stamp,
                rerun,
            };
            ExitCode::from(run::run(&opts) as u8)
        }
    }
}
