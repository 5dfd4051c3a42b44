//! A transport wrapper that counts the frame bytes and messages the bench's
//! nodes send (the idle-traffic row).

use super::*;

/// Frames and frame bytes handed to the sockets of one cluster.
#[derive(Debug, Default)]
pub(super) struct Counter {
    pub(super) frames: AtomicU64,
    pub(super) bytes: AtomicU64,
}

/// A transport whose sockets count what chitchat sends through them.
pub(super) struct Counting<T> {
    pub(super) inner: T,
    pub(super) counter: Arc<Counter>,
}

#[async_trait]
impl<T: Transport> Transport for Counting<T> {
    async fn open(&self, listen_addr: SocketAddr) -> Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            counter: self.counter.clone(),
        }))
    }
}

pub(super) struct CountingSocket {
    pub(super) inner: Box<dyn Socket>,
    pub(super) counter: Arc<Counter>,
}

#[async_trait]
impl Socket for CountingSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> Result<()> {
        let len = FRAME_HEADER_LEN + msg.serialized_len();
        self.counter.frames.fetch_add(1, Ordering::Relaxed);
        self.counter.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.inner.send(to, msg).await
    }

    /// Only forwards: as cancel-safe as the inner socket's.
    async fn recv(&mut self) -> Result<(SocketAddr, ChitchatMessage)> {
        self.inner.recv().await
    }
}
