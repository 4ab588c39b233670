//! One control-plane member at run time: Raft with its sled storage and tonic
//! transport, and the three things the rest of the control plane asks of it: write a
//! command (forwarded to the leader when this member follows), read the state at the
//! requested consistency, and change the membership.
//!
//! Writes: the leader proposes and answers once the entry is committed and applied. A
//! follower forwards the command over `RaftPeer.ForwardWrite` to the leader it knows
//! of; without a known leader it waits for an election, at most the write timeout. A
//! write that cannot reach a majority fails with `Unavailable` after the write timeout
//! and may or may not have been applied (as in any Raft system; callers retry
//! idempotent commands).
//!
//! Reads: linearizable reads on the leader confirm leadership with a quorum heartbeat
//! and wait until the state machine has applied everything committed before the read
//! (openraft's `ensure_linearizable`). A follower asks the leader for that read index
//! (`RaftPeer.ReadIndex`) and waits until it has applied it locally. Stale reads answer
//! from the local state at once.
//!
//! Membership: a member joins as a learner, is caught up, then promoted to voter; these
//! changes run on the leader, and a follower proxies them to the leader's API.

use crate::raft::network::{Network, peer_server};
use crate::raft::proposer::{Proposer, client_write_error};
use crate::raft::store::{self, LogStore, SharedState};
use crate::raft::{Member, NodeId, Raft};
use crate::state::{COMMAND_VERSION, State};
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use openraft::storage::RaftLogStorage;
use openraft::{ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Least time between two snapshot requests.
const SNAPSHOT_RETRIGGER_DELAY: Duration = Duration::from_secs(1);

/// How often the snapshot task looks for the voter set it staggers this member in,
/// until it is known.
const SNAPSHOT_STAGGER_POLL: Duration = Duration::from_secs(1);

/// Longest a joining member may take to catch up before it would be made a voter.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Log bytes after which a member snapshots: etcd 3.4's default of 100,000 entries,
/// at the 600-odd bytes of a 512-byte put, is about this much log between snapshots.
pub const DEFAULT_SNAPSHOT_AFTER_BYTES: u64 = 64 * 1024 * 1024;

/// Raft timing and retention; defaults suit a LAN (as etcd's do: 100 ms heartbeats).
#[derive(Debug, Clone)]
pub struct Tuning {
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_after_logs: u64,
    /// ... or after this many bytes of entries, whichever comes first (0: by entries
    /// only). A group-commit entry holds one to a thousand commands, so entries alone
    /// do not bound the log.
    pub snapshot_after_bytes: u64,
    /// Entries kept behind a snapshot, so slightly lagging followers need no snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Longest a write or a linearizable read waits for a leader and a majority.
    pub request_timeout: Duration,
    /// Events retained for Watch replay.
    pub event_history: usize,
    /// A Watch stream with nothing to send sends an empty response this often, so
    /// clients (and proxies between) see it alive.
    pub watch_heartbeat: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_after_logs: 10_000,
            snapshot_after_bytes: DEFAULT_SNAPSHOT_AFTER_BYTES,
            logs_kept_after_snapshot: 1_000,
            request_timeout: Duration::from_secs(5),
            event_history: crate::state::DEFAULT_HISTORY_CAPACITY,
            watch_heartbeat: Duration::from_secs(10),
        }
    }
}

impl Tuning {
    fn raft_config(&self) -> Result<openraft::Config> {
        let ms = |d: Duration| d.as_millis() as u64;
        openraft::Config {
            cluster_name: "constellation".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // The member decides by entries and bytes itself (see `snapshot_when_due`).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(format!("raft settings: {e}")))
    }
}

/// This member's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    id: NodeId,
    me: Member,
    raft: Raft,
    proposer: Proposer,
    network: Network,
    log_store: LogStore,
    state: SharedState,
    applied_events: watch::Receiver<u64>,
    request_timeout: Duration,
    watch_heartbeat: Duration,
}

