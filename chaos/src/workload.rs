//! The workload: `sc exec --json --needs ... -- sc-stamp LOG LABEL MS`
//! from every host at once, and the client-side record of each one.
//!
//! One thread spawns clients on a seeded schedule and reaps them (polling
//! `try_wait` under the registry lock, so the client-killing fault can never
//! signal a pid that was already reaped and reused); one thread per client
//! timestamps its stderr lines (the `--json` events) as they arrive.

use crate::net::Net;
use crate::util::{MS, Rng, mono_ns};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct JobSpec {
    /// `h<host>-<seq>`: unique, and names the host.
    pub label: String,
    pub host: usize,
    pub needs: Vec<(String, u32)>,
    pub mem: Option<&'static str>,
    pub priority: Option<String>,
    pub wait_for: bool,
    pub hold_ms: u64,
}

impl JobSpec {
    fn random(rng: &mut Rng, host: usize, seq: u64) -> JobSpec {
        let needs = match rng.weighted(&[40, 30, 8, 22]) {
            0 => vec![("e2e".into(), 1)],
            1 => vec![("gpu".into(), 1)],
            2 => vec![("gpu".into(), 2)],
            _ => vec![("e2e".into(), 1), ("gpu".into(), 1)],
        };
        let mem = [None, Some("256M"), Some("1G"), Some("2G"), Some("3G")]
            [rng.weighted(&[40, 25, 20, 10, 5])];
        let priority = match rng.weighted(&[50, 15, 15, 20]) {
            0 => None,
            1 => Some("low".into()),
            2 => Some("high".into()),
            _ => Some((rng.range(0, 100) as i64 - 50).to_string()),
        };
        let hold_ms = match rng.weighted(&[70, 22, 8]) {
            0 => rng.range(20, 400),
            1 => rng.range(400, 3000),
            _ => rng.range(4000, 12000),
        };
        JobSpec {
            label: format!("h{host}-{seq}"),
            host,
            needs,
            mem,
            priority,
            wait_for: rng.chance(15),
            hold_ms,
        }
    }

    pub fn needs_arg(&self) -> String {
        let parts: Vec<String> = self
            .needs
            .iter()
            .map(|(r, u)| {
                if *u == 1 {
                    r.clone()
                } else {
                    format!("{r}:{u}")
                }
            })
            .collect();
        parts.join(",")
    }

    pub fn units(&self, res: &str) -> u32 {
        self.needs
            .iter()
            .find(|(r, _)| r == res)
            .map(|(_, u)| *u)
            .unwrap_or(0)
    }
}

/// Everything the harness saw of one `sc exec`.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub spec: JobSpec,
    pub pid: u32,
    pub spawned_ns: u64,
    pub exited_ns: Option<u64>,
    /// Exit code, or 128 + signal when the client itself was killed.
    pub code: Option<i32>,
    /// The `--json` events with their arrival times.
    pub events: Vec<(u64, Value)>,
    /// Other stderr lines (sc's messages for people).
    pub text: Vec<String>,
    pub killed_ns: Option<u64>,
    pub spawn_error: Option<String>,
}

impl ClientRecord {
    pub fn event(&self, name: &str) -> Option<&(u64, Value)> {
        self.events.iter().find(|(_, e)| e["event"] == name)
    }

    /// The job id the daemon acknowledged (`queued`), if it did.
    pub fn job_id(&self) -> Option<u64> {
        self.event("queued").and_then(|(_, e)| e["job"].as_u64())
    }

    pub fn last_event(&self) -> Option<&Value> {
        self.events.last().map(|(_, e)| e)
    }
}

#[derive(Default)]
pub struct Registry {
    pub clients: Vec<ClientRecord>,
    children: Vec<Option<Child>>,
}

pub struct Workload {
    pub reg: Arc<Mutex<Registry>>,
    spawning: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What every client needs to be started.
pub struct Setup {
    pub sc: PathBuf,
    pub stamp: PathBuf,
    pub log: PathBuf,
    pub sockets: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    pub service_at: String,
    pub max_outstanding: usize,
}

impl Workload {
    pub fn start(setup: Setup, net: Arc<Mutex<Net>>, seed: u64) -> Workload {
        let reg = Arc::new(Mutex::new(Registry::default()));
        let spawning = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, sp, st) = (reg.clone(), spawning.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("workload".into())
            .spawn(move || run(setup, net, seed, r, sp, st))
            .expect("spawn workload thread");
        Workload {
            reg,
            spawning,
            stop,
            thread: Some(thread),
        }
    }

    /// No new clients from now on (the quiet tail).
    pub fn stop_spawning(&self) {
        self.spawning.store(false, Ordering::SeqCst);
    }

    /// Clients still running.
    pub fn outstanding(&self) -> Vec<ClientRecord> {
        let reg = self.reg.lock().unwrap();
        reg.clients
            .iter()
            .filter(|c| c.exited_ns.is_none())
            .cloned()
            .collect()
    }

    /// SIGKILL one running client, preferring one whose job has started;
    /// returns its label.
    pub fn kill_client(&self, rng: &mut Rng) -> Option<String> {
        let mut reg = self.reg.lock().unwrap();
        let live: Vec<usize> = (0..reg.clients.len())
            .filter(|&k| reg.children[k].is_some() && reg.clients[k].killed_ns.is_none())
            .collect();
        let started: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&k| reg.clients[k].event("started").is_some())
            .collect();
        let pool = if !started.is_empty() && rng.chance(60) {
            &started
        } else {
            &live
        };
        let k = *pool.get(rng.below(pool.len()))?;
        // Under the lock: the reaper cannot have reaped this pid yet.
        reg.children[k].as_mut().map(|c| c.kill());
        reg.clients[k].killed_ns = Some(mono_ns());
        Some(reg.clients[k].spec.label.clone())
    }

