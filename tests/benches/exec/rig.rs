//! The exec bench's rig: a private `sc daemon` and a private task-spooler
//! server in a temp dir, the environments that point `sc` and `tsp` at
//! them, the daemon's log, and their teardown on drop.

use super::{PARALLEL, Res};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon, the tsp server and the temp dir; torn down on drop so an
/// early error leaves nothing running.
pub(crate) struct Rig {
    dir: tempfile::TempDir,
    sc: PathBuf,
    tsp: PathBuf,
    daemon: Option<Child>,
    daemon_log: PathBuf,
    pub(crate) sc_env: Vec<(String, String)>,
    pub(crate) tsp_env: Vec<(String, String)>,
    tsp_started: bool,
}

impl Rig {
    pub(crate) fn start(sc: PathBuf, tsp: PathBuf) -> Res<Rig> {
        let dir = tempfile::Builder::new()
            .prefix("sc-bench-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let root = dir.path().to_path_buf();
        let socket = root.join("sc.sock");
        let config = root.join("sidecar.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n",
                socket.display(),
                root.join("state").display()
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let tsp_tmp = root.join("tsp-out");
        std::fs::create_dir(&tsp_tmp)
            .map_err(|e| format!("cannot make {}: {e}", tsp_tmp.display()))?;
        let daemon_log = root.join("daemon.log");
        let mut rig = Rig {
            sc_env: vec![("SC_SOCKET".into(), socket.display().to_string())],
            tsp_env: vec![
                (
                    "TS_SOCKET".into(),
                    root.join("ts.sock").display().to_string(),
                ),
                ("TS_MAXFINISHED".into(), "10".into()),
                ("TS_SLOTS".into(), PARALLEL.to_string()),
                ("TMPDIR".into(), tsp_tmp.display().to_string()),
            ],
            dir,
            sc,
            tsp,
            daemon: None,
            daemon_log,
            tsp_started: false,
        };
        let log = File::create(&rig.daemon_log)
            .map_err(|e| format!("cannot create the daemon log: {e}"))?;
        let child = Command::new(&rig.sc)
            .arg("daemon")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start `sc daemon`: {e}"))?;
        rig.daemon = Some(child);
        rig.wait_for_socket(&socket)?;
        // The tsp server starts on first use; start it now with 2 slots.
        rig.tsp_started = true;
        let mut slots = Command::new(&rig.tsp);
        slots
            .args(["-S", &PARALLEL.to_string()])
            .envs(rig.tsp_env.iter().map(|(k, v)| (k, v)));
        stdout_of(slots, &format!("tsp -S {PARALLEL}"))?;
        Ok(rig)
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn wait_for_socket(&mut self, socket: &Path) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if UnixStream::connect(socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.daemon.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.daemon = None;
                return Err(format!(
                    "`sc daemon` exited with {status} before listening; its log:\n{}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "`sc daemon` did not listen on {} within 15 s; its log:\n{}",
                    socket.display(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `cgroups:` line of `sc status`.
    pub(crate) fn backend_line(&self) -> Res<String> {
        let mut status = Command::new(&self.sc);
        status
            .arg("status")
            .envs(self.sc_env.iter().map(|(k, v)| (k, v)));
        let text = stdout_of(status, "sc status")?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("cgroups:"))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "(no cgroups line in `sc status`)".into()))
    }

    pub(crate) fn log_len(&self) -> u64 {
        std::fs::metadata(&self.daemon_log)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    pub(crate) fn log_since(&self, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.daemon_log)
            && f.seek(SeekFrom::Start(from)).is_ok()
        {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.tsp_started {
            let _ = Command::new(&self.tsp)
                .arg("-K")
                .envs(self.tsp_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.daemon.take() {
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// Run `cmd` (no stdin) to its end: its stdout, or an error naming `what`
/// with its stderr.
fn stdout_of(mut cmd: Command, what: &str) -> Res<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{what}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{what}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