impl Cluster {
    /// Opens the member's storage under `data_dir` and starts Raft. `me` holds the
    /// addresses other members and clients reach this member on.
    pub async fn open(id: NodeId, data_dir: &Path, me: Member, tuning: &Tuning) -> Result<Self> {
        let (log_store, sm_store) =
            store::open_with_history(&data_dir.join("raft"), tuning.event_history)?;
        let state = sm_store.state();
        let applied_events = sm_store.subscribe_applied();
        let network = Network::new(id);
        let config = Arc::new(tuning.raft_config()?);
        let raft = Raft::new(id, config, network.clone(), log_store.clone(), sm_store)
            .await
            .map_err(|e| Error::Internal(format!("start raft: {e}")))?;
        log_store
            .growth()
            .set_limits(tuning.snapshot_after_logs, tuning.snapshot_after_bytes);
        Ok(Self {
            id,
            me,
            proposer: Proposer::spawn(raft.clone()),
            raft,
            network,
            log_store,
            state,
            applied_events,
            request_timeout: tuning.request_timeout,
            watch_heartbeat: tuning.watch_heartbeat,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How often an idle Watch stream sends an empty response.
    pub fn watch_heartbeat(&self) -> Duration {
        self.watch_heartbeat
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The RaftPeer gRPC service of this member.
    pub fn peer_service(
        &self,
    ) -> pb::raft_peer_server::RaftPeerServer<crate::raft::network::PeerService> {
        peer_server(self.raft.clone())
    }

    /// True once the storage holds a vote, a log or a snapshot: the member belongs to
    /// a cluster and resumes on restart.
    pub fn is_initialized(&self) -> Result<bool> {
        self.log_store.is_initialized()
    }

    /// Makes this member the only voter of a new cluster.
    pub async fn bootstrap(&self) -> Result<()> {
        let members = BTreeMap::from([(self.id, self.me.clone())]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| Error::FailedPrecondition(format!("bootstrap: {e}")))
    }

    /// The leader this member knows of, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let member = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, member))
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Waits until some leader is known, at most until `deadline`.
    async fn wait_for_leader(&self, deadline: Instant) -> Result<(NodeId, Member)> {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero()
                || tokio::time::timeout(remaining, metrics.changed())
                    .await
                    .is_err()
            {
                return Err(Error::Unavailable(
                    "no leader: fewer than a majority of members are reachable".into(),
                ));
            }
        }
    }

    /// Commits `command` through the leader and returns what applying it produced. A
    /// command the state refused comes back as the matching error.
    pub async fn write(&self, mut command: pb::Command) -> Result<pb::CommandResult> {
        if command.version == 0 {
            command.version = COMMAND_VERSION;
        }
        if command.proposed_at.is_none() {
            command.proposed_at = Some(now());
        }
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (leader, member) = self.wait_for_leader(deadline).await?;
            let attempt = async {
                if leader == self.id {
                    self.write_here(command.clone()).await
                } else {
                    self.network
                        .forward_write(&member.raft_addr, &command)
                        .await
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = tokio::time::timeout(remaining, attempt).await.map_err(|_| {
                Error::Unavailable(format!(
                    "not committed within {:?}: no majority answered (the write may still apply)",
                    self.request_timeout
                ))
            })?;
            match outcome {
                Ok(result) => return result_or_error(result),
                // The leader changed under us: try the new one until the deadline.
                Err(Error::FailedPrecondition(_) | Error::Unavailable(_))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn write_here(&self, command: pb::Command) -> Result<pb::CommandResult> {
        self.proposer.propose(command).await
    }

    /// Runs `read` on the state at the requested consistency.
    pub async fn read<T>(
        &self,
        consistency: pb::ReadConsistency,
        read: impl FnOnce(&State) -> T,
    ) -> Result<T> {
        if consistency != pb::ReadConsistency::Stale {
            self.wait_linearizable().await?;
        }
        let state = self.state.read().await;
        Ok(read(&state))
    }

    /// Returns once this member's state reflects every write committed before the call.
    async fn wait_linearizable(&self) -> Result<()> {
        let deadline = Instant::now() + self.request_timeout;
        let (leader, member) = self.wait_for_leader(deadline).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let unavailable =
            |_| Error::Unavailable("linearizable read: no majority confirmed the leader".into());
        if leader == self.id {
            tokio::time::timeout(remaining, self.raft.ensure_linearizable())
                .await
                .map_err(unavailable)?
                .map_err(|e| Error::Unavailable(format!("linearizable read: {e}")))?;
            return Ok(());
        }
        let index = tokio::time::timeout(remaining, self.network.read_index(&member.raft_addr))
            .await
            .map_err(unavailable)??;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| Error::Unavailable(format!("linearizable read: {e}")))?;
        Ok(())
    }

    /// The shared state, for streaming reads (Watch) that hold no consistency promise.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Publishes the applied event index after every applied batch.
    pub fn applied_events(&self) -> watch::Receiver<u64> {
        self.applied_events.clone()
    }

    /// Adds a member as a learner, waits until it has caught up, then (unless
    /// `learner_only`) promotes it to voter. Runs on the leader only. A member that does
    /// not catch up within [`CATCH_UP_TIMEOUT`] (a wrong address, say) stays a learner
    /// and the call fails: promoting it would cost the cluster its quorum.
    pub async fn add_member(&self, id: NodeId, member: Member, learner_only: bool) -> Result<()> {
        self.require_leader()?;
        let raft_addr = member.raft_addr.clone();
        self.raft
            .add_learner(id, member, false)
            .await
            .map_err(|e| client_write_error(&e))?;
        if learner_only {
            return Ok(());
        }
        let target = self.raft.metrics().borrow().last_log_index;
        let caught_up = move |m: &openraft::RaftMetrics<NodeId, Member>| {
            let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned());
            matched.flatten().map(|l| l.index) >= target
        };
        self.raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(caught_up, "new member caught up")
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "member {id} at {raft_addr} did not catch up within {CATCH_UP_TIMEOUT:?}; \
                     it stays a learner: check its address, then add it again or remove it"
                ))
            })?;
        let voters = BTreeSet::from([id]);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|e| client_write_error(&e))?;
        Ok(())
    }

