//! The sending side: openraft's network factory and per-peer clients over tonic.

use super::{
    CONNECT_TIMEOUT, FORWARD_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_MESSAGE_BYTES,
    MAX_SNAPSHOT_BYTES, SNAPSHOT_CHUNK, wire,
};
use crate::raft::{Member, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use constellation_proto::v1::install_snapshot_chunk::Part;
use constellation_proto::v1::raft_peer_client::RaftPeerClient;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    ReplicationClosed, SnapshotMismatch, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend, SnapshotSegmentId};
use prost::Message;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// openraft's network factory: hands out [`PeerClient`]s that share one lazily
/// connected channel per peer address.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    /// The network of member `id` (the id only labels timeout errors).
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            channels: Arc::default(),
        }
    }

    /// The channel to `addr` (`host:port`), shared by every client of that address.
    /// It connects on first use and reconnects after failures by itself.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let uri = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(uri)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// A RaftPeer client for `addr` on the shared channel, with the transport's
    /// message size limits.
    pub fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, tonic::transport::Error> {
        Ok(RaftPeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Has the leader at `leader_raft_addr` commit and apply `command`, and returns
    /// what applying it produced. A follower uses this for writes it accepted.
    ///
    /// If that member is no longer the leader the error is
    /// [`Error::FailedPrecondition`] naming the new leader, or [`Error::Unavailable`]
    /// when none is known; an unreachable leader or one that does not answer within
    /// [`FORWARD_TIMEOUT`] is [`Error::Unavailable`] too.
    pub async fn forward_write(
        &self,
        leader_raft_addr: &str,
        command: &pb::Command,
    ) -> Result<pb::CommandResult> {
        let req = pb::ForwardWriteRequest {
            command: command.encode_to_vec(),
        };
        let resp = self
            .call_leader(
                leader_raft_addr,
                |mut client, req| async move { client.forward_write(req).await },
                req,
            )
            .await?;
        pb::CommandResult::decode(resp.result.as_slice())
            .map_err(|e| Error::Internal(format!("forwarded write result: {e}")))
    }

    /// Asks the leader at `leader_raft_addr` for the index a linearizable read must see
    /// (`RaftPeer.ReadIndex`); errors as for [`Network::forward_write`].
    pub async fn read_index(&self, leader_raft_addr: &str) -> Result<u64> {
        let resp = self
            .call_leader(
                leader_raft_addr,
                |mut client, req| async move { client.read_index(req).await },
                pb::ReadIndexRequest {},
            )
            .await?;
        Ok(resp.index)
    }

    /// One unary call to the leader, bounded by [`FORWARD_TIMEOUT`], its failures
    /// mapped as [`Network::forward_write`] documents.
    async fn call_leader<Req, Resp, F, Fut>(&self, addr: &str, call: F, req: Req) -> Result<Resp>
    where
        F: FnOnce(RaftPeerClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let client = self
            .client(addr)
            .map_err(|e| Error::Unavailable(format!("leader address {addr:?}: {e}")))?;
        let call = call(client, with_timeout(req, FORWARD_TIMEOUT));
        let resp = tokio::time::timeout(FORWARD_TIMEOUT, call)
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "the leader at {addr} did not answer within {FORWARD_TIMEOUT:?}"
                ))
            })?
            .map_err(|status| forward_error(addr, status))?;
        Ok(resp.into_inner())
    }
}

fn forward_error(addr: &str, status: Status) -> Error {
    let message = status.message().to_owned();
    match status.code() {
        Code::FailedPrecondition => Error::FailedPrecondition(message),
        Code::InvalidArgument => Error::invalid("command", message),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Error::Unavailable(format!("forwarding to the leader at {addr}: {message}"))
        }
        _ => Error::Internal(format!("forwarding to the leader at {addr}: {status}")),
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let client = self
            .client(&node.raft_addr)
            .map_err(|e| AnyError::error(format!("raft address {:?}: {e}", node.raft_addr)));
        PeerClient {
            id: self.id,
            target,
            node: node.clone(),
            client,
            partial_snapshot: None,
        }
    }
}

