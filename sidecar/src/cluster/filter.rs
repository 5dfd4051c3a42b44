//! A wrapper around the gossip transport that keeps hosts of another
//! cluster out: a Syn carrying a different `cluster_id` is dropped and
//! counted before chitchat sees it (chitchat alone would answer it with
//! `BadCluster` and only log), and `BadCluster` answers we receive are
//! counted too. Everything else passes through untouched.

use anyhow::Result;
use async_trait::async_trait;
use chitchat::ChitchatMessage;
use chitchat::transport::{Socket, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the filter dropped.
#[derive(Debug, Default)]
pub struct ClusterIdStats {
    pub wrong_cluster_id: AtomicU64,
    pub bad_cluster_replies: AtomicU64,
}

impl ClusterIdStats {
    pub fn counters(&self) -> Vec<(String, u64)> {
        vec![
            (
                "dropped_wrong_cluster_id".into(),
                self.wrong_cluster_id.load(Ordering::Relaxed),
            ),
            (
                "bad_cluster_replies".into(),
                self.bad_cluster_replies.load(Ordering::Relaxed),
            ),
        ]
    }
}

pub struct ClusterIdFilter<T> {
    inner: T,
    cluster_id: String,
    stats: Arc<ClusterIdStats>,
}

impl<T> ClusterIdFilter<T> {
    pub fn new(inner: T, cluster_id: String) -> Self {
        ClusterIdFilter {
            inner,
            cluster_id,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<ClusterIdStats> {
        Arc::clone(&self.stats)
    }
}

#[async_trait]
impl<T: Transport> Transport for ClusterIdFilter<T> {
    async fn open(&self, listen_addr: SocketAddr) -> Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(FilteredSocket {
            inner,
            cluster_id: self.cluster_id.clone(),
            stats: Arc::clone(&self.stats),
        }))
    }
}

struct FilteredSocket {
    inner: Box<dyn Socket>,
    cluster_id: String,
    stats: Arc<ClusterIdStats>,
}

#[async_trait]
impl Socket for FilteredSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> Result<()> {
        self.inner.send(to, msg).await
    }

    // Cancel-safe as long as the inner recv is: nothing is held across its
    // await but the loop itself.
    async fn recv(&mut self) -> Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (from, msg) = self.inner.recv().await?;
            match &msg {
                ChitchatMessage::Syn { cluster_id, .. } if *cluster_id != self.cluster_id => {
                    self.stats.wrong_cluster_id.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, cluster_id, "dropping gossip from another cluster");
                }
                ChitchatMessage::BadCluster => {
                    self.stats
                        .bad_cluster_replies
                        .fetch_add(1, Ordering::Relaxed);
                }
                _ => return Ok((from, msg)),
            }
        }
    }
}
