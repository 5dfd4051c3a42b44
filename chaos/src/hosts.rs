//! The hosts: certificates, configs, and the `sc daemon` processes the
//! faults kill, stop and restart.
//!
//! Each host has a directory in the run dir (config, certificates, state
//! dir, socket, daemon log). Daemons are the harness's own children, each
//! in its own process group (a Ctrl-C on the harness reaches only the
//! harness, which then tears down in order) and, in netns mode, in its
//! host's namespace.

use crate::net::{Net, must};
use serde_json::Value;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quorum,
    Available,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Quorum => "quorum",
            Mode::Available => "available",
        }
    }
}

/// The service jobs `--wait-for`, and the host it runs on.
pub const SERVICE: &str = "svc";
/// Quorum lease L of every daemon (`[cluster] lease`).
pub const LEASE_MS: u64 = 3000;
/// How long a restarted daemon keeps an adopted job for its `sc exec` to
/// re-attach before it records it as abandoned: the daemon's default
/// `[daemon] reattach_grace`, which the configs here leave alone.
pub const REATTACH_GRACE: Duration = Duration::from_secs(10);
pub const SERVICE_HOST: usize = 0;

pub struct Host {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub stopped: bool,
    /// Daemon processes started for this host so far.
    pub incarnations: u32,
}

pub fn host_name(i: usize) -> String {
    // host-a .. host-z, then host-27...: names are certificate CNs.
    if i < 26 {
        format!("host-{}", (b'a' + i as u8) as char)
    } else {
        format!("host-{}", i + 1)
    }
}

fn toml_str(p: &Path) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(&p.to_string_lossy()).unwrap()
}

/// `sc cluster init-ca` and one `sc cluster issue` per host.
pub fn make_certs(sc: &Path, run_dir: &Path, net: &Net) -> Result<Vec<PathBuf>, String> {
    let ca = run_dir.join("ca");
    must(
        Command::new(sc)
            .args(["cluster", "init-ca"])
            .arg(&ca)
            .env_remove("SC_SOCKET"),
    )?;
    (0..net.n())
        .map(|i| {
            let out = run_dir.join(host_name(i)).join("certs");
            must(
                Command::new(sc)
                    .args(["cluster", "issue", "--ca"])
                    .arg(&ca)
                    .arg(host_name(i))
                    .args(["--ip", &net.addr(i).ip().to_string(), "--out"])
                    .arg(&out)
                    .env_remove("SC_SOCKET"),
            )?;
            Ok(out)
        })
        .collect()
}

