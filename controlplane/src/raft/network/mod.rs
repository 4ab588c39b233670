//! The transport between control-plane members: openraft's RPCs, snapshots and
//! forwarded writes over the `RaftPeer` gRPC service (raft.proto) on the peer
//! listener.
//!
//! * **Sending** ([`Network`], [`PeerClient`]): openraft's network factory keeps one
//!   tonic [`Channel`](tonic::transport::Channel) per peer address, created lazily
//!   (`connect_lazy`, [`CONNECT_TIMEOUT`], `TCP_NODELAY`, HTTP/2 keepalive pings every
//!   [`KEEPALIVE_INTERVAL`]) and shared by every client openraft makes for that peer,
//!   so replication, elections and forwarded writes reuse one HTTP/2 connection.
//!   Each RPC runs under openraft's `RPCOption::hard_ttl()`, also sent as the gRPC
//!   deadline. Failures become openraft errors: `UNAVAILABLE` (connection refused, or
//!   the peer's Raft is stopped) is `RPCError::Unreachable`, so openraft backs off;
//!   an expired deadline is `RPCError::Timeout`; anything else `RPCError::Network`.
//! * **Receiving** ([`peer_server`], [`PeerService`]): requests go to the local
//!   [`Raft`](crate::raft::Raft). A higher vote is part of a normal response, not an
//!   error; openraft's fatal errors are `UNAVAILABLE` (stopped) or `INTERNAL`.
//! * **Size limits**: messages up to [`MAX_MESSAGE_BYTES`] both ways. An
//!   AppendEntries batch that would exceed it is refused before sending with
//!   `RPCError::PayloadTooLarge`, and openraft retries with fewer entries.
//! * **Snapshots**: openraft 0.9 (without `generic-snapshot-data`) has the leader
//!   call `RaftNetwork::full_snapshot`. [`PeerClient`] implements it as one
//!   client-streaming `InstallSnapshot` call: a header (leader vote, snapshot meta,
//!   total size), then data chunks of at most [`SNAPSHOT_CHUNK`]. The receiver
//!   collects at most [`MAX_SNAPSHOT_BYTES`], checks the size against the header
//!   and installs the whole snapshot with `Raft::install_full_snapshot`. The stream
//!   may take openraft's per-RPC budget (`install_snapshot_timeout`) per chunk, plus
//!   two, and stops when openraft cancels the transfer.
//! * **Forwarded writes**: a follower sends a client's write to the leader with
//!   [`Network::forward_write`]. A member that is not the leader answers
//!   `FAILED_PRECONDITION` naming the leader in the message and in the
//!   [`LEADER_ID_HEADER`] / [`LEADER_API_HEADER`] metadata ([`leader_hint`] reads
//!   them), or `UNAVAILABLE` when no leader is known.

use std::time::Duration;

mod client;
mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{Network, PeerClient};
pub use server::{PeerService, fatal_status, leader_hint, not_leader_status, peer_server};

/// Largest gRPC message either side sends or accepts; AppendEntries batches can be big.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest data chunk of an InstallSnapshot stream.
pub const SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// Largest snapshot a member sends or accepts; it is held in memory whole.
pub const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;

/// How long connecting to a peer may take before the RPC fails as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Interval of HTTP/2 keepalive pings on peer connections, idle or not.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keepalive ping may go unanswered before the connection is dropped.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a forwarded write may take to commit on the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Metadata key naming the leader's member id on a not-the-leader answer.
pub const LEADER_ID_HEADER: &str = "x-constellation-leader-id";

/// Metadata key naming the leader's API address (`host:port`) on a not-the-leader
/// answer.
pub const LEADER_API_HEADER: &str = "x-constellation-leader-api";
