//! A real `sc daemon` in a temporary directory.

use crate::process::{RunOutput, ScChild, spawn};
use crate::{CMD_TIMEOUT, remove_cgroup_tree, sc_bin};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A shell loop that returns once `path` exists (at most 30 s).
pub fn wait_for_file_script(path: &Path) -> String {
    format!(
        "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
        path.display()
    )
}

/// How long a daemon may take to listen on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The config a test daemon gets. The fake capacity (`memory`, `cores`)
/// makes admission independent of the machine running the tests.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub memory: String,
    pub cores: u32,
    pub reserve: String,
    /// Extra `key = value` lines for the `[daemon]` section
    /// (e.g. `socket_group = "nogroup"`).
    pub daemon_extra: String,
    /// Appended verbatim after the `[host]` keys: bare `key = value` lines
    /// land in `[host]`; start with a `[section]` header for anything else.
    pub extra: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            memory: "4G".into(),
            cores: 2,
            reserve: "0".into(),
            daemon_extra: String::new(),
            extra: String::new(),
        }
    }
}

fn toml_str(p: &Path) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(&p.to_string_lossy()).unwrap()
}

/// One `sc daemon` with its own socket, state dir and log, in a tempdir.
///
/// Dropping it stops the daemon (SIGTERM, then SIGKILL after 5 s), removes
/// the empty cgroups left in its subtree, and prints its log when the test is
/// failing.
pub struct TestDaemon {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    socket: PathBuf,
    state_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// Every cgroup subtree any incarnation reported (for cleanup).
    seen_subtrees: Vec<PathBuf>,
}

impl TestDaemon {
    /// Start a daemon with the default fake host (4G, 2 cores, no reserve)
    /// plus `extra` appended to the config (see [`DaemonConfig::extra`]).
    #[track_caller]
    pub fn start(extra: &str) -> TestDaemon {
        TestDaemon::start_with(DaemonConfig {
            extra: extra.to_string(),
            ..DaemonConfig::default()
        })
    }

