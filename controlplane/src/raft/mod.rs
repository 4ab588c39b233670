//! Raft for the control plane on openraft 0.9: the type configuration, durable storage
//! on sled (`store`), and the tonic transport between members (`network`).
//!
//! Log entries carry a [`Command`] (versioned protobuf) as a [`LogCommand`] behind an
//! `Arc`, so the copies openraft makes of entries (replication, apply, the store's
//! recent entries) share one command and its encoding; applying one yields a
//! [`CommandResult`]. Entries are stored and sent as protobuf too (`LogEntry` in
//! raft.proto), so the on-disk log does not depend on serde formats.

use constellation_proto::v1::{Command, CommandResult};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

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

/// A log entry's command with its protobuf encoding, made at most once. Without it the
/// leader encoded each command for its own log and again for every follower, and a
/// follower encoded again for its log what it had just decoded from the wire.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct LogCommand {
    command: Command,
    #[serde(skip)]
    encoded: OnceLock<Vec<u8>>,
}

impl LogCommand {
    /// `command`, shared, as a log entry carries it.
    pub fn shared(command: Command) -> Arc<Self> {
        Arc::new(Self {
            command,
            encoded: OnceLock::new(),
        })
    }

    /// The command encoded in `bytes`, keeping them as its encoding.
    pub fn decode(bytes: Vec<u8>) -> Result<Arc<Self>, prost::DecodeError> {
        let command = Command::decode(bytes.as_slice())?;
        Ok(Arc::new(Self {
            command,
            encoded: OnceLock::from(bytes),
        }))
    }

    /// The command's protobuf encoding.
    pub fn encoded(&self) -> &[u8] {
        self.encoded.get_or_init(|| self.command.encode_to_vec())
    }
}

impl std::ops::Deref for LogCommand {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.command
    }
}

impl std::fmt::Debug for LogCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.command.fmt(f)
    }
}

impl PartialEq for LogCommand {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command
    }
}

impl Eq for LogCommand {}

openraft::declare_raft_types!(
    /// The control plane's Raft types.
    pub TypeConfig:
        D = Arc<LogCommand>,
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
