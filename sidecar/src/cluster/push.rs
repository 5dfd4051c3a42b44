//! Our new state pushed to chosen peers in one message.
//!
//! chitchat 0.11.2 moves state only inside an exchange. A poke
//! (`ChitchatHandle::gossip`) makes us send a Syn; the peer answers with a
//! SynAck, and only our Ack carries our new value: three messages in a row,
//! each a wake-up, a QUIC decryption and a chitchat step. On the hand-over
//! path (a release reaching the next claimer) that was most of the
//! protocol's time.
//!
//! A push hands our own chitchat a Syn as if the peer had sent it: its
//! digest lists every node as we know it, except ours, which it claims to
//! know only up to our last garbage collection (so no reset is needed, and
//! the peer takes the delta if it ever knew us that far). chitchat answers it
//! like any Syn, through the transport, to that peer: a SynAck whose delta
//! is our node's state. The peer applies it with chitchat's own checks
//! (versions in order, nothing stale) and answers with an Ack of what we
//! lack, as in any exchange. So the new value travels in one message, and
//! nothing is trusted that chitchat would not accept from a real peer. A
//! push that cannot go (queue full, endpoint closed) changes nothing:
//! the caller falls back to a poke, and gossip delivers the value anyway.
//!
//! The digest entries are the nodes' current heartbeats and versions as we
//! hold them, so answering the Syn neither reports a heartbeat nor adds a
//! delta for any node but ours.

use super::transport::Inbox;
use chitchat::{Chitchat, ChitchatMessage, Deserializable, Serializable};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Where a [`Pusher`] finds the endpoint's incoming queue (set at bind).
pub type InboxSlot = Arc<Mutex<Option<Inbox>>>;

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub struct Pusher(InboxSlot);

impl Pusher {
    pub(super) fn new(slot: InboxSlot) -> Pusher {
        Pusher(slot)
    }

    /// Push our node's state to `peer` (its gossip address). `false` when
    /// it could not be queued: poke it instead.
    pub fn push(&self, chitchat: &Chitchat, peer: SocketAddr) -> bool {
        let Some(syn) = syn_from(chitchat) else {
            return false;
        };
        let inbox = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match inbox.as_ref() {
            Some(tx) => tx.try_send((peer, syn)).is_ok(),
            None => false,
        }
    }
}

/// The Syn described in the module doc, built through chitchat's own wire
/// format (its digest type has no public constructor); `None` if chitchat
/// does not read it back.
fn syn_from(chitchat: &Chitchat) -> Option<ChitchatMessage> {
    let me = chitchat.self_chitchat_id();
    let nodes = chitchat.node_states();
    // ChitchatMessage::serialize: magic (u16 LE), protocol version 0,
    // message type 0 (Syn), the digest, the cluster id.
    let mut buf = Vec::new();
    buf.extend(45_139u16.to_le_bytes());
    buf.push(0);
    buf.push(0);
    let count = u16::try_from(nodes.len()).ok()?;
    count.serialize(&mut buf);
    for (id, state) in nodes {
        let known = if id == me {
            state.last_gc_version()
        } else {
            state.max_version()
        };
        id.serialize(&mut buf);
        state.heartbeat().serialize(&mut buf);
        state.last_gc_version().serialize(&mut buf);
        known.serialize(&mut buf);
    }
    chitchat.cluster_id().to_string().serialize(&mut buf);
    let mut cursor: &[u8] = &buf;
    match ChitchatMessage::deserialize(&mut cursor) {
        Ok(msg @ ChitchatMessage::Syn { .. }) if cursor.is_empty() => Some(msg),
        _ => None,
    }
}
