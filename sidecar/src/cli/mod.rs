//! Command-line definition and dispatch. Parsing (clap) never touches the
//! socket; each verb lives in its own module.

mod board;
pub(crate) mod child;
mod drain;
mod exec;
mod exec_args;
pub mod front;
mod generate;
mod guard;
mod history;
mod needs;
mod reattach;
mod report;
pub(crate) mod service;
mod stopper;
mod verbs;

use crate::config::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for sc's own errors (as `env`, `docker run`).
pub const EXIT_SC_ERROR: u8 = 125;

#[derive(Debug, Parser)]
#[command(
    name = "sc",
    version,
    about = "A sidecar supervisor for shared development hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    #[command(about = EXEC_ABOUT)]
    Exec(ExecArgs),
    /// Run the sidecar daemon in the foreground.
    Daemon(DaemonArgs),
    /// List queued and running jobs.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Show the host: memory, cores, reservations, cgroup backend.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: a queued one is dropped, a running one is stopped
    /// (SIGTERM, then SIGKILL after the grace period).
    Cancel { id: u64 },
    /// Freeze a running job (cgroup freezer; no progress is lost).
    Pause { id: u64 },
    /// Thaw a paused job.
    Resume { id: u64 },
    /// Stop admitting jobs on this host: running jobs finish, queued ones
    /// wait ("host is draining"), waiting --needs jobs give their cluster
    /// claims back. Root or the daemon's own user; survives a restart.
    Drain {
        /// Return only once no job is running any more.
        #[arg(long)]
        wait: bool,
    },
    /// Admit jobs again after `sc drain`.
    Undrain,
    /// Long-running services: supervised, probed, restarted.
    Service {
        #[command(subcommand)]
        verb: service::ServiceVerb,
    },
    /// Show a service's log (rotated files in the daemon's state dir).
    Logs {
        name: String,
        /// Keep printing what the service writes.
        #[arg(short, long)]
        follow: bool,
        /// How many lines of the end to show first.
        #[arg(short = 'n', long = "lines", default_value = "10")]
        lines: u32,
    },
    /// The cluster board: every host's headroom, jobs and services.
    Board {
        #[arg(long)]
        json: bool,
        /// Redraw every second.
        #[arg(long)]
        watch: bool,
    },
    /// Cluster certificates: `init-ca`, `issue`.
    Cluster {
        #[command(subcommand)]
        verb: board::ClusterVerb,
    },
    /// Finished jobs, oldest first: command, outcome, peak memory, CPU,
    /// wall and wait times.
    History {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Show the last N jobs (0: all that are kept).
        #[arg(short = 'n', long = "lines", default_value = "20")]
        n: u32,
    },
    /// Configuration file tools.
    Config {
        #[command(subcommand)]
        verb: ConfigVerb,
    },
    /// Print a shell completion script on stdout (bash, zsh or fish).
    Completions {
        #[arg(value_enum)]
        shell: generate::CompletionShell,
    },
    /// Print the man page sc(1) (roff) on stdout: `sc man | man -l -`.
    Man,
    /// Benchmark of the cluster gossip (docs/benchmarks.md).
    #[command(hide = true)]
    BenchGossip(crate::cluster::bench::BenchGossipArgs),
    /// Seeded simulation of the cluster-resource rule (docs/cluster-resources.md).
    #[command(hide = true)]
    SimDlock(crate::dlock::sim::SimArgs),
    /// The second stopper of a job holding cluster resources (started by
    /// `sc exec`; see cli/guard.rs).
    #[command(hide = true)]
    StopGuard(guard::GuardArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigVerb {
    /// Check a config file; errors name the file, line and key.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Config file (default: /etc/sc/sidecar.toml when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Socket to listen on (overrides the config).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// A per-user daemon started by `sc exec`: ignore the system config.
    #[arg(long, hide = true)]
    pub private: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Memory to reserve for admission, also the hard limit unless
    /// --mem-limit is given (512M, 2G, 1.5GiB).
    #[arg(long, value_parser = parse_size)]
    pub mem: Option<u64>,
    /// Hard memory limit (memory.max); the job is OOM-killed above it.
    #[arg(long, value_parser = parse_size)]
    pub mem_limit: Option<u64>,
    /// Soft memory limit (memory.high): reclaim pressure above it.
    #[arg(long, value_parser = parse_size)]
    pub mem_high: Option<u64>,
    /// CPUs to reserve and cap the job at (1.5 = one and a half cores).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids: Option<u64>,
    /// low, normal, high or a number (-1000..=1000); higher runs first.
    #[arg(long, value_parser = parse_priority, default_value = "normal")]
    pub priority: i32,
    /// A name for the job in `sc ps`.
    #[arg(long)]
    pub name: Option<String>,
    /// Stop the job after it has run this long (90s, 5m); exit status 124.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Wait until these services are ready (NAME[,NAME...]).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub wait_for: Vec<String>,
    /// Give up waiting for --wait-for services after this long (exit 125).
    #[arg(long, value_parser = parse_duration)]
    pub wait_timeout: Option<std::time::Duration>,
    /// Wait for cluster-wide resources defined in the daemons' [resources]
    /// (NAME[:UNITS][,...]; units default to 1; repeatable). The job gets
    /// SC_RESOURCE (the names) and SC_FENCE_TOKEN (its fencing tokens, in the
    /// same order; also SC_FENCE_TOKEN_<NAME>) in its environment, and is
    /// stopped if its lease on them is no longer renewed.
    #[arg(long, value_delimiter = ',', value_name = "NAME[:UNITS]", value_parser = needs::parse_need)]
    pub needs: Vec<sc_protocol::Need>,
    /// Lease a free TCP port of the host for the job's life (repeatable):
    /// $PORT and $SC_PORT_NAME (the first), $SC_PORT_<NAME> each.
    #[arg(long = "port", value_name = "NAME")]
    pub ports: Vec<String>,
    /// Report state changes as JSON lines on stderr.
    #[arg(long)]
    pub json: bool,
    /// Never freeze this job for memory pressure or to give its CPUs to a
    /// higher-priority job (it may still be paused by hand with `sc pause`).
    #[arg(long)]
    pub no_preempt: bool,
    /// Say on stderr which memory reservation admission uses and why
    /// (--mem, learned from earlier runs, or the default), then run.
    #[arg(long)]
    pub explain: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    sc_protocol::units::parse_size(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    sc_protocol::units::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_cpus(s: &str) -> Result<u32, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: expected a number such as 2 or 1.5"))?;
    if !(v.is_finite() && v > 0.0 && v <= 4096.0) {
        return Err(format!("invalid CPU count {s:?}: must be more than 0"));
    }
    Ok((v * 1000.0).round() as u32)
}

fn parse_priority(s: &str) -> Result<i32, String> {
    use sc_protocol::{PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_MAX_ABS, PRIORITY_NORMAL};
    match s {
        "low" => Ok(PRIORITY_LOW),
        "normal" => Ok(PRIORITY_NORMAL),
        "high" => Ok(PRIORITY_HIGH),
        _ => match s.parse::<i32>() {
            Ok(n) if n.abs() <= PRIORITY_MAX_ABS => Ok(n),
            _ => Err(format!(
                "invalid priority {s:?}: expected low, normal, high or a number from -{PRIORITY_MAX_ABS} to {PRIORITY_MAX_ABS}"
            )),
        },
    }
}

/// What `sc exec` says of itself, in `sc --help` and `sc exec --help`.
const EXEC_ABOUT: &str = "Run a command once the host has headroom, inside a cgroup with limits";

/// `sc` with `exec` as its only verb, built like the derived [`Cli`].
/// Clap's derive builds every verb's definition before it parses (a fifth
/// of the time `sc` takes to start here), and `sc exec` is the verb whose
/// start is on the user's path every time; a test checks that both
/// definitions of `exec` render the same help.
fn exec_only_command() -> clap::Command {
    clap::Command::new("sc")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand(ExecArgs::augment_args(
            clap::Command::new("exec").about(EXEC_ABOUT),
        ))
}

/// `sc exec ...` parsed by hand when plain (`exec_args.rs`), else with
/// [`exec_only_command`]; `None` for other verbs.
fn parse_exec_only(args: &[std::ffi::OsString]) -> Option<Result<ExecArgs, clap::Error>> {
    if args.get(1).is_none_or(|verb| verb != "exec") {
        return None;
    }
    if let Some(fast) = exec_args::parse(args) {
        return Some(Ok(fast));
    }
    Some(parse_exec_with_clap(args))
}

/// `sc exec ...` parsed with [`exec_only_command`] alone.
fn parse_exec_with_clap(args: &[std::ffi::OsString]) -> Result<ExecArgs, clap::Error> {
    use clap::FromArgMatches;
    exec_only_command()
        .try_get_matches_from(args)
        .and_then(|m| match m.subcommand() {
            Some(("exec", sub)) => ExecArgs::from_arg_matches(sub),
            _ => Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        })
}

fn print_parse_error(e: &clap::Error) -> ExitCode {
    let code = if e.use_stderr() { EXIT_SC_ERROR } else { 0 };
    let _ = e.print();
    ExitCode::from(code)
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match parse_exec_only(&args) {
        Some(Ok(exec_args)) => return exec::main(exec_args),
        Some(Err(e)) => return print_parse_error(&e),
        None => {}
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => return print_parse_error(&e),
    };
    let result = match cli.verb {
        Verb::Exec(args) => return exec::main(args),
        Verb::Daemon(args) => verbs::daemon(args),
        Verb::Ps { json } => verbs::ps(json),
        Verb::Status { json } => verbs::status(json),
        Verb::History { json, n } => history::history(json, n),
        Verb::Cancel { id } => verbs::control(sc_protocol::Request::Cancel { job: id }),
        Verb::Pause { id } => verbs::control(sc_protocol::Request::Pause { job: id }),
        Verb::Resume { id } => verbs::control(sc_protocol::Request::Resume { job: id }),
        Verb::Drain { wait } => drain::drain(wait),
        Verb::Undrain => verbs::control(sc_protocol::Request::Undrain),
        Verb::Completions { shell } => generate::completions(shell),
        Verb::Man => generate::man(),
        Verb::Service { verb } => service::main(verb),
        Verb::Board { json, watch } => board::board(json, watch),
        Verb::Cluster { verb } => board::cluster(verb),
        Verb::Logs {
            name,
            follow,
            lines,
        } => service::logs(name, follow, lines),
        Verb::Config {
            verb: ConfigVerb::Check { file },
        } => verbs::config_check(&file),
        Verb::BenchGossip(args) => crate::cluster::bench::main(args),
        Verb::SimDlock(args) => return crate::dlock::sim::main(args),
        Verb::StopGuard(args) => return ExitCode::from(guard::main(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("sc: {e:#}");
            ExitCode::from(EXIT_SC_ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// A single-threaded runtime: the CLI does one thing at a time and starts fast.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks the definition (unique ids, valid defaults) only when a
    /// command is built: do it for every subcommand here, not in production.
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The exec-only definition `sc exec` is parsed with must be the same
    /// as the full one: same help, same errors, same parsed arguments.
    #[test]
    fn exec_only_definition_matches_the_full_cli() {
        use clap::CommandFactory;
        exec_only_command().debug_assert();
        let mut full = Cli::command();
        full.build();
        let mut fast = exec_only_command();
        fast.build();
        let help = |c: &mut clap::Command| {
            c.find_subcommand_mut("exec")
                .expect("exec")
                .render_long_help()
                .to_string()
        };
        assert_eq!(help(&mut fast), help(&mut full));
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        for argv in [
            vec![
                "sc",
                "exec",
                "--mem",
                "2G",
                "--needs",
                "e2e:2,gpu",
                "--json",
                "--",
                "make",
                "-j4",
            ],
            vec![
                "sc",
                "exec",
                "--priority",
                "high",
                "--timeout",
                "90s",
                "true",
            ],
        ] {
            // The clap definition itself: parse_exec_only would hand these
            // plain forms to exec_args.rs (tested against clap there).
            let fast = parse_exec_with_clap(&os(&argv)).expect("parses");
            let Verb::Exec(full) = Cli::try_parse_from(&argv).expect("parses").verb else {
                panic!("not exec");
            };
            assert_eq!(format!("{fast:?}"), format!("{full:?}"));
        }
        for argv in [
            vec!["sc", "exec"],
            vec!["sc", "exec", "--mem", "lots", "--", "true"],
            vec!["sc", "exec", "--no-such-flag", "true"],
        ] {
            let fast = parse_exec_with_clap(&os(&argv)).expect_err("refused");
            let routed = parse_exec_only(&os(&argv))
                .expect("exec verb")
                .expect_err("refused");
            assert_eq!(routed.to_string(), fast.to_string(), "{argv:?}");
            let full = Cli::try_parse_from(&argv).expect_err("refused");
            assert_eq!(fast.to_string(), full.to_string(), "{argv:?}");
            assert_eq!(fast.use_stderr(), full.use_stderr());
        }
        assert!(parse_exec_only(&os(&["sc", "ps"])).is_none());
        assert!(parse_exec_only(&os(&["sc"])).is_none());
    }

    #[test]
    fn service_add_flags_parse() {
        let cli = Cli::try_parse_from([
            "sc",
            "service",
            "add",
            "web",
            "--readiness",
            "http://127.0.0.1:3000/",
            "--readiness-period",
            "2s",
            "--liveness",
            "tcp://127.0.0.1:3000",
            "--liveness-failure-threshold",
            "5",
            "--restart",
            "on-failure",
            "--env",
            "A=b",
            "--",
            "pnpm",
            "dev",
        ])
        .unwrap();
        let Verb::Service {
            verb: service::ServiceVerb::Add(a),
        } = cli.verb
        else {
            panic!("not service add");
        };
        let spec = service::spec_of(*a).unwrap();
        assert_eq!(spec.readiness.as_ref().unwrap().period_ms, 2000);
        assert_eq!(spec.liveness.as_ref().unwrap().failure_threshold, 5);
        assert_eq!(spec.restart.policy, sc_protocol::RestartPolicy::OnFailure);
        assert_eq!(spec.argv, vec!["pnpm", "dev"]);
        assert!(
            Cli::try_parse_from([
                "sc",
                "service",
                "add",
                "web",
                "--readiness-period",
                "2s",
                "--",
                "x"
            ])
            .map_err(|e| e.to_string())
            .and_then(|c| match c.verb {
                Verb::Service {
                    verb: service::ServiceVerb::Add(a),
                } => service::spec_of(*a).map(|_| ()).map_err(|e| e.to_string()),
                _ => Ok(()),
            })
            .is_err()
        );
    }
}