    /// Removes a member (voter or learner). Runs on the leader only.
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        self.require_leader()?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        if membership.get_node(&id).is_none() {
            return Err(Error::not_found("member", id.to_string()));
        }
        let ids = BTreeSet::from([id]);
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| client_write_error(&e))?;
        Ok(())
    }

    fn require_leader(&self) -> Result<()> {
        if self.is_leader() {
            return Ok(());
        }
        let leader = self
            .leader()
            .map(|(id, m)| format!("member {id} at {}", m.api_addr));
        Err(Error::FailedPrecondition(format!(
            "membership changes run on the leader ({})",
            leader.unwrap_or_else(|| "none known".into())
        )))
    }

    /// Raft's view from this member: roles, term, indexes, and (on the leader) how far
    /// each member has replicated.
    pub async fn status(&self) -> Result<pb::ClusterStatusResponse> {
        let committed = self
            .log_store
            .clone()
            .read_committed()
            .await
            .map_err(|e| Error::Internal(format!("read committed index: {e}")))?;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .map(|m| m.map_or(0, |l| l.index));
                let matched = if *id == self.id && metrics.state == ServerState::Leader {
                    Some(last_log_index)
                } else {
                    matched
                };
                let role = if voters.contains(id) {
                    pb::MemberRole::Voter
                } else {
                    pb::MemberRole::Learner
                };
                pb::Member {
                    id: *id,
                    raft_addr: node.raft_addr.clone(),
                    api_addr: node.api_addr.clone(),
                    role: role as i32,
                    leader: metrics.current_leader == Some(*id),
                    matched_index: matched,
                    lag: matched.map(|m| last_log_index.saturating_sub(m)),
                }
            })
            .collect();
        let event_index = self.state.read().await.event_index();
        Ok(pb::ClusterStatusResponse {
            id: self.id,
            members,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_log_index,
            commit_index: committed.map_or(0, |l| l.index),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            event_index,
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// Asks Raft for a snapshot whenever the log has grown past its entry or byte limit
    /// ([`Tuning::snapshot_after_logs`], [`Tuning::snapshot_after_bytes`]) since the
    /// last one, until `shutdown`. Until the member builds its first snapshot, that
    /// snapshot is brought forward by the member's place among the voters (updated as
    /// voters join), so that the voters do not all snapshot at once
    /// ([`store::LogGrowth`]).
    pub async fn snapshot_when_due(self, shutdown: CancellationToken) {
        let growth = self.log_store.growth();
        let mut staggering = true;
        let mut slot = None;
        let mut stagger_poll = tokio::time::interval(SNAPSHOT_STAGGER_POLL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = growth.due() => {}
                _ = stagger_poll.tick(), if staggering => {
                    let now = self.voter_slot();
                    if let Some((place, of)) = now {
                        if now != slot {
                            tracing::info!(place, of, "raft: staggering this member's snapshots");
                            slot = now;
                        }
                        staggering = growth.set_head_start(place, of);
                    }
                    continue;
                }
            }
            if !growth.is_due() {
                continue;
            }
            let (entries, bytes) = growth.since_snapshot();
            tracing::info!(
                entries,
                bytes,
                "raft: the log outgrew its limit; snapshotting"
            );
            if let Err(e) = self.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "raft: asking for a snapshot");
            }
            // openraft ignores the request while a snapshot is building; give one
            // time to start (and reset the count) before asking again.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(SNAPSHOT_RETRIGGER_DELAY) => {}
            }
        }
    }

    /// This member's place among the voters (by id) and their number, once it is one.
    fn voter_slot(&self) -> Option<(u64, u64)> {
        let metrics = self.raft.metrics();
        let voters: Vec<NodeId> = metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let slot = voters.iter().position(|&v| v == self.id)?;
        Some((slot as u64, voters.len() as u64))
    }

    /// Stops Raft (the storage is flushed by then).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// A refused command (`CommandError`) as the error it stands for.
pub fn result_or_error(result: pb::CommandResult) -> Result<pb::CommandResult> {
    use pb::CommandErrorCode as Code;
    let Some(pb::command_result::Outcome::Error(err)) = &result.outcome else {
        return Ok(result);
    };
    let message = err.message.clone();
    Err(match err.code() {
        Code::NotFound => Error::NotFound(message),
        Code::AlreadyExists => Error::AlreadyExists(message),
        Code::InvalidArgument => Error::invalid(err.field.clone(), message),
        Code::FailedPrecondition | Code::UnsupportedVersion | Code::Unspecified => {
            Error::FailedPrecondition(message)
        }
    })
}

/// Now, as a protobuf timestamp (the proposer's clock: see `Command.proposed_at`).
/// Read from the step-proof [`crate::clock`], not from the wall clock.
pub fn now() -> pbjson_types::Timestamp {
    crate::clock::now()
}