    #[track_caller]
    pub fn start_with(cfg: DaemonConfig) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("sc-test-")
            .tempdir()
            .expect("create tempdir");
        // World-readable so that tests running commands as another uid can
        // reach the socket and the binary's files.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let socket = dir.path().join("sc.sock");
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).expect("create state dir");
        let config_path = dir.path().join("sc.toml");
        let text = format!(
            "[daemon]\nsocket = {}\nstate_dir = {}\n{}\n\n[host]\nmemory = \"{}\"\ncores = {}\nreserve = \"{}\"\n{}\n",
            toml_str(&socket),
            toml_str(&state_dir),
            cfg.daemon_extra,
            cfg.memory,
            cfg.cores,
            cfg.reserve,
            cfg.extra
        );
        std::fs::write(&config_path, text).expect("write config");
        let log_path = dir.path().join("daemon.log");
        let mut d = TestDaemon {
            dir,
            config_path,
            socket,
            state_dir,
            log_path,
            child: None,
            seen_subtrees: Vec::new(),
        };
        d.spawn_daemon();
        d
    }

    #[track_caller]
    fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open daemon log");
        let mut cmd = Command::new(sc_bin());
        cmd.arg("daemon")
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("SC_SOCKET")
            .env("RUST_BACKTRACE", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("spawn sc daemon");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if let Ok(Some(st)) = self.child.as_mut().unwrap().try_wait() {
                self.child = None;
                panic!(
                    "sc daemon exited before listening ({st})\n--- daemon log:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "sc daemon did not listen on {} within {START_TIMEOUT:?}\n--- daemon log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Remember the cgroup subtree for cleanup (best effort).
        let out = crate::run(self.sc_cmd(&["status", "--json"]), Duration::from_secs(5));
        if out.code() == Some(0)
            && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
        {
            for p in subtrees_of(&v) {
                if !self.seen_subtrees.contains(&p) {
                    self.seen_subtrees.push(p);
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
    /// Pid of the running daemon process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    /// What the daemon wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A `Command` for the `sc` binary talking to this daemon (`SC_SOCKET`
    /// set, cwd the tempdir).
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(sc_bin());
        cmd.env("SC_SOCKET", &self.socket)
            .env("RUST_BACKTRACE", "1")
            .current_dir(self.dir.path());
        cmd
    }

    fn sc_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.cmd();
        cmd.args(args);
        cmd
    }

    /// Run `sc ARGS` to completion (bounded by [`CMD_TIMEOUT`]).
    #[track_caller]
    pub fn sc(&self, args: &[&str]) -> RunOutput {
        crate::run(self.sc_cmd(args), CMD_TIMEOUT)
    }

    /// Start `sc ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> ScChild {
        spawn(self.sc_cmd(args), None)
    }

    /// A running job (`sc exec --json --mem MEM`) that holds the host's
    /// memory until the returned file is created (it gives up by itself
    /// after 30 s). Returns once it has started.
    #[track_caller]
    pub fn hold_memory(&self, mem: &str) -> (ScChild, PathBuf) {
        let release = self.dir().join("release");
        let mut blocker = self.spawn(&[
            "exec",
            "--json",
            "--mem",
            mem,
            "--",
            "sh",
            "-c",
            &wait_for_file_script(&release),
        ]);
        blocker.wait_event("started", Duration::from_secs(10));
        (blocker, release)
    }

    /// The jobs of `sc ps --json` (its `"jobs"` array), which must succeed.
    #[track_caller]
    pub fn ps(&self) -> Vec<Value> {
        let out = self.sc(&["ps", "--json"]);
        out.assert_success();
        match out.json() {
            Value::Object(mut o) => match o.remove("jobs") {
                Some(Value::Array(jobs)) => jobs,
                other => panic!("sc ps --json has no \"jobs\" array: {other:?}\n{out}"),
            },
            other => panic!("sc ps --json is not an object: {other}\n{out}"),
        }
    }

    /// The services of `sc ps --json` (its `"services"` array).
    #[track_caller]
    pub fn ps_services(&self) -> Vec<Value> {
        let out = self.sc(&["ps", "--json"]);
        out.assert_success();
        match out.json()["services"].clone() {
            Value::Array(s) => s,
            other => panic!("sc ps --json has no \"services\" array: {other}\n{out}"),
        }
    }

    /// The job with this id in `sc ps --json`, if listed.
    #[track_caller]
    pub fn ps_job(&self, id: u64) -> Option<Value> {
        self.ps().into_iter().find(|j| j["id"] == id)
    }

    /// `sc status --json`, which must succeed.
    #[track_caller]
    pub fn status(&self) -> Value {
        let out = self.sc(&["status", "--json"]);
        out.assert_success();
        out.json()
    }

    /// The daemon's cgroup subtree dirs (`backend.subtree` of `sc status`).
    #[track_caller]
    pub fn subtrees(&self) -> Vec<PathBuf> {
        subtrees_of(&self.status())
    }

    /// Where job `id`'s cgroups live: `<subtree>/jobs/<id>` for each subtree.
    #[track_caller]
    /// The job's cgroup dirs that exist now. A job has a dir only in the
    /// hierarchies it needs (on a hybrid host: memory and the unified tree,
    /// plus cpu/pids when limited), not under every subtree.
    pub fn job_cgroups(&self, id: u64) -> Vec<PathBuf> {
        self.subtrees()
            .into_iter()
            .map(|s| s.join("jobs").join(id.to_string()))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the daemon again with the same config and state dir (after
    /// [`kill9`](Self::kill9), or killing it first).
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn_daemon();
    }

    /// Stop the daemon cleanly (SIGTERM) and start it again with the same
    /// config and state dir. Panics if it does not exit within `timeout`
    /// after the SIGTERM (it is then SIGKILLed).
    #[track_caller]
    pub fn restart_clean(&mut self, timeout: Duration) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let start = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        panic!(
                            "sc daemon did not exit within {timeout:?} of SIGTERM\n--- daemon log:\n{}",
                            self.log()
                        );
                    }
                }
            }
        }
        self.spawn_daemon();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let start = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(5) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// `backend.subtree` of a `sc status --json` document.
pub(crate) fn subtrees_of(status: &Value) -> Vec<PathBuf> {
    status["backend"]["subtree"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop();
        // A service outlives a daemon that was SIGKILLed (or did not stop in
        // time): kill what is left in the services' cgroups.
        for s in &self.seen_subtrees {
            if s.starts_with("/sys/fs/cgroup") && s.components().count() > 5 {
                crate::kill_cgroup_procs(&s.join("services"));
            }
        }
        for s in &self.seen_subtrees {
            // Only below /sys/fs/cgroup, never a hierarchy root.
            if s.starts_with("/sys/fs/cgroup") && s.components().count() > 5 {
                remove_cgroup_tree(s);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- sc daemon log ({}):\n{}\n--- end of daemon log",
                self.log_path.display(),
                self.log()
            );
        }
    }
}
