//! What members gossip about each other besides liveness: versioned node metadata
//! (availability, labels, addresses) and per-node health digests. Each node is the only
//! writer of its own items and numbers them; a receiver keeps an item only when its
//! version is newer than the one it holds, so items converge whatever order they arrive
//! in (no clocks compared). Items ride on foca's messages ([`foca::BroadcastHandler`])
//! and are bounded in size.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Encoded size limit of one item: several fit in a datagram next to foca's own data.
pub const MAX_ITEM_BYTES: usize = 512;

/// Orders the items of one node. `generation` is the node's gossip generation when the
/// item was made (it grows on every restart and rejoin), `counter` counts changes
/// within a generation; comparison is lexicographic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub generation: u64,
    pub counter: u64,
}

/// Whether the scheduler may place work on the node (mirrors `NodeAvailability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Availability {
    #[default]
    Active,
    Cordoned,
    Draining,
}

/// Addresses of a node's endpoints, as in `NodeAddresses` (empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddresses {
    pub advertise_ip: String,
    pub transfer_addr: String,
    pub public_ip: String,
    pub tailscale_ip: String,
}

/// A node's own description of itself, as gossiped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMetadata {
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
    pub addresses: NodeAddresses,
}

/// Counts of a node's allocations by health, so peers (and the control plane, through
/// them) see a node's health without asking it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthDigest {
    pub healthy: u32,
    pub unhealthy: u32,
    /// Running without a verdict yet (no health check, or still in its start period).
    pub starting: u32,
}

/// One gossiped item, as encoded on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    Metadata {
        node: String,
        version: Version,
        metadata: NodeMetadata,
    },
    Health {
        node: String,
        version: Version,
        digest: HealthDigest,
    },
}

impl Item {
    pub fn node(&self) -> &str {
        match self {
            Item::Metadata { node, .. } | Item::Health { node, .. } => node,
        }
    }

    pub fn version(&self) -> Version {
        match self {
            Item::Metadata { version, .. } | Item::Health { version, .. } => *version,
        }
    }

    fn key(&self) -> ItemKey {
        ItemKey {
            health: matches!(self, Item::Health { .. }),
            node: self.node().to_owned(),
            version: self.version(),
        }
    }

