//! The `constellation.v1.Dispatcher` gRPC service (dispatcher.proto): the one session
//! each agent keeps with the control plane, after SwarmKit's dispatcher.
//!
//! A session starts with the agent's `Hello` (within [`HELLO_TIMEOUT`], else the call
//! fails with `INVALID_ARGUMENT` naming `hello`). The node description is validated
//! (`hello.node.name` must be a node name), the node registered (`RegisterNode`, which
//! marks it READY: a known name keeps its id, a new one gets a fresh uuid) and the
//! session answered with `SessionAccepted`, then a FULL `Assignments` of every
//! non-terminal allocation of the node, then a DELTA whenever an applied batch changed
//! what the node should run ([`session`]).
//!
//! Sessions are served by the leader only: a follower refuses them with UNAVAILABLE and
//! the leader's address in the `constellation-leader` header, and a member that stops
//! leading ends its sessions, so agents follow the leader.
//!
//! Upstream, heartbeats are acknowledged and recorded in the in-memory
//! [`SessionRegistry`], with the agent's gossip reports: both feed the failure detector
//! ([`crate::failover`]). Status batches are coalesced per allocation and written as
//! one `ReportStatus` command per flush interval ([`status`]); migration progress is
//! only logged for now.

mod session;
mod status;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use constellation_proto::v1::{
    self as pb, agent_message::Kind as Up, command::Op, dispatcher_server::Dispatcher,
    dispatcher_server::DispatcherServer,
};
use tonic::{Request, Response, Status, Streaming};

use super::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::cluster::Cluster;
use crate::failover::{Observation, SessionState, SessionView};
use crate::validate;
use crate::{Error, FieldViolations, Result};
use tokio_util::sync::CancellationToken;

/// How long an agent has to send its `Hello` after opening a session.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Timing and batching of the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherSettings {
    /// How often agents heartbeat (sent to them in `SessionAccepted` and every ack).
    pub heartbeat_period: Duration,
    /// Longest a status report waits in a session's buffer before it is written.
    pub status_flush_interval: Duration,
    /// A session's buffer is written at once when it holds this many allocations; also
    /// the most reports in one `ReportStatus` command.
    pub status_batch_max: usize,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(1),
            // Short: agents already coalesce their reports (one batch per 200 ms at
            // most), and a health change is what failover and Traefik wait for.
            status_flush_interval: Duration::from_millis(25),
            status_batch_max: 500,
        }
    }
}

/// One live session, as the failure detector sees it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: String,
    /// The last heartbeat, or when the session was accepted before the first one.
    pub last_heartbeat: Instant,
    pub connected_since: Instant,
    /// Generation of the node's gossip identity, from its hello.
    pub gossip_generation: u64,
    /// The node's last gossip report: members it does not consider alive, by name.
    pub reports: BTreeMap<String, Observation>,
    /// Cancelled to end the session (the node was declared down, or this member is no
    /// longer the leader).
    pub end: CancellationToken,
    /// The session's stream to the agent, for messages the leader's loop sends (gossip
    /// checks); it sends without waiting, so a full stream drops them.
    pub to_agent: session::Sender,
}

/// The sessions of this member: the live ones by node id, and for nodes whose last
/// session ended, when they were last heard from (the heartbeat TTL counts from it).
#[derive(Debug, Default)]
pub struct Sessions {
    pub live: HashMap<String, SessionInfo>,
    /// Node id → its last, ended, session.
    pub ended: HashMap<String, EndedSession>,
    /// Notified when a session ends or a gossip report arrives, so the leader's loop
    /// decides at once instead of at its next tick.
    pub evidence: Arc<tokio::sync::Notify>,
}

impl Sessions {
    /// The failure detector's view of every node this member has held a session for.
    pub fn views(&self) -> BTreeMap<String, SessionView> {
        let ended = self.ended.iter().map(|(id, ended)| {
            let view = SessionView {
                last_heartbeat: ended.last_heartbeat,
                state: ended.state,
                gossip_generation: ended.gossip_generation,
                reports: BTreeMap::new(),
            };
            (id.clone(), view)
        });
        let live = self.live.iter().map(|(id, info)| {
            let view = SessionView {
                last_heartbeat: info.last_heartbeat,
                state: SessionState::Open,
                gossip_generation: info.gossip_generation,
                reports: info.reports.clone(),
            };
            (id.clone(), view)
        });
        // A live session supersedes a tombstone of the same node.
        ended.chain(live).collect()
    }

    /// Marks node `node_id` as just heard from, before the write that makes it READY:
    /// its session is recorded only once accepted, a few awaits later, and a leader's
    /// tick in between must not find a READY node without a session (it would count
    /// the node's TTL from the election, long past for a node joining late). Recorded
    /// as a closed session, so only the TTL counts until the real one replaces it.
    pub fn expect(&mut self, node_id: &str, gossip_generation: u64, now: Instant) {
        if self.live.contains_key(node_id) {
            return;
        }
        let expected = EndedSession {
            last_heartbeat: now,
            gossip_generation,
            state: SessionState::Closed,
        };
        self.ended.insert(node_id.to_owned(), expected);
    }

    /// Ends the node's live session, if any, and forgets it (the node was declared down:
    /// its next session starts afresh).
    pub fn end_node(&mut self, node_id: &str) {
        if let Some(info) = self.live.remove(node_id) {
            info.end.cancel();
        }
        self.ended.remove(node_id);
    }

