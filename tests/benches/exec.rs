//! `sc exec -- true` overhead against `true`, `flock`, and task-spooler's
//! `tsp -f true` (issue 2).
//!
//! Not a test: it never asserts a timing. It exits 0 after printing its
//! table, and non-zero (with a message) only when something could not run:
//! no built `sc`, no task-spooler, a daemon that would not start, a command
//! that failed.
//!
//! Run as root so the daemon's cgroups are on:
//!
//! ```text
//! cargo build --release -p sidecar && cargo bench -p sc-tests --bench exec
//! ```
//!
//! Knobs (environment): `SC_BENCH_RUNS` (measured runs per single-command
//! contender, default 200, after 20 warm-up runs each), `SC_BENCH_JOBS`
//! (jobs per throughput batch, default 200), `SC_BENCH_BATCHES` (throughput
//! batches per contender, default 5; the median batch is reported),
//! `SC_BENCH_ISOLATED` (runs of `true`, `tsp` and `sc exec` each with a
//! 50 ms pause before every run, default 40).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "exec/rig.rs"]
mod rig;
use rig::Rig;

const WARMUP: usize = 20;
const PARALLEL: usize = 2;
const TARGET_RATIO: f64 = 1.5;
/// Pause before each isolated run: longer than an RCU grace period here.
const ISOLATION_GAP: Duration = Duration::from_millis(50);
const BUILD_CMD: &str = "cd /work/main && cargo build --release -p sidecar";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("exec bench: cannot run: {msg}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

fn env_usize(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?} is not a positive whole number")),
        },
        _ => Ok(default),
    }
}

/// `target/release/sc`: `$CARGO_TARGET_DIR` when set, else the workspace's
/// `target/` beside this crate.
fn sc_binary() -> Res<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    };
    let bin = target.join("release").join("sc");
    if bin.is_file() && bin.with_file_name("scd").is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} (or scd beside it) not found; build them first: {BUILD_CMD}",
            bin.display()
        ))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// task-spooler's client: `tsp` on Debian, `ts` elsewhere (but moreutils
/// also ships a `ts`, so check that it is task-spooler).
fn find_tsp() -> Option<PathBuf> {
    if let Some(p) = on_path("tsp") {
        return Some(p);
    }
    let p = on_path("ts")?;
    let out = Command::new(&p)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.to_lowercase().contains("task spooler").then_some(p)
}

fn tsp_binary() -> Res<PathBuf> {
    if let Some(p) = find_tsp() {
        return Ok(p);
    }
    let hint = "install task-spooler: apt-get install -y task-spooler";
    if unsafe { libc::geteuid() } != 0 || on_path("apt-get").is_none() {
        return Err(format!("task-spooler (tsp) is not installed; {hint}"));
    }
    eprintln!("exec bench: tsp not found; running apt-get install -y task-spooler");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "task-spooler"])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    match find_tsp() {
        Some(p) if ok => Ok(p),
        _ => Err(format!(
            "task-spooler (tsp) is not installed and installing it failed; {hint}"
        )),
    }
}

