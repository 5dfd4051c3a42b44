//! Async framing over a Unix stream: the tokio side of `sc_protocol::codec`.
//!
//! Reading is cancel-safe (bytes read are kept in the decoder), so a reader
//! can sit in a `select!` next to other events.
//!
//! The daemon reads through [`FdReader`], which also takes the one file
//! descriptor an `sc exec` may pass along with its `Exec` (SCM_RIGHTS): the
//! write end of its held child's release pipe, so that the daemon can let
//! the child start itself, one process wake-up sooner (`cli/child.rs`).

use sc_protocol::codec::{self, CodecError, FrameDecoder, FrameKind};
use serde::{Serialize, de::DeserializeOwned};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

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

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
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

/// The read half of a Unix stream that keeps the last file descriptor a
/// peer passed with its bytes (SCM_RIGHTS). Only one is kept: the socket
/// is read with room for one, so the kernel closes any extra ones of a
/// message, and a newer one replaces (closes) an older one not taken.
/// Received descriptors are close-on-exec.
pub struct FdReader {
    inner: OwnedReadHalf,
    fd: Option<OwnedFd>,
    cmsg: Vec<u8>,
}

impl FdReader {
    pub fn new(inner: OwnedReadHalf) -> FdReader {
        FdReader {
            inner,
            fd: None,
            cmsg: nix::cmsg_space!([std::os::fd::RawFd; 1]),
        }
    }

    /// The descriptor passed with the bytes read so far, if any.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }
}

/// One non-blocking `recvmsg` into `buf`; a passed descriptor goes to `slot`.
fn recv_with_fd(
    sock: std::os::fd::RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
    slot: &mut Option<OwnedFd>,
) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock,
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed `fd` in our table
                    // for us; nothing else owns it.
                    *slot = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    Ok(msg.bytes)
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let FdReader { inner, fd, cmsg } = self.get_mut();
        let stream = inner.as_ref();
        let sock = stream.as_raw_fd();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            // `try_io` clears tokio's readiness when the read would block,
            // so that the next `poll_read_ready` waits for new bytes.
            let dst = buf.initialize_unfilled();
            match stream.try_io(Interest::READABLE, || recv_with_fd(sock, dst, cmsg, fd)) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_protocol::Request;
    use std::os::fd::AsFd;

    /// Frames sent with `sendmsg` and one SCM_RIGHTS descriptor, as
    /// `sc exec` sends its hello and `Exec`.
    fn send_with(sock: &std::os::unix::net::UnixStream, bytes: &[u8], fd: Option<&OwnedFd>) {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let raw;
        let cmsgs = match fd {
            Some(fd) => {
                raw = [fd.as_raw_fd()];
                vec![ControlMessage::ScmRights(&raw)]
            }
            None => vec![],
        };
        let n = sendmsg::<()>(
            sock.as_raw_fd(),
            &[std::io::IoSlice::new(bytes)],
            &cmsgs,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(n, bytes.len());
    }

    /// Our end of a socket pair, and the daemon's reader on the other end
    /// (with its write half, kept open).
    fn connected() -> (
        std::os::unix::net::UnixStream,
        FrameReader<FdReader>,
        tokio::net::unix::OwnedWriteHalf,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let (r, w) = tokio::net::UnixStream::from_std(theirs)
            .unwrap()
            .into_split();
        (
            ours,
            FrameReader::new(FdReader::new(r), FrameKind::Request),
            w,
        )
    }

    fn frames(reqs: &[Request]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            codec::encode(FrameKind::Request, r, &mut out).unwrap();
        }
        out
    }

    #[tokio::test]
    async fn a_descriptor_passed_with_the_bytes_is_kept_until_taken() {
        let (ours, mut reader, _w) = connected();
        let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
        send_with(
            &ours,
            &frames(&[Request::Ps, Request::Status]),
            Some(&pipe_w),
        );
        drop(pipe_w);
        assert!(matches!(
            reader.next::<Request>().await,
            Ok(Some(Request::Ps))
        ));
        let got = reader.get_mut().take_fd().expect("the passed descriptor");
        assert!(reader.get_mut().take_fd().is_none(), "taken once");
        // It is the same pipe: what we write through it comes out the
        // read end we kept.
        nix::unistd::write(got.as_fd(), b"go").unwrap();
        drop(got);
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&pipe_r, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"go");
        assert!(matches!(
            reader.next::<Request>().await,
            Ok(Some(Request::Status))
        ));
        // Plain bytes carry none; a close ends the stream cleanly.
        send_with(&ours, &frames(&[Request::Ps]), None);
        drop(ours);
        assert!(matches!(
            reader.next::<Request>().await,
            Ok(Some(Request::Ps))
        ));
        assert!(reader.get_mut().take_fd().is_none());
        assert!(matches!(reader.next::<Request>().await, Ok(None)));
    }

    #[tokio::test]
    async fn a_newer_descriptor_replaces_one_not_taken() {
        let (ours, mut reader, _w) = connected();
        let (first_r, first_w) = nix::unistd::pipe().unwrap();
        let (_second_r, second_w) = nix::unistd::pipe().unwrap();
        send_with(&ours, &frames(&[Request::Ps]), Some(&first_w));
        assert!(matches!(
            reader.next::<Request>().await,
            Ok(Some(Request::Ps))
        ));
        send_with(&ours, &frames(&[Request::Ps]), Some(&second_w));
        assert!(matches!(
            reader.next::<Request>().await,
            Ok(Some(Request::Ps))
        ));
        drop(first_w);
        // The first one was closed when the second arrived: its read end
        // sees end of file (no writer left anywhere).
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&first_r, &mut buf).unwrap(), 0);
        let kept = reader.get_mut().take_fd().expect("the newer descriptor");
        let st = nix::sys::stat::fstat(&kept).unwrap();
        let second = nix::sys::stat::fstat(&second_w).unwrap();
        assert_eq!((st.st_dev, st.st_ino), (second.st_dev, second.st_ino));
    }
}
