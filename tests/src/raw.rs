//! A raw client of the daemon's socket, for malformed-input tests.

use sc_protocol::codec::{FrameDecoder, FrameKind, encode_to_vec};
use sc_protocol::{CodecError, PROTOCOL_VERSION, Request, Response};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// What came back on a raw connection.
#[derive(Debug)]
pub enum RawReply {
    /// One whole response frame.
    Frame(Response),
    /// The daemon closed the connection (EOF or reset) before a whole frame.
    Closed,
    /// Bytes that are not a valid response frame.
    Undecodable(CodecError),
    /// Nothing within the timeout.
    TimedOut,
}

pub struct RawClient {
    stream: UnixStream,
    dec: FrameDecoder,
}

impl RawClient {
    #[track_caller]
    pub fn connect(socket: &Path) -> RawClient {
        let stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        RawClient {
            stream,
            dec: FrameDecoder::new(FrameKind::Response),
        }
    }

    /// Write bytes as they are. A write error (the daemon already closed) is
    /// returned, not a panic.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    #[track_caller]
    pub fn send(&mut self, req: &Request) {
        let bytes = encode_to_vec(FrameKind::Request, req).expect("encode request");
        self.send_bytes(&bytes).expect("send request");
    }

    /// Shut down our write side (the daemon sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// The next response, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> RawReply {
        let start = Instant::now();
        let mut buf = [0u8; 65536];
        loop {
            match self.dec.next_msg::<Response>() {
                Ok(Some(r)) => return RawReply::Frame(r),
                Ok(None) => {}
                Err(e) => return RawReply::Undecodable(e),
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return RawReply::TimedOut;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return RawReply::Closed,
                Ok(n) => self.dec.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return RawReply::TimedOut;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return RawReply::Closed,
            }
        }
    }

    /// After an error frame (or instead of one), the daemon must close the
    /// connection: true when EOF/reset arrives within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Send `Hello` and expect the daemon's `Hello` back.
    #[track_caller]
    pub fn hello(&mut self) {
        self.send(&Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "sc-tests".into(),
        });
        match self.recv(Duration::from_secs(5)) {
            RawReply::Frame(Response::Hello { protocol, .. }) => {
                assert_eq!(protocol, PROTOCOL_VERSION, "daemon speaks another protocol")
            }
            other => panic!("expected Hello back, got {other:?}"),
        }
    }
}
