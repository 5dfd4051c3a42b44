//! Frame codec of the local API.
//!
//! A frame is a fixed 8-byte header followed by a payload:
//!
//! ```text
//! 0      2        3       4                8
//! | "sc" | version | kind | payload length (u32, big endian) | payload ... |
//! ```
//!
//! The payload is one `Request` (kind 1) or `Response` (kind 2) encoded with
//! bincode 2.0.1 (standard config). The header is checked before any payload
//! is buffered, so an oversize or foreign frame is refused after 8 bytes, and
//! a payload must decode to exactly its length (bincode ignores trailing bytes
//! by itself; we do not).
//!
//! Nothing here touches a socket: [`encode`] appends to a `Vec<u8>` and
//! [`FrameDecoder`] is fed bytes by whoever reads them.

use serde::{Serialize, de::DeserializeOwned};

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"sc";
/// Version of the local API spoken by this build. A peer with another version
/// gets an error frame and a closed connection.
pub const PROTOCOL_VERSION: u8 = 3;
/// Largest payload accepted, in bytes. Requests carry argv and a few numbers;
/// the largest response is a `ps` listing, far below this.
pub const MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;
/// Header size in bytes.
pub const HEADER_LEN: usize = 8;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Request = 1,
    Response = 2,
}

impl FrameKind {
    pub fn from_code(code: u8) -> Option<FrameKind> {
        match code {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Response),
            _ => None,
        }
    }
}

/// Why bytes could not be turned into a message (or back).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("not an sc frame: bad magic bytes {0:02x?} (expected \"sc\")")]
    BadMagic([u8; 2]),
    #[error("unsupported protocol version {got} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { got: u8 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("unexpected frame kind {got:?} (expected {expected:?})")]
    WrongKind { got: FrameKind, expected: FrameKind },
    #[error("frame too large: {len} bytes (limit {MAX_FRAME_LEN})")]
    TooLarge { len: u64 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("malformed payload: {trailing} trailing bytes after the message")]
    TrailingBytes { trailing: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_FRAME_LEN as usize }>()
}

/// Append one frame carrying `msg` to `out`.
pub fn encode<T: Serialize>(kind: FrameKind, msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0; 4]);
    let written = bincode::serde::encode_into_std_write(msg, out, config())
        .map_err(|e| CodecError::Malformed(format!("cannot encode: {e}")));
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    if written as u64 > MAX_FRAME_LEN as u64 {
        out.truncate(start);
        return Err(CodecError::TooLarge {
            len: written as u64,
        });
    }
    out[start + 4..start + 8].copy_from_slice(&(written as u32).to_be_bytes());
    Ok(())
}

/// Encode one frame into a fresh buffer.
pub fn encode_to_vec<T: Serialize>(kind: FrameKind, msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode(kind, msg, &mut out)?;
    Ok(out)
}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameKind,
    pub len: u32,
}

/// Check the 8 header bytes. Errors name what was wrong.
pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, CodecError> {
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(CodecError::BadMagic(magic));
    }
    if bytes[2] != PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion { got: bytes[2] });
    }
    let kind = FrameKind::from_code(bytes[3]).ok_or(CodecError::UnknownKind(bytes[3]))?;
    let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge { len: len as u64 });
    }
    Ok(Header { kind, len })
}

/// Decode a payload that must be exactly one message.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::TrailingBytes {
            trailing: payload.len() - used,
        });
    }
    Ok(msg)
}

/// Incremental decoder: feed it bytes as they arrive, take whole messages out.
///
/// After an error the stream is out of sync and the connection must be
/// closed; the decoder keeps returning the same error.
#[derive(Debug)]
pub struct FrameDecoder {
    expected: FrameKind,
    buf: Vec<u8>,
    failed: Option<CodecError>,
}

impl FrameDecoder {
    /// A decoder that accepts only frames of `expected` kind.
    pub fn new(expected: FrameKind) -> FrameDecoder {
        FrameDecoder {
            expected,
            buf: Vec::new(),
            failed: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_msg<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.next_inner();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.buf.clear();
        }
        r
    }

    fn next_inner<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        // The magic is checked as soon as two bytes are in, so a stray text
        // client is refused without waiting for a full header.
        if self.buf.len() >= 2 && self.buf[..2] != MAGIC {
            return Err(CodecError::BadMagic([self.buf[0], self.buf[1]]));
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&self.buf[..HEADER_LEN]);
        let header = parse_header(&head)?;
        if header.kind != self.expected {
            return Err(CodecError::WrongKind {
                got: header.kind,
                expected: self.expected,
            });
        }
        let end = HEADER_LEN + header.len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let msg = decode_payload(&self.buf[HEADER_LEN..end])?;
        self.buf.drain(..end);
        Ok(Some(msg))
    }
}
