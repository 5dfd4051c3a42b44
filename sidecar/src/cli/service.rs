//! `sc service add|start|stop|restart|remove|ls` and `sc logs`: the
//! definition flags (parsed into a `ServiceSpec` without touching the
//! socket) and the thin verbs that send it.

use crate::client;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sc_protocol::units::{format_duration, format_size};
use sc_protocol::{
    ProbeSpec, ProbeTarget, Request, Response, RestartPolicy, RestartSpec, ServiceSpec, ServiceView,
};
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ServiceVerb {
    /// Define a service (persisted in the state dir) and start it.
    Add(Box<AddArgs>),
    /// Start a stopped service.
    Start { name: String },
    /// Stop a service: SIGTERM to its cgroup, SIGKILL after the grace period.
    Stop { name: String },
    /// Stop and start again; also re-arms a service the crash-loop breaker failed.
    Restart { name: String },
    /// Stop and forget a service added at run time.
    Remove { name: String },
    /// List services: state, ready, restarts, last reason, uptime, pid, memory.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

fn size(s: &str) -> Result<u64, String> {
    sc_protocol::units::parse_size(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    sc_protocol::units::parse_duration(s).map_err(|e| e.to_string())
}

fn probe(s: &str) -> Result<ProbeTarget, String> {
    s.parse::<ProbeTarget>().map_err(|e| e.to_string())
}

/// Timing flags of one probe (`--readiness-period 2s`, ...).
macro_rules! probe_args {
    ($name:ident, $kind:literal) => {
        #[derive(Debug, Args, Default)]
        pub struct $name {
            #[arg(id = concat!($kind, "_period"), long = concat!($kind, "-period"), value_parser = duration, value_name = "DURATION", help = concat!("How often the ", $kind, " probe runs (default 10s)"))]
            pub period: Option<Duration>,
            #[arg(id = concat!($kind, "_timeout"), long = concat!($kind, "-timeout"), value_parser = duration, value_name = "DURATION", help = concat!("Timeout of one ", $kind, " probe (default 1s)"))]
            pub timeout: Option<Duration>,
            #[arg(id = concat!($kind, "_initial_delay"), long = concat!($kind, "-initial-delay"), value_parser = duration, value_name = "DURATION", help = concat!("Wait this long after start before the first ", $kind, " probe (default 0)"))]
            pub initial_delay: Option<Duration>,
            #[arg(id = concat!($kind, "_success_threshold"), long = concat!($kind, "-success-threshold"), value_name = "N", help = concat!("Consecutive successes for the ", $kind, " probe to pass (default 1)"))]
            pub success_threshold: Option<u32>,
            #[arg(id = concat!($kind, "_failure_threshold"), long = concat!($kind, "-failure-threshold"), value_name = "N", help = concat!("Consecutive failures for the ", $kind, " probe to fail (default 3)"))]
            pub failure_threshold: Option<u32>,
        }
    };
}
probe_args!(StartupTiming, "startup");
probe_args!(ReadinessTiming, "readiness");
probe_args!(LivenessTiming, "liveness");

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Service name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// Working directory (default: the current one).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user (root only; default: you).
    #[arg(long)]
    pub user: Option<String>,
    /// Lease a free TCP port for it, held while it is defined: $PORT and
    /// $SC_PORT_NAME (the first), $SC_PORT_<NAME> each (repeatable).
    #[arg(long = "port", value_name = "NAME")]
    pub ports: Vec<String>,
    #[arg(long, value_parser = size)]
    pub mem_limit: Option<u64>,
    #[arg(long, value_parser = super::parse_cpus)]
    pub cpus: Option<u32>,
    #[arg(long)]
    pub pids: Option<u64>,
    /// always (default), on-failure or never.
    #[arg(long, default_value = "always")]
    pub restart: RestartPolicy,
    /// First restart delay, doubling after each failure (default 1s).
    #[arg(long, value_parser = duration)]
    pub backoff_initial: Option<Duration>,
    /// Longest restart delay (default 5m).
    #[arg(long, value_parser = duration)]
    pub backoff_max: Option<Duration>,
    /// Running this long resets the delay to the first one (default 10m).
    #[arg(long, value_parser = duration)]
    pub reset_after: Option<Duration>,
    /// More failures than this within --failure-window mark it failed (default 5).
    #[arg(long)]
    pub max_failures: Option<u32>,
    #[arg(long, value_parser = duration)]
    pub failure_window: Option<Duration>,
    /// Between SIGTERM and SIGKILL on stop (default 10s).
    #[arg(long, value_parser = duration)]
    pub stop_grace: Option<Duration>,
    /// Gates the other probes until it passes: http://HOST:PORT/PATH, tcp://HOST:PORT, exec:COMMAND.
    #[arg(long, value_parser = probe, value_name = "PROBE")]
    pub startup: Option<ProbeTarget>,
    /// Sets ready / not ready (what `sc exec --wait-for` waits on).
    #[arg(long, value_parser = probe, value_name = "PROBE")]
    pub readiness: Option<ProbeTarget>,
    /// Restarts the service when it fails.
    #[arg(long, value_parser = probe, value_name = "PROBE")]
    pub liveness: Option<ProbeTarget>,
    #[command(flatten)]
    pub startup_timing: StartupTiming,
    #[command(flatten)]
    pub readiness_timing: ReadinessTiming,
    #[command(flatten)]
    pub liveness_timing: LivenessTiming,
    /// Rotate the log at this size (default 10MB).
    #[arg(long, value_parser = size)]
    pub log_max_size: Option<u64>,
    /// Log files kept, current one included (default 5).
    #[arg(long)]
    pub log_keep: Option<u32>,
    /// Define it without starting it.
    #[arg(long)]
    pub no_start: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn ms(d: Option<Duration>, default: u64) -> u64 {
    d.map(|d| d.as_millis() as u64).unwrap_or(default)
}

#[allow(clippy::too_many_arguments)]
fn probe_spec(
    target: Option<ProbeTarget>,
    period: Option<Duration>,
    timeout: Option<Duration>,
    initial_delay: Option<Duration>,
    success: Option<u32>,
    failure: Option<u32>,
    kind: &str,
) -> Result<Option<ProbeSpec>> {
    let Some(target) = target else {
        if period.is_some()
            || timeout.is_some()
            || initial_delay.is_some()
            || success.is_some()
            || failure.is_some()
        {
            bail!("--{kind}-* timing flags given without --{kind} PROBE");
        }
        return Ok(None);
    };
    let d = ProbeSpec::new(target);
    let spec = ProbeSpec {
        period_ms: ms(period, d.period_ms),
        timeout_ms: ms(timeout, d.timeout_ms),
        initial_delay_ms: ms(initial_delay, 0),
        success_threshold: success.unwrap_or(d.success_threshold),
        failure_threshold: failure.unwrap_or(d.failure_threshold),
        target: d.target,
    };
    crate::config::check_probe(&spec).map_err(|e| anyhow::anyhow!("--{kind}: {e}"))?;
    Ok(Some(spec))
}

/// Turn the flags into a definition (pure: no socket, no daemon).
pub fn spec_of(a: AddArgs) -> Result<ServiceSpec> {
    let defaults = RestartSpec::default();
    // A run-time service runs with the environment of the `sc service add`
    // that defined it (PATH, toolchain variables...), then --env on top.
    // Only the job-specific variables of an enclosing `sc exec` are dropped.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !matches!(k.as_str(), "SC_JOB_ID" | "SC_JOB_NAME"))
        .collect();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--env {kv:?}: empty variable name");
        }
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let cwd = match a.cwd {
        Some(c) => c,
        None => std::env::current_dir()
            .context("cannot read the current directory")?
            .display()
            .to_string(),
    };
    let s = &a.startup_timing;
    let r = &a.readiness_timing;
    let l = &a.liveness_timing;
    let spec = ServiceSpec {
        name: a.name,
        argv: a.command,
        cwd,
        env,
        user: a.user,
        mem_limit: a.mem_limit,
        cpu_milli: a.cpus,
        pids: a.pids,
        restart: RestartSpec {
            policy: a.restart,
            backoff_initial_ms: ms(a.backoff_initial, defaults.backoff_initial_ms),
            backoff_max_ms: ms(a.backoff_max, defaults.backoff_max_ms),
            reset_after_ms: ms(a.reset_after, defaults.reset_after_ms),
            max_failures: a.max_failures.unwrap_or(defaults.max_failures),
            failure_window_ms: ms(a.failure_window, defaults.failure_window_ms),
        },
        stop_grace_ms: ms(a.stop_grace, sc_protocol::STOP_GRACE_MS),
        startup: probe_spec(
            a.startup,
            s.period,
            s.timeout,
            s.initial_delay,
            s.success_threshold,
            s.failure_threshold,
            "startup",
        )?,
        readiness: probe_spec(
            a.readiness,
            r.period,
            r.timeout,
            r.initial_delay,
            r.success_threshold,
            r.failure_threshold,
            "readiness",
        )?,
        liveness: probe_spec(
            a.liveness,
            l.period,
            l.timeout,
            l.initial_delay,
            l.success_threshold,
            l.failure_threshold,
            "liveness",
        )?,
        log_max_bytes: a.log_max_size.unwrap_or(sc_protocol::LOG_MAX_BYTES),
        log_keep: a.log_keep.unwrap_or(sc_protocol::LOG_KEEP),
        ports: a.ports,
    };
    crate::config::check_service(&spec)?;
    Ok(spec)
}

fn ask(req: Request) -> Result<Response> {
    super::runtime()?.block_on(async {
        let mut conn = client::connect().await?;
        conn.call(&req).await
    })
}

fn expect_ok(resp: Response) -> Result<()> {
    match resp {
        Response::Ok { message } => {
            println!("{message}");
            Ok(())
        }
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

pub fn main(verb: ServiceVerb) -> Result<()> {
    match verb {
        ServiceVerb::Add(a) => {
            let start = !a.no_start;
            let spec = spec_of(*a)?;
            expect_ok(ask(Request::ServiceAdd {
                spec: Box::new(spec),
                start,
            })?)
        }
        ServiceVerb::Start { name } => expect_ok(ask(Request::ServiceStart { name })?),
        ServiceVerb::Stop { name } => expect_ok(ask(Request::ServiceStop { name })?),
        ServiceVerb::Restart { name } => expect_ok(ask(Request::ServiceRestart { name })?),
        ServiceVerb::Remove { name } => expect_ok(ask(Request::ServiceRemove { name })?),
        ServiceVerb::Ls { json } => {
            let services = match ask(Request::ServiceList)? {
                Response::Services(s) => s,
                Response::Error { message, .. } => bail!("{message}"),
                other => bail!("unexpected answer from the daemon: {other:?}"),
            };
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &services)?;
                writeln!(out)?;
            } else {
                print_services(&mut out, &services)?;
            }
            Ok(())
        }
    }
}

/// The services table shared by `sc service ls` and `sc ps`.
pub fn print_services(out: &mut impl Write, services: &[ServiceView]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<9} {:<5} {:>8} {:>8} {:>7} {:>9}  LAST REASON",
        "SERVICE", "STATE", "READY", "RESTARTS", "UPTIME", "PID", "MEM"
    )?;
    for s in services {
        let mut state = s.state.to_string();
        if let Some(ms) = s.next_start_ms {
            state = format!("{state} {}", format_duration(Duration::from_millis(ms)));
        }
        writeln!(
            out,
            "{:<16} {:<9} {:<5} {:>8} {:>8} {:>7} {:>9}  {}",
            s.name,
            state,
            if s.ready { "yes" } else { "no" },
            s.restarts,
            s.uptime_ms
                .map(|u| format_duration(Duration::from_millis(u)))
                .unwrap_or_else(|| "-".into()),
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.mem_current.map(format_size).unwrap_or_else(|| "-".into()),
            s.last_reason.as_deref().unwrap_or("-"),
        )?;
        if !s.ports.is_empty() {
            writeln!(
                out,
                "{:<16} ports {}",
                "",
                super::verbs::ports_text(&s.ports)
            )?;
        }
    }
    Ok(())
}

/// `sc logs NAME [-f] [-n LINES]`: stream what the daemon sends to stdout.
pub fn logs(name: String, follow: bool, lines: u32) -> Result<()> {
    super::runtime()?.block_on(async {
        let mut conn = client::connect().await?;
        conn.send(&Request::Logs {
            name,
            lines,
            follow,
        })
        .await?;
        let mut out = std::io::stdout();
        loop {
            match conn.recv().await? {
                Response::LogData { data } => {
                    out.write_all(&data)?;
                    out.flush()?;
                }
                Response::LogEnd => return Ok(()),
                Response::Error { message, .. } => bail!("{message}"),
                other => bail!("unexpected answer from the daemon: {other:?}"),
            }
        }
    })
}
