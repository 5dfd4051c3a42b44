//! Running one probe for real: an HTTP GET, a TCP connect, or a command.
//!
//! Each returns whether it passed and a short detail for logs and
//! `sc service ls`. The timeout covers the whole probe; a probe that does
//! not finish in time failed. The HTTP client is a minimal HTTP/1.1 GET
//! over tokio (status line only), enough for health endpoints.

use sc_protocol::ProbeTarget;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Who an exec probe runs as, where, with what environment.
#[derive(Debug, Clone)]
pub struct ExecContext {
    pub cwd: String,
    pub env: Vec<(String, String)>,
    pub clear_env: bool,
    pub user: Option<super::spawn::RunAs>,
}

/// Run `target` once, within `timeout`.
pub async fn run(target: &ProbeTarget, timeout: Duration, ctx: &ExecContext) -> (bool, String) {
    let fut = async {
        match target {
            ProbeTarget::Http { host, port, path } => http(host, *port, path).await,
            ProbeTarget::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(|_| (true, "connected".to_string()))
                .unwrap_or_else(|e| (false, format!("connect {host}:{port}: {e}"))),
            ProbeTarget::Exec { command } => exec(command, ctx).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => (
            false,
            format!(
                "{target}: no answer within {}",
                sc_protocol::units::format_duration(timeout)
            ),
        ),
    }
}

async fn http(host: &str, port: u16, path: &str) -> (bool, String) {
    let mut stream = match TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => return (false, format!("connect {host}:{port}: {e}")),
    };
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: sc-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return (false, format!("send to {host}:{port}: {e}"));
    }
    // The status line is all we need: read until its end (or 4 KiB).
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return (false, format!("read from {host}:{port}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("").trim();
    match parse_status(line) {
        Some(code) if (200..400).contains(&code) => (true, format!("HTTP {code}")),
        Some(code) => (false, format!("HTTP {code} from {path}")),
        None => (false, format!("not an HTTP answer: {line:?}")),
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn exec(command: &str, ctx: &ExecContext) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&ctx.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if ctx.clear_env {
        cmd.env_clear();
    }
    cmd.envs(ctx.env.iter().map(|(k, v)| (k, v)));
    if let Some(user) = &ctx.user {
        user.apply(&mut cmd);
    }
    let out = match cmd.output().await {
        Ok(o) => o,
        Err(e) => return (false, format!("cannot run probe command: {e}")),
    };
    if out.status.success() {
        (true, "exit 0".into())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.lines().last().unwrap_or("").trim();
        let status = match out.status.code() {
            Some(c) => format!("exit {c}"),
            None => "killed".into(),
        };
        if err.is_empty() {
            (false, status)
        } else {
            (false, format!("{status}: {err}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status("HTTP/1.0 302 Found"), Some(302));
        assert_eq!(parse_status("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(""), None);
    }

    fn ctx() -> ExecContext {
        ExecContext {
            cwd: "/".into(),
            env: vec![],
            clear_env: false,
            user: None,
        }
    }

    #[tokio::test]
    async fn http_probe_against_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let target = ProbeTarget::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/health".into(),
        };
        let (ok, detail) = run(&target, Duration::from_secs(2), &ctx()).await;
        assert!(ok, "{detail}");
        let (ok, detail) = run(&target, Duration::from_secs(2), &ctx()).await;
        assert!(!ok && detail.contains("503"), "{detail}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn tcp_and_exec_probes_and_timeouts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = ProbeTarget::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(run(&tcp, Duration::from_secs(2), &ctx()).await.0);
        drop(listener);
        let (ok, detail) = run(&tcp, Duration::from_secs(2), &ctx()).await;
        assert!(!ok && detail.contains("connect"), "{detail}");

        let yes = ProbeTarget::Exec {
            command: "exit 0".into(),
        };
        assert!(run(&yes, Duration::from_secs(5), &ctx()).await.0);
        let no = ProbeTarget::Exec {
            command: "echo broken >&2; exit 3".into(),
        };
        let (ok, detail) = run(&no, Duration::from_secs(5), &ctx()).await;
        assert!(
            !ok && detail.contains("exit 3") && detail.contains("broken"),
            "{detail}"
        );
        let slow = ProbeTarget::Exec {
            command: "sleep 5".into(),
        };
        let (ok, detail) = run(&slow, Duration::from_millis(200), &ctx()).await;
        assert!(!ok && detail.contains("no answer"), "{detail}");
    }
}