    /// Ends every live session (this member stopped leading), keeping tombstones.
    pub fn end_all(&mut self) {
        for (id, info) in self.live.drain() {
            info.end.cancel();
            self.ended
                .insert(id, EndedSession::of(&info, SessionState::Broken));
        }
    }
}

/// What is kept of a node's last session once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub last_heartbeat: Instant,
    pub gossip_generation: u64,
    /// How it ended: [`SessionState::Broken`] or [`SessionState::Closed`].
    pub state: SessionState,
}

impl EndedSession {
    pub fn of(info: &SessionInfo, state: SessionState) -> Self {
        Self {
            last_heartbeat: info.last_heartbeat,
            gossip_generation: info.gossip_generation,
            state,
        }
    }
}

/// The sessions of this member, shared between the dispatcher and the leader's loop.
pub type SessionRegistry = Arc<Mutex<Sessions>>;

/// The `Dispatcher` service of one member. Cheap to clone.
#[derive(Clone)]
pub struct DispatcherService {
    cluster: Cluster,
    settings: DispatcherSettings,
    sessions: SessionRegistry,
}

impl DispatcherService {
    pub fn new(cluster: Cluster, settings: DispatcherSettings) -> Self {
        Self {
            cluster,
            settings,
            sessions: SessionRegistry::default(),
        }
    }

    /// The live sessions of this service (shared: it changes as sessions come and go).
    pub fn sessions(&self) -> SessionRegistry {
        self.sessions.clone()
    }

    /// This service as a gRPC server with the API's message size limits.
    pub fn into_server(self) -> DispatcherServer<Self> {
        DispatcherServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Registers the hello's node (READY) and returns its id: the stored id of a node
    /// of that name, else a new one.
    async fn register(&self, hello: &pb::Hello) -> Result<String> {
        let description = hello.node.clone().unwrap_or_default();
        let name = description.name.clone();
        let mut raced = false;
        loop {
            let consistency = pb::ReadConsistency::Linearizable;
            let stored = self
                .cluster
                .read(consistency, |s| s.node(&name).map(|n| n.id.clone()))
                .await?;
            let node_id = match stored {
                Some(id) => {
                    if !hello.node_id.is_empty() && hello.node_id != id {
                        tracing::warn!(
                            node = %name, stored = %id, claimed = %hello.node_id,
                            "dispatcher: hello carries another node id than the one registered \
                             under its name; using the registered id"
                        );
                    }
                    id
                }
                None => uuid::Uuid::new_v4().to_string(),
            };
            lock(&self.sessions).expect(&node_id, hello.gossip_generation, Instant::now());
            let command = pb::Command {
                op: Some(Op::RegisterNode(pb::RegisterNodeCommand {
                    node_id: node_id.clone(),
                    description: Some(description.clone()),
                })),
                ..Default::default()
            };
            match self.cluster.write(command).await {
                Ok(_) => return Ok(node_id),
                // Another session registered the name in between: use its id.
                Err(Error::AlreadyExists(_)) if !raced => raced = true,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The `Dispatcher` gRPC server for this member with default settings.
pub fn dispatcher_server(cluster: Cluster) -> DispatcherServer<DispatcherService> {
    DispatcherService::new(cluster, DispatcherSettings::default()).into_server()
}

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    type SessionStream = session::ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> std::result::Result<Response<Self::SessionStream>, Status> {
        // Sessions live on the leader only: its failure detector needs their heartbeats,
        // and status reports are written where they are committed.
        if !self.cluster.is_leader() {
            let leader = self.cluster.leader().map(|(_, m)| m.api_addr);
            return Err(Error::NotLeader { leader }.into());
        }
        let mut inbound = request.into_inner();
        let hello = receive_hello(&mut inbound).await?;
        validate_hello(&hello)?;
        let node_id = self.register(&hello).await?;
        let stream = session::start(self, node_id, hello, inbound).await?;
        Ok(Response::new(stream))
    }
}

/// The session's first message, which must be a `Hello`.
async fn receive_hello(inbound: &mut Streaming<pb::AgentMessage>) -> Result<pb::Hello> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Error::invalid("hello", format!("no Hello within {HELLO_TIMEOUT:?}")))?
        .map_err(|e| Error::Unavailable(format!("agent stream: {e}")))?;
    match first.and_then(|m| m.kind) {
        Some(Up::Hello(hello)) => Ok(hello),
        Some(other) => Err(Error::invalid(
            "hello",
            format!(
                "the first message of a session must be a Hello, not {}",
                kind_name(&other)
            ),
        )),
        None => Err(Error::invalid(
            "hello",
            "the first message of a session must be a Hello",
        )),
    }
}

fn validate_hello(hello: &pb::Hello) -> Result<()> {
    let mut v = FieldViolations::default();
    match &hello.node {
        None => v.push("hello.node", "required"),
        Some(node) => validate::node_name("hello.node.name", &node.name, &mut v),
    }
    v.into_result()
}

/// The name of an agent message kind, for errors and logs.
fn kind_name(kind: &Up) -> &'static str {
    match kind {
        Up::Hello(_) => "hello",
        Up::Heartbeat(_) => "heartbeat",
        Up::Status(_) => "status",
        Up::Gossip(_) => "gossip",
        Up::MigrationProgress(_) => "migration_progress",
    }
}

/// Locks the registry; a poisoned lock still holds a usable map.
pub fn lock(sessions: &SessionRegistry) -> std::sync::MutexGuard<'_, Sessions> {
    sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A std duration as a protobuf one.
fn proto_duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
