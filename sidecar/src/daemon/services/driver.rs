//! One task per service: the I/O shell around `sc_supervisor::service::
//! ServiceMachine`. It starts the process (in `services/<name>`), pumps its
//! output into the rotated log, runs probes, waits for exits, fires the
//! machine's timers, and publishes the status the table and the readiness
//! gate read. All decisions are the machine's; this only carries them out.

use super::probe_run::{self, ExecContext};
use super::spawn::{self, Launch, RunAs};
use super::{Control, ServiceEntry, ServiceStatus};
use crate::daemon::Shared;
use crate::daemon::logs::RotatingLog;
use crate::daemon::store::Store;
use sc_protocol::{ServiceSource, ServiceSpec, ServiceState};
use sc_supervisor::service::{Action, Event, ExitReason, MachineConfig, ProbeKind, ServiceMachine};
use sc_supervisor::{BackendKind, Cgroup, CgroupTree, Limits};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

/// Start supervising a service; returns its table entry.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    shared: &Shared,
    tree: &CgroupTree,
    store: &Store,
    spec: ServiceSpec,
    source: ServiceSource,
    owner: u32,
    run_as: Option<RunAs>,
    start: bool,
    ports: Vec<(String, u16)>,
) -> ServiceEntry {
    // The process and its exec probes see the leased ports; the entry
    // keeps the definition as given (it is what is persisted and shown).
    let mut run_spec = spec.clone();
    run_spec.env.extend(crate::ports::env_of(&ports));
    // Until the driver's first publication, say what it is about to do:
    // a `--wait-for` arriving now must wait, not find it stopped.
    let status = Arc::new(Mutex::new(ServiceStatus {
        state: if start {
            ServiceState::Starting
        } else {
            ServiceState::Stopped
        },
        ..ServiceStatus::default()
    }));
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = Driver {
        shared: shared.clone(),
        machine: ServiceMachine::new(MachineConfig::from(&spec)),
        log: open_log(store, &spec),
        spec: run_spec,
        clear_env: source == ServiceSource::Runtime,
        run_as,
        tree: tree.clone(),
        status: Arc::clone(&status),
        child: None,
        cgroup: None,
        generation: 0,
        oom_baseline: 0,
        removing: None,
        pumps: Vec::new(),
    };
    tokio::spawn(driver.run(rx, start));
    ServiceEntry {
        spec,
        source,
        owner,
        status,
        control: tx,
        ports,
    }
}

fn open_log(store: &Store, spec: &ServiceSpec) -> Option<RotatingLog> {
    match RotatingLog::open(
        store.logs_dir(),
        &spec.name,
        spec.log_max_bytes,
        spec.log_keep,
    ) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(service = spec.name, "cannot open the service log: {e}");
            None
        }
    }
}

/// What arrives at the driver besides control orders.
enum Input {
    Probe {
        kind: ProbeKind,
        generation: u64,
        ok: bool,
        detail: String,
    },
    Output(Vec<u8>),
}

