//! The sending half of a client connection: replies are written at once
//! when the socket takes them, else kept in order for a writer task.
//!
//! The daemon runs on one thread. A reply that went through a channel to a
//! writer task waited until whatever sent it had finished its whole turn:
//! a `Granted` from a cluster grant waited for the rest of the engine step,
//! the gossip publish and the pokes to the other hosts before its `sc exec`
//! could let the job start — on the hand-over's critical path. Writing
//! straight into the socket (non-blocking; a local socket's buffer takes a
//! small frame at once) removes that wait. Order is kept: once anything is
//! queued, later replies queue behind it until the writer task has sent it.

use sc_protocol::Response;
use sc_protocol::codec::{self, FrameKind};
use std::sync::{Arc, Mutex};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;

/// The connection is gone (a write failed); nothing more will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A handle to send replies on one connection; clones share it. When the
/// last handle is dropped, the writer task sends what is queued, then shuts
/// the connection's write side.
#[derive(Clone)]
pub struct Replies {
    sender: Arc<Sender>,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replies")
    }
}

/// Dropped with the last [`Replies`]: tells the writer task to finish.
struct Sender {
    shared: Arc<Shared>,
}

struct Shared {
    half: OwnedWriteHalf,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// Bytes not yet written, in order.
    backlog: Vec<u8>,
    /// Every handle is gone: send the backlog, then stop.
    done: bool,
    /// A write failed: the connection is dead.
    broken: bool,
}

impl Replies {
    /// The handle and the writer task that sends what the socket could not
    /// take at once (it ends once every handle is dropped and all is sent).
    pub fn new(half: OwnedWriteHalf) -> (Replies, impl std::future::Future<Output = ()>) {
        let shared = Arc::new(Shared {
            half,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        let writer = write_backlog(Arc::clone(&shared));
        let replies = Replies {
            sender: Arc::new(Sender { shared }),
        };
        (replies, writer)
    }

    pub fn send(&self, msg: Response) -> Result<(), Closed> {
        let bytes = match codec::encode_to_vec(FrameKind::Response, &msg) {
            Ok(b) => b,
            Err(e) => {
                // Only a reply over the frame limit fails here: a bug, not
                // the client's doing. Say so and keep the connection.
                tracing::error!("cannot encode a reply: {e}");
                return Ok(());
            }
        };
        let shared = &self.sender.shared;
        let mut st = shared.lock();
        if st.broken {
            return Err(Closed);
        }
        let mut rest: &[u8] = &bytes;
        if st.backlog.is_empty() {
            // A plain non-blocking send, not tokio's `try_write`: that one
            // trusts tokio's readiness, which a connection has only after
            // the reactor's next turn, the very wait this is about.
            use nix::sys::socket::{MsgFlags, send};
            use std::os::fd::AsRawFd;
            let fd = shared.half.as_ref().as_raw_fd();
            match send(fd, rest, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    st.broken = true;
                    return Err(Closed);
                }
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
        st.backlog.extend_from_slice(rest);
        drop(st);
        shared.wake.notify_one();
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves only bytes behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.lock().done = true;
        self.shared.wake.notify_one();
    }
}

async fn write_backlog(shared: Arc<Shared>) {
    loop {
        let (empty, done) = {
            let st = shared.lock();
            (st.backlog.is_empty() || st.broken, st.done)
        };
        if empty {
            if done {
                return;
            }
            shared.wake.notified().await;
            continue;
        }
        if shared.half.writable().await.is_err() {
            shared.lock().broken = true;
            continue;
        }
        let mut st = shared.lock();
        match shared.half.try_write(&st.backlog) {
            Ok(n) => {
                st.backlog.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => st.broken = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameReader;
    use sc_protocol::Response;

    fn pair() -> (Replies, FrameReader<tokio::net::UnixStream>) {
        let (a, b) = tokio::net::UnixStream::pair().expect("pair");
        let (_r, w) = a.into_split();
        let (replies, writer) = Replies::new(w);
        tokio::spawn(writer);
        (replies, FrameReader::new(b, FrameKind::Response))
    }

    fn lease(i: u64) -> Response {
        Response::Lease {
            job: i,
            until_ms: i,
        }
    }

    /// Far more than a socket buffer holds: most replies go through the
    /// backlog, and all arrive, in order, before the close.
    #[tokio::test(flavor = "current_thread")]
    async fn replies_arrive_in_order_and_the_close_follows_the_last() {
        let (replies, mut reader) = pair();
        let n = 50_000;
        let second = replies.clone();
        for i in 0..n {
            let r = if i % 2 == 0 { &replies } else { &second };
            r.send(lease(i)).expect("open");
        }
        drop(replies);
        drop(second);
        for i in 0..n {
            let got: Option<Response> = reader.next().await.expect("frame");
            assert_eq!(got, Some(lease(i)));
        }
        let end: Option<Response> = reader.next().await.expect("clean close");
        assert_eq!(end, None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_small_reply_is_written_before_the_sender_yields() {
        let (replies, reader) = pair();
        replies.send(lease(7)).expect("open");
        // No await between the send and this read: only a direct write
        // can have put the frame in the socket.
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 64];
        let fd = reader.get_ref().as_raw_fd();
        let n = nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
            .expect("already there");
        assert!(n > 0);
        drop(replies);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_peer_makes_send_fail() {
        let (replies, reader) = pair();
        drop(reader);
        let mut failed = false;
        for i in 0..10_000 {
            if replies.send(lease(i)) == Err(Closed) {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "sends to a closed peer never failed");
    }
}
