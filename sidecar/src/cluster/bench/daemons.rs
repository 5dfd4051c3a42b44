//! `sc bench-gossip --daemons N`: real `sc daemon` processes with [cluster]
//! configs on 127.0.0.x, one SIGKILLed, timed until every other board shows
//! it dead.

use super::*;

/// One `sc daemon` with a `[cluster]` section.
pub(super) struct Daemon {
    name: String,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(&mut self) -> Result<()> {
        let exe = std::env::current_exe().context("locating the sc executable")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(exe)
            .arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .env_remove("SC_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the daemon {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// The board as this daemon answers `sc board --json`'s request.
    async fn board(&self) -> Result<BoardView> {
        let ask = async {
            let mut conn = crate::client::connect_to(&self.socket).await?;
            match conn.call(&Request::Board).await? {
                Response::Board(b) => Ok(*b),
                other => bail!("unexpected answer to Board: {other:?}"),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .context("the board request timed out")?
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Until every running daemon's board shows every daemon live.
pub(super) async fn wait_boards_live(daemons: &[Daemon], limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let mut all = true;
        for d in daemons {
            let ok = match d.board().await {
                Ok(b) => daemons
                    .iter()
                    .all(|x| b.hosts.iter().any(|h| h.name == x.name && h.live)),
                Err(_) => false,
            };
            if !ok {
                all = false;
                break;
            }
        }
        if all {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            let logs: Vec<String> = daemons
                .iter()
                .map(|d| d.log.display().to_string())
                .collect();
            bail!(
                "the daemons' boards did not all show {} live hosts within {} s (logs: {})",
                daemons.len(),
                limit.as_secs(),
                logs.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn daemon_failures(
    count: usize,
    runs: usize,
    pki: &Pki,
    root: &Path,
) -> Result<Times> {
    let mut daemons = Vec::with_capacity(count);
    let mut listens = Vec::with_capacity(count);
    for k in 1..=count {
        let ip = Ipv4Addr::new(127, 0, 0, k as u8);
        listens.push(free_udp_addrs(ip, 1)?[0]);
    }
    for (k, listen) in listens.iter().enumerate() {
        let name = node_name(k);
        pki.issue(&name)?;
        let certs = pki.dir(&name);
        let dir = root.join("daemons").join(&name);
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("sc.sock");
        let config = dir.join("sidecar.toml");
        // Only what a host must say; everything else at the daemon's defaults.
        let text = format!(
            "[daemon]\nsocket = {socket:?}\nstate_dir = {state:?}\n\n[cluster]\nlisten = \"{listen}\"\nseeds = [\"{seed}\"]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n",
            socket = socket.display().to_string(),
            state = dir.join("state").display().to_string(),
            seed = listens[0],
            ca = certs.join(CA_CERT_FILE).display().to_string(),
            cert = certs.join(NODE_CERT_FILE).display().to_string(),
            key = certs.join(NODE_KEY_FILE).display().to_string(),
        );
        std::fs::write(&config, text)?;
        daemons.push(Daemon {
            name,
            config,
            socket,
            log: dir.join("daemon.log"),
            child: None,
        });
    }
    for d in &mut daemons {
        d.start()?;
    }
    let warm = wait_boards_live(&daemons, Duration::from_secs(30)).await?;
    progress(format!(
        "{count} daemons: every board shows every host live after {} ms",
        warm.as_millis()
    ));
    let mut times = Times::default();
    for r in 0..runs {
        tokio::time::sleep(SETTLE).await;
        let v = count - 1 - r % (count - 1);
        let victim = daemons[v].name.clone();
        let mut child = daemons[v].child.take().context("victim not running")?;
        let start = Instant::now();
        child.kill().context("SIGKILL")?;
        let mut seen: Vec<Option<Duration>> = vec![None; count];
        seen[v] = Some(Duration::ZERO);
        loop {
            for (i, d) in daemons.iter().enumerate() {
                if seen[i].is_some() {
                    continue;
                }
                if let Ok(b) = d.board().await
                    && b.hosts.iter().any(|h| h.name == victim && !h.live)
                {
                    seen[i] = Some(start.elapsed());
                }
            }
            if seen.iter().all(Option::is_some) {
                break;
            }
            if start.elapsed() > MEASURE_LIMIT {
                bail!("{victim} was still live on a board after {MEASURE_LIMIT:?}");
            }
            tokio::time::sleep(BOARD_POLL).await;
        }
        let _ = child.wait();
        let mut others: Vec<Duration> = seen
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != v)
            .filter_map(|(_, t)| *t)
            .collect();
        others.sort();
        let total = *others.last().unwrap_or(&Duration::ZERO);
        progress(format!(
            "{count} daemons: kill {}: {victim} dead on every other board in {} ms, on the first in {} ms",
            r + 1,
            total.as_millis(),
            others[0].as_millis()
        ));
        times.total.push(total);
        times.first.push(others[0]);
        // Restart it (same config: same address, a new generation).
        daemons[v].start()?;
        wait_boards_live(&daemons, Duration::from_secs(30)).await?;
    }
    for d in &mut daemons {
        d.stop();
    }
    Ok(times)
}

// ---- report -------------------------------------------------------------