/// openraft's connection to one peer: RPCs with openraft's deadlines over the
/// factory's shared channel.
pub struct PeerClient {
    id: NodeId,
    target: NodeId,
    node: Member,
    /// Fails only for an address that is not a valid URI authority.
    client: Result<RaftPeerClient<Channel>, AnyError>,
    /// A snapshot arriving through the chunked `install_snapshot`: its id and the
    /// bytes so far.
    partial_snapshot: Option<(String, Vec<u8>)>,
}

/// Why an RPC failed, before it becomes one of openraft's error types.
#[derive(Debug)]
enum Failure {
    Unreachable(AnyError),
    Network(AnyError),
    Timeout(Duration),
}

impl Failure {
    fn from_status(status: Status, timeout: Duration) -> Self {
        match status.code() {
            // Connection refused or reset, or a member whose Raft is stopped: back off.
            Code::Unavailable => Failure::Unreachable(AnyError::new(&status)),
            Code::DeadlineExceeded => Failure::Timeout(timeout),
            // tonic enforces the request's deadline locally as CANCELLED.
            Code::Cancelled if deadline_expired(&status) => Failure::Timeout(timeout),
            _ => Failure::Network(AnyError::new(&status)),
        }
    }
}

fn deadline_expired(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Runs one RPC under `timeout`.
async fn call<T>(
    timeout: Duration,
    rpc: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, rpc).await {
        Err(_) => Err(Failure::Timeout(timeout)),
        Ok(Err(status)) => Err(Failure::from_status(status, timeout)),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// How long a whole snapshot stream may take: openraft's per-RPC budget
/// (`install_snapshot_timeout`, meant per chunk) for every chunk, plus one for the
/// header and one for installing.
fn snapshot_deadline(per_chunk: Duration, chunks: usize) -> Duration {
    per_chunk.saturating_mul(u32::try_from(chunks).unwrap_or(u32::MAX).saturating_add(2))
}

fn snapshot_stream(
    vote: &Vote,
    meta: &SnapshotMeta,
    data: Vec<u8>,
) -> impl tokio_stream::Stream<Item = pb::InstallSnapshotChunk> + Send + 'static {
    let header = pb::InstallSnapshotChunk {
        part: Some(Part::Header(wire::snapshot_header_to_pb(
            vote,
            meta,
            data.len() as u64,
        ))),
    };
    let chunks = data.len().div_ceil(SNAPSHOT_CHUNK);
    let body = (0..chunks).map(move |i| {
        let end = ((i + 1) * SNAPSHOT_CHUNK).min(data.len());
        pb::InstallSnapshotChunk {
            part: Some(Part::Data(data[i * SNAPSHOT_CHUNK..end].to_vec())),
        }
    });
    tokio_stream::iter(std::iter::once(header).chain(body))
}

impl PeerClient {
    fn client(&self) -> Result<RaftPeerClient<Channel>, Failure> {
        self.client.clone().map_err(Failure::Unreachable)
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        failure: Failure,
        action: RPCTypes,
    ) -> RPCError<NodeId, Member, E> {
        match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::from(e)),
            Failure::Network(e) => RPCError::Network(NetworkError::from(e)),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.id,
                target: self.target,
                timeout,
            }),
        }
    }

    fn streaming_error(&self, failure: Failure) -> StreamingError<TypeConfig, Fatal<NodeId>> {
        match failure {
            Failure::Unreachable(e) => StreamingError::Unreachable(Unreachable::from(e)),
            Failure::Network(e) => StreamingError::Network(NetworkError::from(e)),
            Failure::Timeout(timeout) => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.id,
                target: self.target,
                timeout,
            }),
        }
    }

    /// Streams a whole snapshot (header, then chunks of at most [`SNAPSHOT_CHUNK`])
    /// and returns the receiver's vote.
    async fn send_snapshot(
        &self,
        vote: Vote,
        meta: &SnapshotMeta,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vote, Failure> {
        if data.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(Failure::Network(AnyError::error(format!(
                "snapshot {} of {} bytes exceeds the transport limit of {MAX_SNAPSHOT_BYTES} bytes",
                meta.snapshot_id,
                data.len()
            ))));
        }
        tracing::info!(target = self.target, meta = %meta, bytes = data.len(), "sending snapshot");
        let mut client = self.client()?;
        let stream = snapshot_stream(&vote, meta, data);
        let resp = call(
            timeout,
            client.install_snapshot(with_timeout(stream, timeout)),
        )
        .await?;
        wire::snapshot_response_from_pb(&resp).map_err(|e| Failure::Network(AnyError::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let req = wire::append_entries_request_to_pb(&rpc);
        let entries = rpc.entries.len();
        if entries > 1 && req.encoded_len() >= MAX_MESSAGE_BYTES {
            // openraft retries at once with at most this many entries per request.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2) as u64),
            ));
        }
        let ttl = option.hard_ttl();
        let resp = async {
            let mut client = self.client()?;
            call(ttl, client.append_entries(with_timeout(req, ttl))).await
        }
        .await
        .map_err(|f| self.rpc_error(f, RPCTypes::AppendEntries))?;
        wire::append_entries_response_from_pb(&resp)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let req = wire::vote_request_to_pb(&rpc);
        let ttl = option.hard_ttl();
        let resp = async {
            let mut client = self.client()?;
            call(ttl, client.vote(with_timeout(req, ttl))).await
        }
        .await
        .map_err(|f| self.rpc_error(f, RPCTypes::Vote))?;
        wire::vote_response_from_pb(&resp).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    /// What the leader calls to send a snapshot (openraft 0.9 without
    /// `generic-snapshot-data`): one InstallSnapshot stream of header plus chunks,
    /// which the receiver installs whole with `Raft::install_full_snapshot`.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let data = (*snapshot.snapshot).into_inner();
        let timeout = snapshot_deadline(option.hard_ttl(), data.len().div_ceil(SNAPSHOT_CHUNK));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.send_snapshot(vote, &snapshot.meta, data, timeout) => match res {
                Ok(vote) => Ok(SnapshotResponse::new(vote)),
                Err(failure) => Err(self.streaming_error(failure)),
            },
        }
    }

    /// openraft's chunked transfer, which it does not use while `full_snapshot` is
    /// overridden: the chunks are reassembled here and the finished snapshot goes
    /// out as one stream, like `full_snapshot`'s.
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let id = &rpc.meta.snapshot_id;
        if rpc.offset == 0 {
            self.partial_snapshot = Some((id.clone(), Vec::new()));
        }
        let buf = match &mut self.partial_snapshot {
            Some((partial_id, buf)) if partial_id == id && buf.len() as u64 == rpc.offset => buf,
            other => {
                let expect = other.as_ref().map_or(0, |(_, buf)| buf.len() as u64);
                *other = None;
                let mismatch = SnapshotMismatch {
                    expect: SnapshotSegmentId {
                        id: id.clone(),
                        offset: expect,
                    },
                    got: SnapshotSegmentId {
                        id: id.clone(),
                        offset: rpc.offset,
                    },
                };
                return Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
                )));
            }
        };
        buf.extend_from_slice(&rpc.data);
        if !rpc.done {
            return Ok(InstallSnapshotResponse { vote: rpc.vote });
        }
        let data = self
            .partial_snapshot
            .take()
            .map(|(_, data)| data)
            .unwrap_or_default();
        let vote = self
            .send_snapshot(rpc.vote, &rpc.meta, data, option.hard_ttl())
            .await
            .map_err(|f| self.rpc_error(f, RPCTypes::InstallSnapshot))?;
        Ok(InstallSnapshotResponse { vote })
    }
}
