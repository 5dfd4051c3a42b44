//! The `[metrics] listen` endpoint: a minimal HTTP/1.1 responder on a tokio
//! `TcpListener` serving `GET /metrics` (and `HEAD`), 404 for other paths,
//! 405 for other methods, one request per connection (`Connection: close`).
//!
//! A client gets [`HEADER_LIMIT`] bytes and [`REQUEST_TIMEOUT`] to send its
//! request head and the same time to take the answer, so a slow or hostile
//! one cannot hold a task or memory for long. Connections beyond
//! [`MAX_CONNECTIONS`] are closed at once.

use super::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const HEADER_LIMIT: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
const DRAIN_LIMIT: usize = 1 << 20;

/// Bind the endpoint; failing to is a start-up error (a configured endpoint
/// that silently does not exist would look like a dead host to Prometheus).
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("[metrics] listen: cannot listen on {addr}"))
}

pub async fn serve(shared: Shared, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(&shared, stream).await {
                tracing::debug!("metrics: {e}");
            }
        });
    }
}

async fn answer(shared: &Shared, mut stream: TcpStream) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("request head timed out"))??;
    let response = match head {
        Head::TooLarge => reply(431, "Request Header Fields Too Large", "", "text/plain"),
        Head::Request { method, path } => route(shared, &method, &path),
    };
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::other("response write timed out"))??;
    // Closing with unread input makes the kernel send a reset, which can
    // destroy the answer before the client read it: take what is left of
    // the request first, briefly and up to a bound.
    let mut rest = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while drained < DRAIN_LIMIT {
            match stream.read(&mut rest).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

enum Head {
    Request { method: String, path: String },
    TooLarge,
}

/// Reads up to the blank line ending the request head; the request line's
/// method and path (without a query) are all that is used.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n").or_else(|| find(&buf, b"\n\n")) {
            buf.truncate(end);
            break;
        }
        if buf.len() > HEADER_LIMIT {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the request ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(Head::Request { method, path })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn route(shared: &Shared, method: &str, path: &str) -> Vec<u8> {
    if path != "/metrics" {
        return reply(404, "Not Found", "not found: try /metrics\n", "text/plain");
    }
    match method {
        "GET" | "HEAD" => {
            let body = {
                let d = shared.daemon();
                shared.metrics.render(&d)
            };
            let mut r = reply(200, "OK", &body, "text/plain; version=0.0.4");
            if method == "HEAD" {
                let len = r.len() - body.len();
                r.truncate(len);
            }
            r
        }
        _ => {
            let mut r = reply(
                405,
                "Method Not Allowed",
                "only GET and HEAD\n",
                "text/plain",
            );
            let at = find(&r, b"\r\n").map(|i| i + 2).unwrap_or(0);
            r.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
            r
        }
    }
}

fn reply(code: u16, reason: &str, body: &str, content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
