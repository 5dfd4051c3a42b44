//! The CLI's side of the local socket: where the daemon is, connecting to it,
//! starting a private daemon when none listens, and the hello exchange.
//!
//! Socket lookup (DESIGN §4): `$SC_SOCKET`, else `/run/sc/sc.sock` when it
//! exists (a system daemon), else `$XDG_RUNTIME_DIR/sc/sc.sock`, else
//! `/tmp/sc-$UID/sc.sock`. Only the last two, the per-user sockets, are ever
//! auto-started: an explicit `SC_SOCKET` or a system socket that does not
//! answer is an error worth seeing, not something to paper over.

use crate::wire::{FrameReader, write_msg};
use anyhow::{Context, Result, anyhow, bail};
use sc_protocol::codec::FrameKind;
use sc_protocol::{PROTOCOL_VERSION, Request, Response};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

pub const SYSTEM_SOCKET: &str = "/run/sc/sc.sock";

/// Where to find the daemon, and whether we may start one there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketChoice {
    pub path: PathBuf,
    pub autostart: bool,
}

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The per-user socket a private daemon listens on.
pub fn private_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("sc").join("sc.sock"),
        None => PathBuf::from(format!("/tmp/sc-{}", uid())).join("sc.sock"),
    }
}

/// The per-user state dir of a private daemon.
pub fn private_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("sc");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/sc");
    }
    PathBuf::from(format!("/tmp/sc-{}", uid())).join("state")
}

pub fn choose_socket() -> SocketChoice {
    if let Some(p) = std::env::var_os("SC_SOCKET").filter(|v| !v.is_empty()) {
        return SocketChoice {
            path: PathBuf::from(p),
            autostart: false,
        };
    }
    if Path::new(SYSTEM_SOCKET).exists() {
        return SocketChoice {
            path: PathBuf::from(SYSTEM_SOCKET),
            autostart: false,
        };
    }
    SocketChoice {
        path: private_socket(),
        autostart: true,
    }
}

/// A connection that has completed the hello exchange.
pub struct Conn {
    pub reader: FrameReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Conn {
    pub async fn send(&mut self, req: &Request) -> Result<()> {
        write_msg(&mut self.writer, FrameKind::Request, req)
            .await
            .context("cannot send to the sc daemon")
    }

    /// Next response; an error if the daemon closed the connection.
    pub async fn recv(&mut self) -> Result<Response> {
        match self.reader.next::<Response>().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => bail!("the sc daemon closed the connection"),
            Err(e) => Err(anyhow!(e).context("cannot read from the sc daemon")),
        }
    }

    /// One request, one response.
    pub async fn call(&mut self, req: &Request) -> Result<Response> {
        self.send(req).await?;
        self.recv().await
    }
}

/// Connect and say hello, without starting anything.
pub async fn connect_to(path: &Path) -> Result<Conn> {
    connect_to_with(path, None).await
}

/// Connect and say hello; `first` is sent in the same write as the hello,
/// saving a round trip (the daemon answers hello first, then `first`).
pub async fn connect_to_with(path: &Path, first: Option<&Request>) -> Result<Conn> {
    connect_to_with_fd(path, first, None).await
}

/// [`connect_to_with`], passing `fd` along with the bytes (SCM_RIGHTS): the
/// daemon keeps it for `first` (`wire::FdReader`).
pub async fn connect_to_with_fd(
    path: &Path,
    first: Option<&Request>,
    fd: Option<BorrowedFd<'_>>,
) -> Result<Conn> {
    let stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("cannot connect to the sc daemon at {}", path.display()))?;
    let (r, w) = stream.into_split();
    let mut conn = Conn {
        reader: FrameReader::new(r, FrameKind::Response),
        writer: w,
    };
    let hello = Request::Hello {
        protocol: PROTOCOL_VERSION,
        client: format!("sc {}", env!("CARGO_PKG_VERSION")),
    };
    let mut bytes = sc_protocol::codec::encode_to_vec(FrameKind::Request, &hello)?;
    if let Some(first) = first {
        sc_protocol::codec::encode(FrameKind::Request, first, &mut bytes)?;
    }
    let mut rest: &[u8] = &bytes;
    // The descriptor is an optimisation (the daemon then releases the held
    // child itself): if the kernel will not pass it (a limit on descriptors
    // in flight), the bytes go without it and the client releases the child.
    // A dead connection fails the plain write below all the same.
    if let Some(fd) = fd
        && let Ok(sent) = send_with_fd(&conn.writer, rest, fd).await
    {
        rest = &rest[sent..];
    }
    tokio::io::AsyncWriteExt::write_all(&mut conn.writer, rest)
        .await
        .context("cannot send to the sc daemon")?;
    match conn.recv().await? {
        Response::Hello { .. } => Ok(conn),
        Response::Error { message, .. } => bail!("the sc daemon refused us: {message}"),
        other => bail!("unexpected answer to hello: {other:?}"),
    }
}

/// Send the first part of `bytes` with `fd` attached; returns how many
/// bytes went (the caller writes the rest).
async fn send_with_fd(
    w: &OwnedWriteHalf,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let stream = w.as_ref();
    let fds = [fd.as_raw_fd()];
    loop {
        stream.writable().await?;
        let res = stream.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[std::io::IoSlice::new(bytes)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match res {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Connect to the chosen daemon, starting a private one if allowed and
/// nothing listens.
pub async fn connect() -> Result<Conn> {
    connect_with(None).await
}

/// [`connect`], sending `first` right behind the hello.
pub async fn connect_with(first: Option<&Request>) -> Result<Conn> {
    connect_with_fd(first, None).await
}

/// [`connect_with`], passing `fd` with `first` (see [`connect_to_with_fd`]).
pub async fn connect_with_fd(first: Option<&Request>, fd: Option<BorrowedFd<'_>>) -> Result<Conn> {
    let choice = choose_socket();
    match connect_to_with_fd(&choice.path, first, fd).await {
        Ok(c) => Ok(c),
        Err(e) if choice.autostart && daemon_absent(&e) => {
            start_private_daemon(&choice.path)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match connect_to_with_fd(&choice.path, first, fd).await {
                    Ok(c) => return Ok(c),
                    Err(e) if Instant::now() > deadline => {
                        let log = private_state_dir().join("daemon.log");
                        return Err(e.context(format!(
                            "started a private sc daemon but it did not answer within 10 s (its log: {})",
                            log.display()
                        )));
                    }
                    Err(_) => {}
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Is this connect error "nobody listens" (as opposed to, say, permission)?
pub fn daemon_absent(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        )
    })
}

/// Start `scd daemon --private` in the background, detached from our session
/// and terminal, logging to the state dir. Two racing starters are fine: the
/// daemon takes a lock in its state dir and the loser exits.
fn start_private_daemon(socket: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = crate::cli::front::full_exe().map_err(|e| anyhow!(e))?;
    let state = private_state_dir();
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create state dir {}", state.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("daemon.log"))
        .with_context(|| format!("cannot open {}", state.join("daemon.log").display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--private")
        .arg("--socket")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our
    // terminal so a Ctrl-C aimed at this job does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn().context("cannot start a private sc daemon")?;
    Ok(())
}