struct Driver {
    shared: Shared,
    machine: ServiceMachine,
    log: Option<RotatingLog>,
    spec: ServiceSpec,
    clear_env: bool,
    run_as: Option<RunAs>,
    tree: CgroupTree,
    status: Arc<Mutex<ServiceStatus>>,
    child: Option<tokio::process::Child>,
    cgroup: Option<Cgroup>,
    /// Bumped at every spawn, so a late probe result of an earlier process
    /// is dropped.
    generation: u64,
    oom_baseline: u64,
    removing: Option<oneshot::Sender<()>>,
    /// The tasks copying the current process's stdout and stderr.
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

impl Driver {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>, start: bool) {
        let (input_tx, mut input_rx) = mpsc::unbounded_channel::<Input>();
        if start {
            self.machine.start(Instant::now());
        }
        loop {
            self.drain(&input_tx).await;
            self.publish();
            if self.removing.is_some()
                && self.child.is_none()
                && matches!(
                    self.machine.state(),
                    ServiceState::Stopped | ServiceState::Failed
                )
            {
                if let Some(cg) = self.cgroup.take() {
                    let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
                }
                if let Some(done) = self.removing.take() {
                    let _ = done.send(());
                }
                return;
            }
            let deadline = self.machine.poll_timeout();
            tokio::select! {
                order = control.recv() => {
                    let now = Instant::now();
                    match order {
                        Some(Control::Start) => self.machine.start(now),
                        Some(Control::Stop) => self.machine.stop(now),
                        Some(Control::Restart) => self.machine.restart(now),
                        Some(Control::Remove(done)) => {
                            self.removing = Some(done);
                            self.machine.stop(now);
                        }
                        // The table is gone (daemon stopping): stop and end.
                        None => {
                            let (tx, _rx) = oneshot::channel();
                            self.removing = Some(tx);
                            self.machine.stop(now);
                        }
                    }
                }
                status = wait_child(&mut self.child) => self.exited(status, &mut input_rx).await,
                Some(input) = input_rx.recv() => match input {
                    Input::Probe { kind, generation, ok, detail } => {
                        if generation == self.generation && self.child.is_some() {
                            if !ok {
                                use crate::daemon::metrics::Probe;
                                use sc_supervisor::service::ProbeKind;
                                self.shared.metrics.record_probe_failure(match kind {
                                    ProbeKind::Startup => Probe::Startup,
                                    ProbeKind::Readiness => Probe::Readiness,
                                    ProbeKind::Liveness => Probe::Liveness,
                                });
                            }
                            self.machine.handle_probe(Instant::now(), kind, ok, detail);
                        }
                    }
                    Input::Output(bytes) => self.write_log(&bytes),
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.machine.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Carry out actions and record events until the machine has nothing
    /// more to say (actions such as a spawn produce new inputs).
    async fn drain(&mut self, input_tx: &mpsc::UnboundedSender<Input>) {
        loop {
            let mut busy = false;
            while let Some(action) = self.machine.poll_action() {
                busy = true;
                self.act(action, input_tx).await;
            }
            while let Some(event) = self.machine.poll_event() {
                busy = true;
                self.record(event);
            }
            if !busy {
                return;
            }
        }
    }

    async fn act(&mut self, action: Action, input_tx: &mpsc::UnboundedSender<Input>) {
        let now = Instant::now();
        match action {
            Action::Spawn => match self.launch(input_tx).await {
                Ok(pid) => {
                    self.write_marker(&format!("started pid {pid}"));
                    self.machine.handle_spawned(now);
                }
                Err(why) => {
                    self.write_marker(&format!("cannot start: {why}"));
                    tracing::warn!(service = self.spec.name, "cannot start: {why}");
                    self.machine.handle_spawn_failed(now, why);
                }
            },
            Action::Terminate => self.signal(nix::sys::signal::Signal::SIGTERM),
            Action::Kill => {
                if let Some(cg) = self.cgroup.clone() {
                    let _ = tokio::task::spawn_blocking(move || cg.kill_all()).await;
                } else {
                    self.signal(nix::sys::signal::Signal::SIGKILL);
                }
            }
            Action::RunProbe(kind) => {
                let Some(spec) = self.machine.probe_spec(kind).cloned() else {
                    return;
                };
                let ctx = ExecContext {
                    cwd: self.spec.cwd.clone(),
                    env: self.spec.env.clone(),
                    clear_env: self.clear_env,
                    user: self.run_as.clone(),
                };
                let tx = input_tx.clone();
                let generation = self.generation;
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(spec.timeout_ms);
                    let (ok, detail) = probe_run::run(&spec.target, timeout, &ctx).await;
                    let _ = tx.send(Input::Probe {
                        kind,
                        generation,
                        ok,
                        detail,
                    });
                });
            }
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        match (&self.cgroup, &self.child) {
            (Some(cg), _) => {
                let _ = cg.signal_all(sig);
            }
            (None, Some(child)) => {
                // The service leads its own process group (setsid).
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), sig);
                }
            }
            (None, None) => {}
        }
    }