    /// SIGKILL every client still running (end of a run that did not drain).
    pub fn kill_all(&self) {
        let mut reg = self.reg.lock().unwrap();
        for k in 0..reg.clients.len() {
            if let Some(c) = reg.children[k].as_mut() {
                let _ = c.kill();
                reg.clients[k].killed_ns.get_or_insert(mono_ns());
            }
        }
    }

    /// SIGKILL every client still running and wait (bounded) until the
    /// reaper has seen them exit.
    pub fn kill_all_and_reap(&self, timeout: Duration) {
        self.kill_all();
        let end = mono_ns() + timeout.as_nanos() as u64;
        while !self.outstanding().is_empty() && mono_ns() < end {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                reap(&self.reg);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the thread; reaps what it can first.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn records(&self) -> Vec<ClientRecord> {
        self.reg.lock().unwrap().clients.clone()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill_all();
        self.finish();
    }
}

fn run(
    setup: Setup,
    net: Arc<Mutex<Net>>,
    seed: u64,
    reg: Arc<Mutex<Registry>>,
    spawning: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let n = setup.sockets.len();
    let mut rngs: Vec<Rng> = (0..n).map(|i| Rng::fork(seed, 100 + i as u64)).collect();
    let mut next: Vec<u64> = (0..n)
        .map(|i| mono_ns() + rngs[i].range(0, 500) * MS)
        .collect();
    let mut seq = vec![0u64; n];
    loop {
        reap(&reg);
        if stop.load(Ordering::SeqCst) {
            // Reap for a moment so late exits are recorded, then leave.
            return;
        }
        if spawning.load(Ordering::SeqCst) {
            for i in 0..n {
                if mono_ns() < next[i] {
                    continue;
                }
                next[i] = mono_ns() + rngs[i].range(150, 900) * MS;
                let busy = {
                    let r = reg.lock().unwrap();
                    (0..r.clients.len())
                        .filter(|&k| r.children[k].is_some() && r.clients[k].spec.host == i)
                        .count()
                };
                if busy >= setup.max_outstanding {
                    continue;
                }
                seq[i] += 1;
                let spec = JobSpec::random(&mut rngs[i], i, seq[i]);
                spawn(&setup, &net, &reg, spec);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn reap(reg: &Arc<Mutex<Registry>>) {
    let mut r = reg.lock().unwrap();
    let now = mono_ns();
    for k in 0..r.children.len() {
        let Some(c) = r.children[k].as_mut() else {
            continue;
        };
        if let Ok(Some(st)) = c.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            r.children[k] = None;
            r.clients[k].exited_ns = Some(now);
            r.clients[k].code = st.code().or(st.signal().map(|s| 128 + s));
        }
    }
}

fn spawn(setup: &Setup, net: &Arc<Mutex<Net>>, reg: &Arc<Mutex<Registry>>, spec: JobSpec) {
    let i = spec.host;
    let mut cmd = Command::new(&setup.sc);
    cmd.args([
        "exec",
        "--json",
        "--name",
        &spec.label,
        "--needs",
        &spec.needs_arg(),
    ]);
    if let Some(m) = spec.mem {
        cmd.args(["--mem", m]);
    }
    if let Some(p) = &spec.priority {
        // `=`: a negative number must not read as a flag.
        cmd.arg(format!("--priority={p}"));
    }
    if spec.wait_for {
        cmd.args(["--wait-for", &setup.service_at]);
    }
    cmd.arg("--")
        .arg(&setup.stamp)
        .arg(&setup.log)
        .arg(&spec.label)
        .arg(spec.hold_ms.to_string())
        .env("SC_SOCKET", &setup.sockets[i])
        .current_dir(&setup.dirs[i])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C on the harness must not reach the jobs.
        .process_group(0);
    net.lock().unwrap().enter(i, &mut cmd);
    let spawned_ns = mono_ns();
    let mut rec = ClientRecord {
        spec,
        pid: 0,
        spawned_ns,
        exited_ns: None,
        code: None,
        events: Vec::new(),
        text: Vec::new(),
        killed_ns: None,
        spawn_error: None,
    };
    let mut r = reg.lock().unwrap();
    match cmd.spawn() {
        Ok(mut child) => {
            rec.pid = child.id();
            let stderr = child.stderr.take().unwrap();
            let k = r.clients.len();
            r.clients.push(rec);
            r.children.push(Some(child));
            let reg = reg.clone();
            std::thread::spawn(move || read_events(stderr, reg, k));
        }
        Err(e) => {
            rec.spawn_error = Some(e.to_string());
            rec.exited_ns = Some(spawned_ns);
            r.clients.push(rec);
            r.children.push(None);
        }
    }
}

fn read_events(stderr: std::process::ChildStderr, reg: Arc<Mutex<Registry>>, k: usize) {
    // Reads until every holder of the pipe is gone: the client and, when the
    // client was killed, its job too.
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let t = mono_ns();
        let mut r = reg.lock().unwrap();
        match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.is_object() => r.clients[k].events.push((t, v)),
            _ => r.clients[k].text.push(line),
        }
    }
}