/// A command to time: program, arguments, environment.
#[derive(Clone)]
struct Contender {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Contender {
    fn new(label: &str, program: &Path, args: &[&str], env: &[(String, String)]) -> Contender {
        Contender {
            label: label.to_string(),
            program: program.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// One run, output discarded; the wall time from spawn to reaped exit.
    fn time_once(&self) -> Res<Duration> {
        let t0 = Instant::now();
        let status = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let took = t0.elapsed();
        match status {
            Ok(s) if s.success() => Ok(took),
            Ok(s) => Err(self.explain_failure(&format!("exited with {s}"))),
            Err(e) => Err(format!("cannot start `{}`: {e}", self.label)),
        }
    }

    /// Run again with output captured so the failure can be shown.
    fn explain_failure(&self, first: &str) -> String {
        let again = match self.command().stdin(Stdio::null()).output() {
            Ok(o) => format!(
                "re-run exited with {}; stdout: {:?}; stderr: {:?}",
                o.status,
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("re-run could not start: {e}"),
        };
        format!("`{}` {first} ({again})", self.label)
    }
}

/// Sorted samples in milliseconds.
struct Stats {
    ms: Vec<f64>,
}

impl Stats {
    fn new(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Stats { ms }
    }

    fn median(&self) -> f64 {
        median_of(&self.ms)
    }

    /// Nearest-rank 90th percentile.
    fn p90(&self) -> f64 {
        let n = self.ms.len();
        let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
        self.ms[rank - 1]
    }
}

/// Median of sorted values (mean of the middle two for an even count).
fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Warm up, then time every contender `runs` times, interleaved round-robin
/// (the starting contender rotates each round, so none always goes first).
fn time_singles(
    contenders: &[Contender],
    runs: usize,
    mut after_warmup: impl FnMut(),
) -> Res<Vec<Stats>> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); contenders.len()];
    let k = contenders.len();
    for round in 0..WARMUP + runs {
        if round == WARMUP {
            after_warmup();
        }
        for i in 0..k {
            let idx = (round + i) % k;
            let took = contenders[idx].time_once()?;
            if round >= WARMUP {
                samples[idx].push(took);
            }
        }
    }
    Ok(samples.iter().map(|s| Stats::new(s)).collect())
}

/// `jobs` runs of one contender, `PARALLEL` at a time: worker threads each
/// take the next job number from a shared counter and run it to its end.
fn time_batch(c: &Contender, jobs: usize) -> Res<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (c, next, failed) = (c.clone(), next.clone(), failed.clone());
            std::thread::spawn(move || -> Res<()> {
                while !failed.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < jobs
                {
                    if let Err(e) = c.time_once() {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let mut result = Ok(());
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err("a worker thread panicked".into()),
        }
    }
    let took = t0.elapsed();
    result.map(|()| took)
}

/// `jobs` runs of one contender through `xargs -P PARALLEL`, as the issue
/// words it: one line per job on xargs' stdin, one command per line.
fn time_xargs(c: &Contender, xargs: &Path, jobs: usize) -> Res<Duration> {
    use std::io::Write;
    let t0 = Instant::now();
    let mut cmd = Command::new(xargs);
    cmd.args(["-P", &PARALLEL.to_string(), "-I", "{}"])
        .arg(&c.program)
        .args(&c.args)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start xargs: {e}"))?;
    let lines: String = (0..jobs).map(|i| format!("{i}\n")).collect();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.as_bytes())
            .map_err(|e| format!("cannot feed xargs: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("xargs: {e}"))?;
    let took = t0.elapsed();
    if !status.success() {
        return Err(c.explain_failure(&format!("through xargs -P{PARALLEL}: {status}")));
    }
    Ok(took)
}

/// Daemon-side intervals per job, from the daemon's own log timestamps:
/// `job queued` → `job started` (the grant: moving the already forked,
/// held child into its prepared cgroup) and `job started` → `job ended`
/// (the `Granted` message, the release and exec of `true`, its exit, the
/// `Exited` message, reading usage, the history line).
struct DaemonSplit {
    jobs: usize,
    queued_to_started: f64,
    started_to_ended: f64,
}

fn seconds_of_day(stamp: &str) -> Option<f64> {
    // 2026-11-21T06:59:31.779356Z
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn daemon_split(log: &str) -> Option<DaemonSplit> {
    use std::collections::HashMap;
    let mut events: HashMap<u64, [Option<f64>; 3]> = HashMap::new();
    for line in log.lines() {
        let Some(stamp) = line.split_whitespace().next() else {
            continue;
        };
        let Some(t) = seconds_of_day(stamp) else {
            continue;
        };
        let slot = if line.contains("job queued ") {
            0
        } else if line.contains("job started ") {
            1
        } else if line.contains("job ended ") {
            2
        } else {
            continue;
        };
        let Some(rest) = line.split(" job=").nth(1) else {
            continue;
        };
        let Ok(id) = rest.split_whitespace().next().unwrap_or("").parse::<u64>() else {
            continue;
        };
        events.entry(id).or_default()[slot] = Some(t);
    }
    let day = 86400.0;
    let gap = |a: f64, b: f64| if b >= a { b - a } else { b + day - a };
    let mut qs = Vec::new();
    let mut se = Vec::new();
    for ev in events.values() {
        if let [Some(q), Some(s), Some(e)] = *ev {
            qs.push(gap(q, s) * 1e3);
            se.push(gap(s, e) * 1e3);
        }
    }
    if qs.is_empty() {
        return None;
    }
    qs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    se.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some(DaemonSplit {
        jobs: qs.len(),
        queued_to_started: median_of(&qs),
        started_to_ended: median_of(&se),
    })
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn run() -> Res<()> {
    let runs = env_usize("SC_BENCH_RUNS", 200)?;
    let jobs = env_usize("SC_BENCH_JOBS", 200)?;
    let batches = env_usize("SC_BENCH_BATCHES", 5)?;
    let isolated_runs = env_usize("SC_BENCH_ISOLATED", 40)?;
    let sc = sc_binary()?;
    let tsp = tsp_binary()?;
    let true_bin = on_path("true").ok_or("`true` is not on PATH")?;
    let flock = on_path("flock").ok_or("`flock` is not on PATH (util-linux)")?;
    let xargs = on_path("xargs").ok_or("`xargs` is not on PATH (findutils)")?;
    let root_user = unsafe { libc::geteuid() } == 0;

    let rig = Rig::start(sc.clone(), tsp.clone())?;
    let backend = rig.backend_line()?;
    let lock = rig.root().join("lock").display().to_string();
    let tsp_name = tsp.file_name().unwrap().to_string_lossy().to_string();

    let c_true = Contender::new("true", &true_bin, &[], &[]);
    let c_flock = Contender::new("flock <tmp>/lock true", &flock, &[&lock, "true"], &[]);
    let c_tsp = Contender::new(
        &format!("{tsp_name} -f true"),
        &tsp,
        &["-f", "true"],
        &rig.tsp_env,
    );
    let c_sc = Contender::new("sc exec -- true", &sc, &["exec", "--", "true"], &rig.sc_env);
    // `sc` hands every verb but exec to `scd` (docs/decisions.md, "Two
    // executables"): the references split the start of each.
    let scd = sc.with_file_name("scd");
    let c_help = Contender::new(
        "sc exec --help (ref: start of sc, exec's parse, help printed)",
        &sc,
        &["exec", "--help"],
        &[],
    );
    let c_ver = Contender::new(
        "scd --version (ref: start of the full executable)",
        &scd,
        &["--version"],
        &[],
    );
    let c_status = Contender::new(
        "scd status (ref: start+connect+hello+1 request)",
        &scd,
        &["status"],
        &rig.sc_env,
    );
    let singles = [c_true, c_flock, c_tsp, c_sc, c_help, c_ver, c_status];
    let (i_true, i_tsp, i_sc) = (0, 2, 3);

    eprintln!(
        "exec bench: {} warm-up + {runs} measured runs of {} contenders, interleaved...",
        WARMUP,
        singles.len()
    );
    let mut log_from = 0;
    let single = time_singles(&singles, runs, || log_from = rig.log_len())?;
    let split = daemon_split(&rig.log_since(log_from));

    // Throughput: batches interleaved round-robin too; one warm-up batch each.
    let batch_contenders = [&singles[i_true], &singles[i_tsp], &singles[i_sc]];
    eprintln!(
        "exec bench: {batches} batches of {jobs} jobs, {PARALLEL} at a time, per contender..."
    );
    for c in batch_contenders {
        time_batch(c, jobs.min(20))?;
    }
    // The same batches through `xargs -P2` (a process per job more: xargs
    // itself forks each), interleaved with the thread-driven ones.
    let n = batch_contenders.len();
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); 2 * n];
    for round in 0..batches {
        for i in 0..2 * n {
            let idx = (round + i) % (2 * n);
            let took = if idx < n {
                time_batch(batch_contenders[idx], jobs)?
            } else {
                time_xargs(batch_contenders[idx - n], &xargs, jobs)?
            };
            totals[idx].push(took.as_secs_f64());
        }
    }
    for t in totals.iter_mut() {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let all: Vec<f64> = totals.iter().map(|t| median_of(t)).collect();
    let (total, via_xargs) = all.split_at(n);

    // Isolated: a pause before every run, as between commands a person
    // types. The kernel's cgroup migration lock then has gone back to its
    // reader-friendly state, and placing the job waits an RCU grace period
    // (docs/benchmarks.md); back to back, the previous run kept it warm.
    let isolated_contenders = [&singles[i_true], &singles[i_tsp], &singles[i_sc]];
    eprintln!(
        "exec bench: {isolated_runs} isolated runs per contender ({ISOLATION_GAP:?} pause before each)..."
    );
    let mut isolated_samples: Vec<Vec<Duration>> = vec![Vec::new(); isolated_contenders.len()];
    for round in 0..isolated_runs {
        for i in 0..isolated_contenders.len() {
            let idx = (round + i) % isolated_contenders.len();
            std::thread::sleep(ISOLATION_GAP);
            isolated_samples[idx].push(isolated_contenders[idx].time_once()?);
        }
    }
    let isolated: Vec<Stats> = isolated_samples.iter().map(|s| Stats::new(s)).collect();

    drop(rig);

    // ---- report ----
    let med_true = single[i_true].median();
    let med_tsp = single[i_tsp].median();
    let med_sc = single[i_sc].median();
    let ratio = med_sc / med_tsp;
    println!("## sc exec overhead (issue 2)");
    println!();
    println!(
        "host: {} cores, kernel {}, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel(),
        if root_user {
            "run as root"
        } else {
            "NOT root (cgroups may be off)"
        }
    );
    println!("sc backend: {backend}");
    println!(
        "single: median/p90 of {runs} runs each after {WARMUP} warm-up, interleaved round-robin; \
         throughput: median of {batches} batches of {jobs} jobs, {PARALLEL} at a time, \
         by two threads and through xargs -P{PARALLEL} (tsp server with {PARALLEL} slots)"
    );
    println!();
    println!("| measurement | median ms | p90 ms | total s | jobs/s | × true | × tsp |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (c, s) in singles.iter().zip(&single) {
        println!(
            "| single: `{}` | {:.2} | {:.2} | — | {:.0} | {:.2} | {:.2} |",
            c.label,
            s.median(),
            s.p90(),
            1e3 / s.median(),
            s.median() / med_true,
            s.median() / med_tsp,
        );
    }
    for (c, st) in isolated_contenders.iter().zip(&isolated) {
        println!(
            "| isolated ({} ms pause before each): `{}` | {:.2} | {:.2} | — | {:.0} | {:.2} | {:.2} |",
            ISOLATION_GAP.as_millis(),
            c.label,
            st.median(),
            st.p90(),
            1e3 / st.median(),
            st.median() / isolated[0].median(),
            st.median() / isolated[1].median(),
        );
    }
    for (c, t) in batch_contenders.iter().zip(total) {
        println!(
            "| {jobs} × `{}`, {PARALLEL} at a time | — | — | {:.3} | {:.0} | {:.2} | {:.2} |",
            c.label,
            t,
            jobs as f64 / t,
            t / total[0],
            t / total[1],
        );
    }
    for (c, t) in batch_contenders.iter().zip(via_xargs) {
        println!(
            "| {jobs} × `{}` through `xargs -P{PARALLEL}` | — | — | {:.3} | {:.0} | {:.2} | {:.2} |",
            c.label,
            t,
            jobs as f64 / t,
            t / via_xargs[0],
            t / via_xargs[1],
        );
    }
    println!();
    println!(
        "target: sc exec -- true within {TARGET_RATIO}x of {tsp_name} -f true: {} (ratio {:.2})",
        if ratio <= TARGET_RATIO {
            "MET"
        } else {
            "NOT MET"
        },
        ratio
    );
    println!(
        "isolated runs (× true and × tsp above are against the isolated true and tsp): sc exec -- true at {:.2}x of {tsp_name} -f true",
        isolated[2].median() / isolated[1].median()
    );
    println!(
        "throughput ratio sc/{tsp_name} ({jobs} jobs, {PARALLEL} at a time): {:.2} (through xargs -P{PARALLEL}: {:.2})",
        total[2] / total[1],
        via_xargs[2] / via_xargs[1]
    );
    match split {
        Some(s) => println!(
            "daemon-side split of the measured `sc exec -- true` runs (median of {} jobs, from the daemon log): \
             queued→started {:.2} ms (grant: place the held child in its cgroup), \
             started→ended {:.2} ms (Granted, release, exec+exit of true, Exited, then the usage read on a blocking thread); \
             the remaining {:.2} ms of the {:.2} ms median is outside that span \
             (sc process start, fork of the held child, connect + hello + Exec + record before `queued`; \
             sc's exit, which does not wait for the usage read, overlaps its end)",
            s.jobs,
            s.queued_to_started,
            s.started_to_ended,
            med_sc - s.queued_to_started - s.started_to_ended,
            med_sc
        ),
        None => println!("daemon-side split: not available (no job lines found in the daemon log)"),
    }
    Ok(())
}