impl Host {
    /// Write host i's config: fake capacity (4G, 2 cores: admission does not
    /// depend on the machine), the cluster, both resources in `mode`, and
    /// on host 0 the service.
    pub fn new(
        i: usize,
        run_dir: &Path,
        net: &Net,
        mode: Mode,
        certs: &Path,
    ) -> Result<Host, String> {
        let name = host_name(i);
        let dir = run_dir.join(&name);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
        let socket = dir.join("sc.sock");
        let seeds: Vec<String> = (0..net.n())
            .filter(|&j| j != i)
            .map(|j| format!("\"{}\"", net.addr(j)))
            .collect();
        let mut text = format!(
            "[daemon]\nsocket = {}\nstate_dir = {}\n\n[host]\nmemory = \"4G\"\ncores = 2\nreserve = \"0\"\n\n\
             [cluster]\nlisten = \"{}\"\nseeds = [{}]\nca = {}\ncert = {}\nkey = {}\navailable_down = \"1s\"\n",
            toml_str(&socket),
            toml_str(&state_dir),
            net.addr(i),
            seeds.join(", "),
            toml_str(&certs.join("ca.crt")),
            toml_str(&certs.join("node.crt")),
            toml_str(&certs.join("node.key")),
        );
        if let Some(f) = net.partition_file(i) {
            text += &format!("test_partition_file = {}\n", toml_str(f));
        }
        if mode == Mode::Quorum {
            let members: Vec<String> = (0..net.n())
                .map(|j| format!("\"{}\"", host_name(j)))
                .collect();
            text += &format!(
                "members = [{}]\nlease = \"{}ms\"\n",
                members.join(", "),
                LEASE_MS
            );
        }
        let m = mode.as_str();
        text += &format!(
            "\n[resources]\ne2e = {{ capacity = 1, mode = \"{m}\" }}\ngpu = {{ capacity = 2, mode = \"{m}\" }}\n"
        );
        if i == SERVICE_HOST {
            // The service's argv[0] is a link in the run dir, so a leftover
            // service process is recognisable as ours (see guard.rs).
            let bin = run_dir.join("bin");
            std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
            let sleep = bin.join("chaos-sleep");
            if !sleep.exists() {
                let real = ["/bin/sleep", "/usr/bin/sleep"]
                    .into_iter()
                    .find(|p| Path::new(p).exists())
                    .ok_or("no sleep binary")?;
                std::os::unix::fs::symlink(real, &sleep).map_err(|e| e.to_string())?;
            }
            text += &format!(
                "\n[[service]]\nname = \"{SERVICE}\"\ncommand = [{}, \"1000000\"]\nstop_grace = \"2s\"\n\n\
                 [service.readiness]\nprobe = \"exec:true\"\nperiod = \"1s\"\n",
                toml_str(&sleep)
            );
        }
        let config = dir.join("sc.toml");
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Host {
            name,
            log: dir.join("daemon.log"),
            dir,
            socket,
            state_dir,
            config,
            child: None,
            stopped: false,
            incarnations: 0,
        })
    }

    /// Start the daemon (not waiting for it: restarts during the run must
    /// not stall the fault schedule; see [`Host::wait_listening`]).
    pub fn start(&mut self, sc: &Path, net: &Net, i: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let mut cmd = Command::new(sc);
        cmd.arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .env_remove("SC_SOCKET")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0);
        net.enter(i, &mut cmd);
        let child = cmd.spawn().map_err(|e| format!("spawn sc daemon: {e}"))?;
        self.child = Some(child);
        self.stopped = false;
        self.incarnations += 1;
        Ok(())
    }

    /// Wait until the daemon accepts on its socket.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let end = crate::util::mono_ns() + timeout.as_nanos() as u64;
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "{} daemon exited before listening ({st}); see {}",
                    self.name,
                    self.log.display()
                ));
            }
            if crate::util::mono_ns() > end {
                return Err(format!(
                    "{} daemon not listening after {timeout:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Running (possibly stopped), as far as the harness knows: it reaps its
    /// own children, so an exit is seen here.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                _ => {
                    self.child = None;
                    false
                }
            },
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stopped = false;
    }

    pub fn sigstop(&mut self) {
        if let Some(pid) = self.pid() {
            crate::util::signal(pid, libc::SIGSTOP);
            self.stopped = true;
        }
    }

    pub fn sigcont(&mut self) {
        if let Some(pid) = self.pid() {
            crate::util::signal(pid, libc::SIGCONT);
        }
        self.stopped = false;
    }

    /// SIGTERM, and SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.sigcont();
        if let Some(mut c) = self.child.take() {
            crate::util::signal(c.id(), libc::SIGTERM);
            let end = crate::util::mono_ns() + grace.as_nanos() as u64;
            loop {
                match c.try_wait() {
                    Ok(None) if crate::util::mono_ns() < end => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) => {
                        eprintln!(
                            "sc-chaos: {} daemon ignored SIGTERM for {grace:?}; SIGKILL",
                            self.name
                        );
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
    }

    /// A `sc` command talking to this host's daemon, run in its namespace.
    pub fn sc_cmd(&self, sc: &Path, net: &Net, i: usize) -> Command {
        let mut cmd = Command::new(sc);
        cmd.env("SC_SOCKET", &self.socket).current_dir(&self.dir);
        net.enter(i, &mut cmd);
        cmd
    }

    /// `sc ARGS --json`-style query; the parsed stdout, or None.
    pub fn query(&self, sc: &Path, net: &Net, i: usize, args: &[&str]) -> Option<Value> {
        let mut cmd = self.sc_cmd(sc, net, i);
        cmd.args(args).stdin(Stdio::null()).stderr(Stdio::null());
        let out = run_bounded(cmd, Duration::from_secs(5))?;
        serde_json::from_slice(&out).ok()
    }

    /// The daemon's cgroup subtree dirs (`backend.subtree` of `sc status`).
    pub fn subtrees(&self, sc: &Path, net: &Net, i: usize) -> Vec<PathBuf> {
        self.query(sc, net, i, &["status", "--json"])
            .and_then(|v| {
                v["backend"]["subtree"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(PathBuf::from))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

/// Run `cmd`, killing it after `timeout`; its stdout if it exited 0.
/// (A query to a SIGSTOPped daemon would block forever.)
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut child = cmd.stdout(Stdio::piped()).spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let end = crate::util::mono_ns() + timeout.as_nanos() as u64;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if crate::util::mono_ns() < end => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().ok()?;
    status.filter(|s| s.success()).map(|_| out)
}
