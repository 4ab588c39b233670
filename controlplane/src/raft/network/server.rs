//! The receiving side: the `RaftPeer` gRPC service in front of a local [`Raft`].

use super::{LEADER_API_HEADER, LEADER_ID_HEADER, MAX_MESSAGE_BYTES, MAX_SNAPSHOT_BYTES, wire};
use crate::raft::convert::log_id_to_pb;
use crate::raft::{LogCommand, Member, NodeId, Raft, Snapshot};
use constellation_proto::v1 as pb;
use constellation_proto::v1::install_snapshot_chunk::Part;
use constellation_proto::v1::raft_peer_server::{RaftPeer, RaftPeerServer};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, RaftError};
use prost::Message;
use std::cmp::Ordering;
use std::io::Cursor;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

/// Never reserve more than this up front for an incoming snapshot, whatever its
/// header claims; the buffer grows as data actually arrives.
const SNAPSHOT_PREALLOC: u64 = 64 * 1024 * 1024;

/// Serves openraft's RPCs and forwarded writes for one member.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
}

impl PeerService {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

/// The RaftPeer service for `raft`, ready to add to a tonic server on the peer
/// listener. Messages up to [`MAX_MESSAGE_BYTES`] are accepted and sent.
pub fn peer_server(raft: Raft) -> RaftPeerServer<PeerService> {
    RaftPeerServer::new(PeerService::new(raft))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// How a fatal openraft error reaches the peer: a stopped member is `UNAVAILABLE`
/// (the sender backs off), anything else is `INTERNAL`.
pub fn fatal_status(fatal: &Fatal<NodeId>) -> Status {
    match fatal {
        Fatal::Stopped => Status::unavailable("raft is stopped on this member"),
        other => Status::internal(format!("raft: {other}")),
    }
}

fn raft_error_status(err: RaftError<NodeId>) -> Status {
    match err {
        RaftError::Fatal(fatal) => fatal_status(&fatal),
        RaftError::APIError(never) => match never {},
    }
}

/// The answer of a member that cannot take a write. With a known leader it is
/// `FAILED_PRECONDITION` naming the leader's id and API address, in the message and
/// in the `x-constellation-leader-id` / `x-constellation-leader-api` metadata (see
/// [`leader_hint`]); without one it is `UNAVAILABLE`.
pub fn not_leader_status(forward: &ForwardToLeader<NodeId, Member>) -> Status {
    let Some(id) = forward.leader_id else {
        return Status::unavailable("this member is not the leader and no leader is known yet");
    };
    let api = forward.leader_node.as_ref().map(|n| n.api_addr.as_str());
    let message = match api {
        Some(api) => format!("this member is not the leader; the leader is member {id} at {api}"),
        None => format!("this member is not the leader; the leader is member {id}"),
    };
    let mut status = Status::failed_precondition(message);
    let metadata = status.metadata_mut();
    metadata.insert(LEADER_ID_HEADER, MetadataValue::from(id));
    if let Some(value) = api.and_then(|api| MetadataValue::try_from(api).ok()) {
        metadata.insert(LEADER_API_HEADER, value);
    }
    status
}

/// The leader a `not_leader_status` points at: its id and, when known, its API
/// address.
pub fn leader_hint(status: &Status) -> Option<(NodeId, Option<String>)> {
    let metadata = status.metadata();
    let id = metadata
        .get(LEADER_ID_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let api = metadata
        .get(LEADER_API_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((id, api))
}

fn invalid(err: crate::Error) -> Status {
    Status::invalid_argument(err.to_string())
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let req = wire::append_entries_request_from_pb(request.get_ref()).map_err(invalid)?;
        let resp = self
            .raft
            .append_entries(req)
            .await
            .map_err(raft_error_status)?;
        let resp = wire::append_entries_response_to_pb(&resp)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(resp))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = wire::vote_request_from_pb(request.get_ref()).map_err(invalid)?;
        let resp = self.raft.vote(req).await.map_err(raft_error_status)?;
        Ok(Response::new(wire::vote_response_to_pb(&resp)))
    }

    /// Collects the whole snapshot (bounded by [`MAX_SNAPSHOT_BYTES`] and by the
    /// header's `total_bytes`) and installs it with `Raft::install_full_snapshot`.
    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::InstallSnapshotChunk>>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await?.and_then(|c| c.part) {
            Some(Part::Header(header)) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "InstallSnapshot must start with a header",
                ));
            }
        };
        let (vote, meta, total) = wire::snapshot_header_from_pb(&header).map_err(invalid)?;
        if total > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {total} bytes exceeds the limit of {MAX_SNAPSHOT_BYTES} bytes"
            )));
        }

        // A leader with a lower vote gets our vote back at once, as
        // `Raft::install_snapshot` does; it steps down without sending the data.
        // `install_full_snapshot` checks the vote again, authoritatively.
        let my_vote = self.raft.metrics().borrow().vote;
        if !matches!(
            vote.partial_cmp(&my_vote),
            Some(Ordering::Greater | Ordering::Equal)
        ) {
            tracing::info!(%vote, %my_vote, "refusing a snapshot from a stale leader");
            return Ok(Response::new(wire::snapshot_response_to_pb(&my_vote)));
        }

        let mut data = Vec::with_capacity(total.min(SNAPSHOT_PREALLOC) as usize);
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(Part::Data(bytes)) => {
                    if (data.len() + bytes.len()) as u64 > total {
                        return Err(Status::invalid_argument(format!(
                            "snapshot data exceeds the {total} bytes announced in its header"
                        )));
                    }
                    data.extend_from_slice(&bytes);
                }
                Some(Part::Header(_)) => {
                    return Err(Status::invalid_argument(
                        "InstallSnapshot carries a second header",
                    ));
                }
                None => return Err(Status::invalid_argument("empty InstallSnapshot chunk")),
            }
        }
        if data.len() as u64 != total {
            return Err(Status::invalid_argument(format!(
                "snapshot stream ended after {} of {total} bytes",
                data.len()
            )));
        }

        tracing::info!(meta = %meta, bytes = total, "received snapshot; installing");
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        let resp = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| fatal_status(&e))?;
        Ok(Response::new(wire::snapshot_response_to_pb(&resp.vote)))
    }

    async fn forward_write(
        &self,
        request: Request<pb::ForwardWriteRequest>,
    ) -> Result<Response<pb::ForwardWriteResponse>, Status> {
        let command = pb::Command::decode(request.get_ref().command.as_slice())
            .map_err(|e| Status::invalid_argument(format!("command: {e}")))?;
        match self.raft.client_write(LogCommand::shared(command)).await {
            Ok(resp) => Ok(Response::new(pb::ForwardWriteResponse {
                result: resp.data.encode_to_vec(),
                log_id: Some(log_id_to_pb(&resp.log_id)),
            })),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(not_leader_status(&forward))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(fatal_status(&fatal)),
        }
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        match self.raft.ensure_linearizable().await {
            Ok(read_log_id) => Ok(Response::new(pb::ReadIndexResponse {
                index: read_log_id.map_or(0, |id| id.index),
            })),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(not_leader_status(&forward))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(Status::unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(fatal_status(&fatal)),
        }
    }
}
