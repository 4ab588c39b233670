//! One accepted session: `SessionAccepted`, the FULL assignments, then a task that
//! answers the agent's messages and follows the applied state.
//!
//! Assignments: after every applied batch (`Cluster::applied_events`) the task
//! recomputes the node's desired set from the local state (every non-terminal
//! allocation placed on the node whose service exists: desired STOP, LOST, STOPPED and
//! FAILED ones are not desired) and sends a DELTA with what changed against what it
//! sent last: upserts for new allocations and changed ones (placement, intent, spec
//! hash, secret or config data; the allocation's status, which the agent itself
//! reports, is not a change), removals for allocations no longer desired. Nothing is
//! sent when nothing changed; each message's version is the previous one + 1.
//!
//! Each assignment carries the spec and hash of the allocation's own service version
//! (kept in the service's `retained_versions` while allocations run it), so a spec
//! change does not make every agent recreate its containers at once: rolling updates
//! replace allocations in batches. The agent compares hashes with its containers.
//! Secret and config data travel in the assignment only and are never logged.

use std::collections::BTreeMap;
use std::time::Instant;

use constellation_proto::v1::{
    self as pb, agent_message::Kind as Up, control_message::Kind as Down,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::{DispatcherService, DispatcherSettings, SessionInfo, SessionRegistry, lock, status};
use crate::cluster::Cluster;
use crate::failover::{Observation, SessionState};
use crate::state::{State, container_up, is_terminal, spec_of_version};
use crate::{Error, Result};

/// Control messages buffered per session before the task waits for the agent.
const BUFFER: usize = 16;
/// Most members one gossip report may list (a report is a whole view).
const MAX_GOSSIP_MEMBERS: usize = 4096;

pub type ControlStream = ReceiverStream<std::result::Result<pb::ControlMessage, Status>>;

pub(crate) type Sender = mpsc::Sender<std::result::Result<pb::ControlMessage, Status>>;

/// Accepts the session of registered node `node_id`: queues `SessionAccepted` and the
/// FULL assignments, records the session and starts its task.
pub(super) async fn start(
    service: &DispatcherService,
    node_id: String,
    hello: pb::Hello,
    inbound: Streaming<pb::AgentMessage>,
) -> Result<ControlStream> {
    let cluster = service.cluster.clone();
    let session_id = uuid::Uuid::new_v4().to_string();
    let accepted = accepted(service, &node_id, &session_id).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut session = Session {
        cluster: cluster.clone(),
        settings: service.settings.clone(),
        sessions: service.sessions(),
        node_id,
        session_id,
        tx,
        version: 0,
        sent: BTreeMap::new(),
    };
    // Marked seen before the FULL is computed, so any later batch wakes the task.
    let mut applied = cluster.applied_events();
    applied.borrow_and_update();
    let full = session.full().await;
    let queued = session.send(Down::Accepted(accepted)).await.is_ok()
        && session.send(Down::Assignments(full)).await.is_ok();
    if !queued {
        return Err(Error::Unavailable("the agent went away".into()));
    }
    let now = Instant::now();
    let end = CancellationToken::new();
    {
        let mut sessions = lock(&session.sessions);
        // A newer session of the node replaces the older one, which ends.
        if let Some(older) = sessions.live.insert(
            session.node_id.clone(),
            SessionInfo {
                session_id: session.session_id.clone(),
                last_heartbeat: now,
                connected_since: now,
                gossip_generation: hello.gossip_generation,
                reports: BTreeMap::new(),
                end: end.clone(),
                to_agent: session.tx.clone(),
            },
        ) {
            older.end.cancel();
        }
        sessions.ended.remove(&session.node_id);
    }
    let node_name = hello
        .node
        .as_ref()
        .map(|n| n.name.clone())
        .unwrap_or_default();
    tracing::info!(
        node = %node_name, node_id = %session.node_id, session_id = %session.session_id,
        running = hello.running.len(), "dispatcher: session accepted"
    );
    let (reports, flusher) = status::spawn(cluster, session.node_id.clone(), &session.settings);
    // What a reconnecting agent runs is its first status report.
    let mut first = hello.running;
    first.extend({
        let state = session.cluster.state().read().await;
        no_longer_running(&state, &session.node_id, &first)
    });
    if !first.is_empty() {
        let _ = reports.send(first).await;
    }
    tokio::spawn(async move {
        let how = session.run(inbound, applied, reports, end).await;
        // The buffer writes what is left once its channel (dropped by `run`) closes.
        let _ = flusher.await;
        session.unregister(how);
        tracing::info!(
            node_id = %session.node_id, session_id = %session.session_id, ?how,
            "dispatcher: session ended"
        );
    });
    Ok(ReceiverStream::new(rx))
}

/// STOPPED reports for the node's allocations that were told to stop, whose container
/// the state still counts as up, and that the reconnecting agent does not list as
/// running: it removed them but the report was lost (it crashed, or the session broke
/// first). Without these their slot would stay held (a stop-first update or a drain
/// waits for the old container to be gone).
fn no_longer_running(
    state: &State,
    node_id: &str,
    running: &[pb::AllocationReport],
) -> Vec<pb::AllocationReport> {
    state
        .allocations_of_node(node_id)
        .filter(|a| a.desired_state() == pb::AllocationDesiredState::Stop && container_up(a))
        .filter(|a| !running.iter().any(|r| r.allocation_id == a.id))
        .map(|a| {
            let mut status = a.status.clone().unwrap_or_default();
            status.set_state(pb::AllocationState::Stopped);
            status.message = "not running on the node when its agent reconnected".into();
            pb::AllocationReport {
                allocation_id: a.id.clone(),
                status: Some(status),
                spec_hash: String::new(),
            }
        })
        .collect()
}

/// `SessionAccepted` for the node: its ids, the heartbeat period, the gossip addresses
/// of the other READY nodes and the API addresses of the control-plane members.
async fn accepted(
    service: &DispatcherService,
    node_id: &str,
    session_id: &str,
) -> Result<pb::SessionAccepted> {
    let (gossip_seeds, cluster_nodes) = service
        .cluster
        .read(pb::ReadConsistency::Stale, |s| {
            (gossip_seeds(s, node_id), cluster_nodes(s))
        })
        .await?;
    let controlplane_addrs = service
        .cluster
        .status()
        .await?
        .members
        .into_iter()
        .map(|m| m.api_addr)
        .filter(|a| !a.is_empty())
        .collect();
    Ok(pb::SessionAccepted {
        node_id: node_id.to_owned(),
        session_id: session_id.to_owned(),
        heartbeat_period: Some(super::proto_duration(service.settings.heartbeat_period)),
        gossip_seeds,
        controlplane_addrs,
        cluster_nodes,
    })
}

/// Nodes the state knows, as the agents' gossip should size itself (saturating). Read
/// on every heartbeat of every agent, so a map's length, not a walk over the nodes.
fn cluster_nodes(state: &State) -> u32 {
    u32::try_from(state.node_count()).unwrap_or(u32::MAX)
}

fn gossip_seeds(state: &State, node_id: &str) -> Vec<String> {
    state
        .nodes()
        .filter(|n| n.id != node_id && n.status() == pb::NodeStatus::Ready)
        .filter_map(|n| n.description.as_ref()?.addresses.as_ref())
        .map(|a| a.gossip_addr.clone())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Why the task stopped reading the agent.
enum End {
    /// The agent ended its stream (a clean shutdown).
    Closed,
    /// The connection failed under the session (the agent died or the network broke).
    Broken,
    /// The session is refused from here on with this error.
    Refused(Error),
}

struct Session {
    cluster: Cluster,
    settings: DispatcherSettings,
    sessions: SessionRegistry,
    node_id: String,
    session_id: String,
    tx: Sender,
    /// Version of the last `Assignments` sent.
    version: u64,
    /// Fingerprints of the assignments the agent has, by allocation id.
    sent: BTreeMap<String, [u8; 32]>,
}

impl Session {
    async fn run(
        &mut self,
        mut inbound: Streaming<pb::AgentMessage>,
        mut applied: watch::Receiver<u64>,
        reports: status::StatusSender,
        ended: CancellationToken,
    ) -> SessionState {
        let mut raft = self.cluster.raft().metrics();
        let end = loop {
            tokio::select! {
                () = ended.cancelled() => break End::Refused(Error::Unavailable(
                    "the session was ended by the control plane (node declared down, a newer \
                     session, or a change of leader); reconnect".into(),
                )),
                changed = raft.changed() => {
                    let leading = changed.is_ok()
                        && raft.borrow_and_update().state == openraft::ServerState::Leader;
                    if !leading {
                        let leader = self.cluster.leader().map(|(_, m)| m.api_addr);
                        break End::Refused(Error::NotLeader { leader });
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        if let Err(end) = self.handle(message, &reports).await {
                            break end;
                        }
                    }
                    Ok(None) => break End::Closed,
                    Err(e) => {
                        tracing::debug!(node_id = %self.node_id, error = %e, "dispatcher: agent stream failed");
                        break End::Broken;
                    }
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        break End::Refused(Error::Unavailable("the member is shutting down".into()));
                    }
                    if let Some(delta) = self.delta().await
                        && self.send(Down::Assignments(delta)).await.is_err()
                    {
                        break End::Broken;
                    }
                }
                () = self.tx.closed() => break End::Broken,
            }
        };
        match end {
            End::Refused(error) => {
                tracing::info!(node_id = %self.node_id, session_id = %self.session_id, %error, "dispatcher: ending session");
                let _ = self.tx.send(Err(error.into())).await;
                SessionState::Broken
            }
            End::Closed => SessionState::Closed,
            End::Broken => SessionState::Broken,
        }
    }

    async fn handle(
        &mut self,
        message: pb::AgentMessage,
        reports: &status::StatusSender,
    ) -> std::result::Result<(), End> {
        let Some(kind) = message.kind else {
            return Ok(());
        };
        match kind {
            Up::Hello(_) => {
                return Err(End::Refused(Error::invalid(
                    "hello",
                    "Hello is only the first message of a session",
                )));
            }
            Up::Heartbeat(beat) => {
                if !self.touch() {
                    return Err(End::Refused(Error::FailedPrecondition(
                        "a newer session of this node replaced this one".into(),
                    )));
                }
                let cluster_nodes = self
                    .cluster
                    .read(pb::ReadConsistency::Stale, cluster_nodes)
                    .await
                    .unwrap_or_default();
                let ack = pb::HeartbeatAck {
                    sequence: beat.sequence,
                    heartbeat_period: Some(super::proto_duration(self.settings.heartbeat_period)),
                    cluster_nodes,
                };
                self.send(Down::HeartbeatAck(ack))
                    .await
                    .map_err(|()| End::Broken)?;
            }
            Up::Status(batch) => {
                if !batch.reports.is_empty() && reports.send(batch.reports).await.is_err() {
                    return Err(End::Refused(Error::Internal(
                        "the status buffer stopped".into(),
                    )));
                }
            }
            Up::Gossip(gossip) => {
                if gossip.members.len() > MAX_GOSSIP_MEMBERS {
                    return Err(End::Refused(Error::invalid(
                        "gossip.members",
                        format!("at most {MAX_GOSSIP_MEMBERS} members"),
                    )));
                }
                let reports: BTreeMap<String, Observation> = gossip
                    .members
                    .iter()
                    .filter_map(|m| {
                        let down = match m.state() {
                            pb::MemberState::Down => true,
                            pb::MemberState::Suspect => false,
                            _ => return None,
                        };
                        let generation = m.incarnation;
                        Some((m.node_name.clone(), Observation { down, generation }))
                    })
                    .collect();
                tracing::debug!(node_id = %self.node_id, ?reports, "dispatcher: gossip report");
                let mut sessions = lock(&self.sessions);
                if let Some(info) = sessions.live.get_mut(&self.node_id)
                    && info.session_id == self.session_id
                {
                    info.reports = reports;
                    sessions.evidence.notify_one();
                }
            }
            Up::MigrationProgress(progress) => {
                tracing::debug!(
                    node_id = %self.node_id, migration_id = %progress.migration_id,
                    phase = ?progress.phase(), bytes_moved = progress.bytes_moved,
                    bytes_total = progress.bytes_total, "dispatcher: migration progress"
                );
            }
        }
        Ok(())
    }

    async fn send(&self, kind: Down) -> std::result::Result<(), ()> {
        let message = pb::ControlMessage { kind: Some(kind) };
        self.tx.send(Ok(message)).await.map_err(drop)
    }

    /// Records a heartbeat; false when a newer session of the node took over.
    fn touch(&self) -> bool {
        match lock(&self.sessions).live.get_mut(&self.node_id) {
            Some(info) if info.session_id == self.session_id => {
                info.last_heartbeat = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Replaces this session's registry entry (not a newer session's) by the node's
    /// tombstone: when it was last heard from, and how the session ended.
    fn unregister(&self, how: SessionState) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .live
            .get(&self.node_id)
            .is_some_and(|info| info.session_id == self.session_id)
            && let Some(info) = sessions.live.remove(&self.node_id)
        {
            let ended = super::EndedSession::of(&info, how);
            sessions.ended.insert(self.node_id.clone(), ended);
            sessions.evidence.notify_one();
        }
    }

    /// Everything the node should run, as the next version.
    async fn full(&mut self) -> pb::Assignments {
        let desired = self.desired().await;
        self.sent = desired
            .iter()
            .map(|(id, a)| (id.clone(), fingerprint(a)))
            .collect();
        self.version += 1;
        pb::Assignments {
            kind: pb::AssignmentsKind::Full as i32,
            version: self.version,
            upserts: desired.into_values().collect(),
            removals: Vec::new(),
        }
    }

    /// What changed since the last message, as the next version; `None` if nothing.
    async fn delta(&mut self) -> Option<pb::Assignments> {
        let desired = self.desired().await;
        let removals: Vec<String> = self
            .sent
            .keys()
            .filter(|id| !desired.contains_key(*id))
            .cloned()
            .collect();
        for id in &removals {
            self.sent.remove(id);
        }
        let mut upserts = Vec::new();
        for (id, assignment) in desired {
            let print = fingerprint(&assignment);
            if self.sent.get(&id) != Some(&print) {
                self.sent.insert(id, print);
                upserts.push(assignment);
            }
        }
        if upserts.is_empty() && removals.is_empty() {
            return None;
        }
        self.version += 1;
        Some(pb::Assignments {
            kind: pb::AssignmentsKind::Delta as i32,
            version: self.version,
            upserts,
            removals,
        })
    }

    async fn desired(&self) -> BTreeMap<String, pb::Assignment> {
        let state = self.cluster.state().read().await;
        desired_assignments(&state, &self.node_id)
    }
}

/// The assignments of every non-terminal allocation on the node whose service exists,
/// by allocation id.
fn desired_assignments(state: &State, node_id: &str) -> BTreeMap<String, pb::Assignment> {
    state
        .allocations_of_node(node_id)
        .filter(|a| !is_terminal(a))
        .filter_map(|alloc| {
            let service = state.service(&alloc.service_name);
            // An allocation runs its own version's spec until a rolling update replaces
            // it (a version no longer retained runs the current one).
            let versioned = service.and_then(|s| {
                let (spec, hash) = spec_of_version(s, alloc.service_version)
                    .or_else(|| Some((s.spec.as_ref()?, s.spec_hash.as_str())))?;
                Some((hash.to_owned(), spec.clone()))
            });
            let Some((spec_hash, spec)) = versioned else {
                tracing::debug!(
                    allocation = %alloc.id, service = %alloc.service_name,
                    "dispatcher: allocation of an unknown service is not assigned"
                );
                return None;
            };
            let secrets = files(&alloc.id, "secret", &spec.secrets, |name| {
                state.secret_data(name).map(<[u8]>::to_vec)
            });
            let configs = files(&alloc.id, "config", &spec.configs, |name| {
                let config = state.config(name)?;
                config.spec.as_ref().map(|c| c.data.clone())
            });
            let assignment = pb::Assignment {
                allocation: Some(alloc.clone()),
                spec_hash,
                spec: Some(spec),
                secrets,
                configs,
            };
            Some((alloc.id.clone(), assignment))
        })
        .collect()
}

/// The data of the referenced objects, each name once; a missing one is left out
/// (logged by name only).
fn files(
    allocation: &str,
    kind: &str,
    references: &[pb::FileReference],
    data: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<pb::FileData> {
    let mut out: Vec<pb::FileData> = Vec::new();
    for reference in references {
        if out.iter().any(|f| f.name == reference.name) {
            continue;
        }
        match data(&reference.name) {
            Some(data) => out.push(pb::FileData {
                name: reference.name.clone(),
                data,
            }),
            None => tracing::debug!(
                allocation, kind, name = %reference.name,
                "dispatcher: referenced object does not exist; assigned without it"
            ),
        }
    }
    out
}

/// What identifies an assignment's content for the agent: everything but the
/// allocation's status (the agent's own report) and the spec (its hash stands for it).
fn fingerprint(assignment: &pb::Assignment) -> [u8; 32] {
    let mut key = assignment.clone();
    key.spec = None;
    if let Some(alloc) = key.allocation.as_mut() {
        alloc.status = None;
    }
    Sha256::digest(key.encode_to_vec()).into()
}
