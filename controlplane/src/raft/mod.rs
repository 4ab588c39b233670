//! Raft for the control plane on openraft 0.9: the type configuration, durable storage
//! on sled (`store`), and the tonic transport between members (`network`).
//!
//! Log entries carry a [`Command`] (versioned protobuf); applying one yields a
//! [`CommandResult`]. Entries are stored and sent as protobuf too (`LogEntry` in
//! raft.proto), so the on-disk log does not depend on serde formats.

use constellation_proto::v1::{Command, CommandResult};
use serde::{Deserialize, Serialize};

pub mod convert;
pub mod network;
pub mod proposer;
pub mod store;

/// A Raft member's id (`--id`).
pub type NodeId = u64;

/// What the cluster membership records about each member: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// host:port of the peer (RaftPeer) listener.
    pub raft_addr: String,
    /// host:port of the client and agent API listener.
    pub api_addr: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// The control plane's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
