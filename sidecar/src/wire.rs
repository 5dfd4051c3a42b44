//! Async framing over a Unix stream: the tokio side of `sc_protocol::codec`.
//!
//! Reading is cancel-safe (bytes read are kept in the decoder), so a reader
//! can sit in a `select!` next to other events.

use sc_protocol::codec::{self, CodecError, FrameDecoder, FrameKind};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Reads whole messages of one kind from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, expected: FrameKind) -> Self {
        FrameReader {
            inner,
            decoder: FrameDecoder::new(expected),
            buf: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }

    /// The stream underneath (tests read it raw).
    #[cfg(test)]
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next message; `Ok(None)` when the peer closed cleanly between
    /// messages. A close in the middle of a frame is an error.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        loop {
            if let Some(msg) = self.decoder.next_msg()? {
                return Ok(Some(msg));
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                if self.decoder.buffered() == 0 {
                    return Ok(None);
                }
                return Err(WireError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a frame",
                )));
            }
            self.decoder.push(&self.buf[..n]);
        }
    }
}

/// Encode and write one message.
pub async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    kind: FrameKind,
    msg: &T,
) -> Result<(), WireError> {
    let bytes = codec::encode_to_vec(kind, msg)?;
    w.write_all(&bytes).await?;
    Ok(())
}