    /// Start the process in a fresh `services/<name>` group.
    async fn launch(&mut self, input_tx: &mpsc::UnboundedSender<Input>) -> Result<u32, String> {
        let enforcing = !matches!(self.tree.info().kind, BackendKind::None);
        let cgroup = if enforcing {
            let tree = self.tree.clone();
            let rel = format!("services/{}", self.spec.name);
            let limits = Limits {
                mem_max: self.spec.mem_limit,
                mem_high: None,
                cpu_milli: self.spec.cpu_milli,
                pids_max: self.spec.pids,
            };
            let group = tokio::task::spawn_blocking(move || {
                // Leftovers of the previous run (or daemon) go first.
                if let Ok(Some(old)) = tree.open(&rel) {
                    let _ = old.remove();
                }
                tree.create(&rel, &limits)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot create its cgroup: {e}"))?;
            Some(group)
        } else {
            None
        };
        self.oom_baseline = cgroup
            .as_ref()
            .and_then(|c| c.usage().ok())
            .and_then(|u| u.oom_kills)
            .unwrap_or(0);
        let launch = Launch {
            argv: &self.spec.argv,
            cwd: &self.spec.cwd,
            clear_env: self.clear_env,
            env: &self.spec.env,
            user: self.run_as.as_ref(),
            cgroup_procs: cgroup
                .as_ref()
                .map(|c| {
                    c.paths()
                        .into_iter()
                        .map(|p| p.join("cgroup.procs"))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut child =
            spawn::launch(&launch).map_err(|e| format!("{}: {e}", self.spec.argv[0]))?;
        let pid = child.id().unwrap_or(0);
        self.generation += 1;
        if let Some(out) = child.stdout.take() {
            self.pumps.push(pump(out, input_tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            self.pumps.push(pump(err, input_tx.clone()));
        }
        self.child = Some(child);
        self.cgroup = cgroup;
        tracing::info!(service = self.spec.name, pid, "service started");
        Ok(pid)
    }

    /// The process ended: say why, clear what it left, tell the machine.
    async fn exited(
        &mut self,
        status: std::io::Result<std::process::ExitStatus>,
        input_rx: &mut mpsc::UnboundedReceiver<Input>,
    ) {
        use std::os::unix::process::ExitStatusExt;
        self.child = None;
        let oom = self
            .cgroup
            .as_ref()
            .and_then(|c| c.usage().ok())
            .and_then(|u| u.oom_kills)
            .is_some_and(|n| n > self.oom_baseline);
        let reason = match status {
            Ok(s) if oom && s.signal() == Some(libc::SIGKILL) => ExitReason::Oom,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => ExitReason::Code(c),
                (None, Some(sig)) => ExitReason::Signal(sig),
                (None, None) => ExitReason::Code(-1),
            },
            Err(e) => ExitReason::SpawnFailed(format!("cannot wait for it: {e}")),
        };
        // No process of a service outlives it (KillMode=control-group).
        if let Some(cg) = self.cgroup.clone() {
            let _ = tokio::task::spawn_blocking(move || cg.kill_all()).await;
        }
        // The run's last output goes in the log before its end: wait for
        // the pipes to close (everything that held them is dead now; a
        // process outside any cgroup may keep one open, hence the bound).
        for pump in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
        }
        while let Ok(input) = input_rx.try_recv() {
            if let Input::Output(bytes) = input {
                self.write_log(&bytes);
            }
        }
        self.write_marker(&format!("exited: {reason}"));
        tracing::info!(service = self.spec.name, %reason, "service exited");
        self.machine.handle_exit(Instant::now(), reason);
    }

    fn record(&mut self, event: Event) {
        let name = self.spec.name.clone();
        let line = match &event {
            Event::Restarting { reason, delay } => Some(format!(
                "restarting in {} ({reason})",
                sc_protocol::units::format_duration(*delay)
            )),
            Event::BreakerTripped { failures } => Some(format!(
                "failed: {failures} failures within {}; not restarting until `sc service restart {name}`",
                sc_protocol::units::format_duration(Duration::from_millis(
                    self.spec.restart.failure_window_ms
                ))
            )),
            Event::LivenessFailed { detail } => Some(format!("liveness probe failed: {detail}")),
            Event::StartupFailed { detail } => Some(format!("startup probe failed: {detail}")),
            Event::Ready => Some("ready".into()),
            Event::NotReady { detail } => Some(format!("not ready: {detail}")),
            Event::Stopped => Some("stopped".into()),
            _ => None,
        };
        if let Some(line) = line {
            tracing::info!(service = name, "{line}");
            self.write_marker(&line);
        }
        // Readiness and state changes can let waiting jobs through (or fail them).
        self.shared.kick();
    }

    fn write_log(&mut self, bytes: &[u8]) {
        if let Some(log) = &mut self.log
            && let Err(e) = log.write(bytes)
        {
            tracing::warn!(
                service = self.spec.name,
                "cannot write the service log: {e}"
            );
        }
    }

    fn write_marker(&mut self, text: &str) {
        if let Some(log) = &mut self.log {
            let _ = log.write_marker(text);
        }
    }

    fn publish(&self) {
        let m = &self.machine;
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let was_ready = st.ready;
        st.state = m.state();
        st.ready = m.ready();
        st.restarts = m.restarts();
        st.last_reason = m.last_reason().map(str::to_string);
        st.pid = self.child.as_ref().and_then(|c| c.id());
        st.running_since = m.running_since();
        st.next_start = m.next_start();
        st.cgroup = self.cgroup.clone();
        if was_ready != st.ready {
            self.shared.kick();
        }
    }
}

/// Copy one output stream into the driver, chunk by chunk, until EOF.
fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    tx: mpsc::UnboundedSender<Input>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(Input::Output(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

async fn wait_child(
    child: &mut Option<tokio::process::Child>,
) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