    /// The wire form, or an error naming `field` when it is over [`MAX_ITEM_BYTES`].
    pub fn encode(&self, field: &str) -> Result<Vec<u8>> {
        let bytes = postcard::to_allocvec(self)
            .map_err(|e| Error::Config(format!("{field}: cannot encode: {e}")))?;
        if bytes.len() > MAX_ITEM_BYTES {
            return Err(Error::Config(format!(
                "{field}: {} bytes encoded, more than the {MAX_ITEM_BYTES}-byte gossip limit",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Decodes one item; the whole input must be the item.
    pub fn decode(bytes: &[u8]) -> Result<Item, BroadcastError> {
        if bytes.len() > MAX_ITEM_BYTES {
            return Err(BroadcastError("item over the size limit"));
        }
        let item: Item =
            postcard::from_bytes(bytes).map_err(|_| BroadcastError("undecodable item"))?;
        if item.node().is_empty() || item.node().len() > super::config::MAX_NAME_LEN {
            return Err(BroadcastError("bad node name"));
        }
        Ok(item)
    }
}

impl NodeMetadata {
    /// Fails, naming `field`, when the metadata would not fit one gossip item.
    pub fn check_size(&self, field: &str) -> Result<()> {
        Item::Metadata {
            node: "x".repeat(super::config::MAX_NAME_LEN),
            version: Version {
                generation: u64::MAX,
                counter: u64::MAX,
            },
            metadata: self.clone(),
        }
        .encode(field)
        .map(drop)
    }
}

/// What foca keeps to decide which queued item a newer one replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKey {
    health: bool,
    node: String,
    version: Version,
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.health == other.health && self.node == other.node && self.version > other.version
    }
}

/// A broadcast item that could not be used.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("gossip broadcast: {0}")]
pub struct BroadcastError(&'static str);

/// What this member knows of one other node.
#[derive(Debug, Clone, Default)]
pub struct NodeItems {
    pub metadata: Option<(Version, NodeMetadata)>,
    pub health: Option<(Version, HealthDigest)>,
}

/// The newest items known per node, bounded to `max_nodes` nodes.
#[derive(Debug)]
pub struct ItemTable {
    local: String,
    max_nodes: usize,
    nodes: HashMap<String, NodeItems>,
    /// Items accepted since the owner last looked, for its event stream.
    accepted: Vec<Item>,
}

impl ItemTable {
    pub fn new(local: String, max_nodes: usize) -> Self {
        Self {
            local,
            max_nodes,
            nodes: HashMap::new(),
            accepted: Vec::new(),
        }
    }

    /// Keeps `item` if it is newer than what is known of its node; says whether it did.
    /// Items about this member itself come only from itself: copies echoed back by
    /// others are never newer news.
    pub fn accept(&mut self, item: &Item) -> bool {
        if item.node() == self.local {
            return false;
        }
        if !self.nodes.contains_key(item.node()) && self.nodes.len() >= self.max_nodes {
            return false;
        }
        let entry = self.nodes.entry(item.node().to_owned()).or_default();
        let newer = match item {
            Item::Metadata {
                version, metadata, ..
            } => replace_if_newer(&mut entry.metadata, *version, metadata),
            Item::Health {
                version, digest, ..
            } => replace_if_newer(&mut entry.health, *version, digest),
        };
        if newer {
            self.accepted.push(item.clone());
        }
        newer
    }

    /// Forgets a node (it went down): a later rejoin brings fresh items.
    pub fn forget(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    pub fn get(&self, node: &str) -> Option<&NodeItems> {
        self.nodes.get(node)
    }

    pub fn take_accepted(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.accepted)
    }
}

fn replace_if_newer<T: Clone>(
    slot: &mut Option<(Version, T)>,
    version: Version,
    value: &T,
) -> bool {
    match slot {
        Some((known, _)) if *known >= version => false,
        _ => {
            *slot = Some((version, value.clone()));
            true
        }
    }
}

/// The table shared by the foca-owning task and the handler foca owns (foca offers no
/// way back to its handler). Only that one task ever locks it.
#[derive(Debug, Clone)]
pub struct SharedTable(Arc<Mutex<ItemTable>>);

impl SharedTable {
    pub fn new(table: ItemTable) -> Self {
        Self(Arc::new(Mutex::new(table)))
    }

    pub fn lock(&self) -> MutexGuard<'_, ItemTable> {
        // A panic while holding the lock would have ended the task; recover the data.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// foca's view of our items: decides what to keep disseminating.
pub struct Handler {
    pub table: SharedTable,
}

impl<T> foca::BroadcastHandler<T> for Handler {
    type Key = ItemKey;
    type Error = BroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> std::result::Result<Option<ItemKey>, BroadcastError> {
        let item = Item::decode(data)?;
        if sender.is_none() {
            // Our own item (`add_broadcast`): always send it out, also when it repeats
            // a version already sent (the periodic refresh).
            return Ok(Some(item.key()));
        }
        Ok(self.table.lock().accept(&item).then(|| item.key()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn health(node: &str, generation: u64, counter: u64, healthy: u32) -> Item {
        Item::Health {
            node: node.into(),
            version: Version {
                generation,
                counter,
            },
            digest: HealthDigest {
                healthy,
                ..Default::default()
            },
        }
    }

    #[test]
    fn newer_version_wins_and_older_is_ignored() {
        let mut t = ItemTable::new("me".into(), 10);
        assert!(t.accept(&health("a", 1, 2, 2)));
        assert!(!t.accept(&health("a", 1, 1, 1)), "older");
        assert!(!t.accept(&health("a", 1, 2, 9)), "same version");
        assert!(
            t.accept(&health("a", 2, 0, 3)),
            "new generation beats any counter"
        );
        assert_eq!(t.get("a").unwrap().health.unwrap().1.healthy, 3);
        assert!(
            !t.accept(&health("me", 9, 9, 9)),
            "our own items come from us only"
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = ItemTable::new("me".into(), 2);
        assert!(t.accept(&health("a", 1, 0, 0)));
        assert!(t.accept(&health("b", 1, 0, 0)));
        assert!(!t.accept(&health("c", 1, 0, 0)));
        assert!(t.accept(&health("a", 1, 1, 0)), "known nodes still update");
    }

    #[test]
    fn oversized_metadata_is_refused_naming_the_field() {
        let metadata = NodeMetadata {
            labels: [("k".to_string(), "v".repeat(600))].into(),
            ..Default::default()
        };
        let e = metadata
            .check_size("metadata.labels")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("metadata.labels:"), "{e}");
    }

    #[test]
    fn garbage_items_are_errors() {
        assert!(Item::decode(&[0xff; 40]).is_err());
        assert!(Item::decode(&[]).is_err());
    }

    proptest! {
        /// Whatever order items arrive in, each node ends at its highest version.
        #[test]
        fn items_converge_in_any_order(
            versions in prop::collection::vec((0..3usize, 0..4u64, 0..4u64, any::<u32>()), 1..40),
        ) {
            let items: Vec<Item> = versions
                .iter()
                .map(|(n, g, c, h)| health(&format!("n{n}"), *g, *c, *h))
                .collect();
            let mut forward = ItemTable::new("me".into(), 10);
            let mut backward = ItemTable::new("me".into(), 10);
            for i in &items { forward.accept(i); }
            for i in items.iter().rev() { backward.accept(i); }
            for n in 0..3 {
                let node = format!("n{n}");
                let best = items.iter().filter(|i| i.node() == node).map(Item::version).max();
                let f = forward.get(&node).and_then(|e| e.health.map(|h| h.0));
                let b = backward.get(&node).and_then(|e| e.health.map(|h| h.0));
                prop_assert_eq!(f, best);
                prop_assert_eq!(b, best);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes: Vec<u8>) {
            let _ = Item::decode(&bytes);
        }
    }
}
