//! The transport end to end: real Rafts over real sockets, on a minimal in-memory
//! store (logs, vote, membership and opaque snapshots; commands apply to nothing).

use super::*;
use crate::raft::store::StateMachineStore;
use crate::raft::{Entry, LogId, Member, NodeId, Raft, Snapshot, SnapshotMeta, StorageError};
use crate::raft::{LogCommand, StoredMembership, TypeConfig, Vote};
use constellation_proto::v1 as pb;
use constellation_proto::v1::install_snapshot_chunk::Part;
use openraft::error::StreamingError;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, ReplicationClosed};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Config, EntryPayload, LogState, Membership, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotPolicy,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

// ---- a minimal in-memory store ------------------------------------------------------

#[derive(Default)]
struct LogInner {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
}

#[derive(Clone, Default)]
struct LogStore(Arc<Mutex<LogInner>>);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.0.lock().unwrap();
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.0.lock().unwrap().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.0.lock().unwrap().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.0.lock().unwrap().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.0.lock().unwrap().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.0.lock().unwrap();
            for entry in entries {
                inner.log.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.0.lock().unwrap().log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.0.lock().unwrap();
        inner.last_purged = Some(log_id);
        inner.log = inner.log.split_off(&(log_id.index + 1));
        Ok(())
    }
}

#[derive(Default)]
struct SmInner {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    commands: u64,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    installed: Vec<(SnapshotMeta, Vec<u8>)>,
}

#[derive(Clone, Default)]
struct StateMachine(Arc<Mutex<SmInner>>);

/// Bytes of a built snapshot: the command count, then filler spanning several
/// [`SNAPSHOT_CHUNK`]s so transfers are really chunked.
fn snapshot_bytes(commands: u64, index: u64) -> Vec<u8> {
    let mut data = commands.to_le_bytes().to_vec();
    data.extend((0..SNAPSHOT_CHUNK * 5 / 2 + 123).map(|i| ((i as u64 * 7 + index) % 251) as u8));
    data
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut inner = self.0.lock().unwrap();
        let index = inner.last_applied.map_or(0, |id| id.index);
        let data = snapshot_bytes(inner.commands, index);
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!("snap-{index}"),
        };
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.0.lock().unwrap();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<pb::CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.0.lock().unwrap();
        let mut results = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(_) => inner.commands += 1,
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            results.push(pb::CommandResult {
                index: entry.log_id.index,
                outcome: Some(pb::command_result::Outcome::Done(true)),
                ..Default::default()
            });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let mut inner = self.0.lock().unwrap();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.commands = data
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
        inner.snapshot = Some((meta.clone(), data.clone()));
        inner.installed.push((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let inner = self.0.lock().unwrap();
        Ok(inner.snapshot.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

// ---- harness ------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(20);

struct TestNode<S = StateMachine> {
    raft: Raft,
    sm: S,
    member: Member,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl<S> Drop for TestNode<S> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Fast elections, for the in-memory store; `patient` for the sled store, whose
/// fsyncs of 256 KiB entries on a loaded 2-core machine can hold a heartbeat past 300 ms
/// and start an election in the middle of a test about replication.
fn config(patient: bool) -> Arc<Config> {
    let scale = if patient { 5 } else { 1 };
    let config = Config {
        cluster_name: "network-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 300 * scale,
        election_timeout_max: 600 * scale,
        install_snapshot_timeout: 1000 * scale,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

/// A member on the in-memory test store.
async fn start_node(id: NodeId) -> TestNode {
    let sm = StateMachine::default();
    serve(id, LogStore::default(), sm, None, config(false)).await
}

/// A member on the real sled store in a temporary directory.
async fn start_sled_node(id: NodeId) -> TestNode<StateMachineStore> {
    let dir = tempfile::tempdir().unwrap();
    let (log_store, sm) = crate::raft::store::open(&dir.path().join("raft")).unwrap();
    serve(id, log_store, sm, Some(dir), config(true)).await
}

async fn serve<LS, SM>(
    id: NodeId,
    log_store: LS,
    sm: SM,
    dir: Option<tempfile::TempDir>,
    config: Arc<Config>,
) -> TestNode<SM>
where
    LS: RaftLogStorage<TypeConfig>,
    SM: RaftStateMachine<TypeConfig> + Clone,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let member = Member {
        raft_addr: format!("127.0.0.1:{port}"),
        api_addr: format!("api-{id}.test:8443"),
    };
    let raft = Raft::new(id, config, Network::new(id), log_store, sm.clone())
        .await
        .unwrap();
    let service = peer_server(raft.clone());
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    TestNode {
        raft,
        sm,
        member,
        server,
        _dir: dir,
    }
}

/// Starts `nodes` (ids 1..) as one cluster and returns the elected leader's id once
/// every member knows it and the full voter set.
async fn form_cluster<S>(nodes: &[TestNode<S>]) -> NodeId {
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .zip(1..)
        .map(|(n, id)| (id, n.member.clone()))
        .collect();
    nodes[0].raft.initialize(members.clone()).await.unwrap();
    let leader = nodes[0]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    for node in nodes {
        let m = node
            .raft
            .wait(Some(WAIT))
            .metrics(
                |m| {
                    m.current_leader == Some(leader)
                        && m.membership_config
                            .membership()
                            .voter_ids()
                            .collect::<BTreeSet<_>>()
                            == voters
                        && m.last_applied.is_some()
                },
                "leader and membership replicated",
            )
            .await
            .unwrap();
        assert_eq!(
            m.membership_config.membership().nodes().count(),
            nodes.len()
        );
    }
    leader
}

/// Snapshots the leader and waits until its log is purged past `last`, so a new
/// member can only catch up from the snapshot.
async fn snapshot_and_purge(leader: &Raft, last: u64) {
    leader.trigger().snapshot().await.unwrap();
    leader
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.snapshot.is_some_and(|s| s.index >= last)
                    && m.purged.is_some_and(|p| p.index >= last)
            },
            "leader snapshot and purge",
        )
        .await
        .unwrap();
}

fn command(name: &str) -> pb::Command {
    pb::Command {
        version: 1,
        op: Some(pb::command::Op::DeleteSecret(pb::DeleteSecretCommand {
            name: name.into(),
        })),
        ..Default::default()
    }
}

fn log_id(term: u64, node: NodeId, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

/// A free port with nothing listening on it.
fn closed_port_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

// ---- tests --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_forward_writes_and_ship_snapshots() {
    let nodes = vec![
        start_node(1).await,
        start_node(2).await,
        start_node(3).await,
    ];
    let leader = form_cluster(&nodes).await;
    let voters = BTreeSet::from([1, 2, 3]);
    let leader_node = &nodes[(leader - 1) as usize];
    let follower_id = if leader == 1 { 2 } else { 1 };
    let follower = &nodes[(follower_id - 1) as usize];

    // Writes on the leader, and one forwarded by a follower over ForwardWrite.
    for i in 0..12 {
        let resp = leader_node
            .raft
            .client_write(LogCommand::shared(command(&format!("s{i}"))))
            .await
            .unwrap();
        assert_eq!(resp.data.index, resp.log_id.index);
    }
    let follower_net = Network::new(follower_id);
    let forwarded = follower_net
        .forward_write(&leader_node.member.raft_addr, &command("forwarded"))
        .await
        .unwrap();
    assert_eq!(
        forwarded.outcome,
        Some(pb::command_result::Outcome::Done(true))
    );
    let last = forwarded.index;

    // A follower refuses a forwarded write and names the leader.
    let err = follower_net
        .forward_write(&follower.member.raft_addr, &command("misrouted"))
        .await
        .unwrap_err();
    match &err {
        crate::Error::FailedPrecondition(message) => {
            assert!(message.contains(&format!("member {leader}")), "{message}");
            assert!(message.contains(&leader_node.member.api_addr), "{message}");
        }
        other => panic!("expected FailedPrecondition, got {other:?}"),
    }
    let status = follower_net
        .client(&follower.member.raft_addr)
        .unwrap()
        .forward_write(pb::ForwardWriteRequest {
            command: prost::Message::encode_to_vec(&command("misrouted")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        leader_hint(&status),
        Some((leader, Some(leader_node.member.api_addr.clone())))
    );
    let status = follower_net
        .client(&leader_node.member.raft_addr)
        .unwrap()
        .forward_write(pb::ForwardWriteRequest {
            command: vec![0xff, 0xff],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    for node in &nodes {
        node.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(last), "writes applied everywhere")
            .await
            .unwrap();
        assert_eq!(node.sm.0.lock().unwrap().commands, 13);
    }

    snapshot_and_purge(&leader_node.raft, last).await;

    let learner = start_node(4).await;
    leader_node
        .raft
        .add_learner(4, learner.member.clone(), true)
        .await
        .unwrap();
    let m = learner
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.snapshot.is_some_and(|s| s.index >= last)
                    && m.last_applied.is_some_and(|a| a.index >= last)
            },
            "learner installed the snapshot",
        )
        .await
        .unwrap();
    assert_eq!(m.current_leader, Some(leader));
    let leader_snapshot = leader_node.sm.0.lock().unwrap().snapshot.clone().unwrap();
    {
        let learner_sm = learner.sm.0.lock().unwrap();
        assert!(!learner_sm.installed.is_empty(), "learner got no snapshot");
        let (meta, data) = learner_sm.installed.last().unwrap();
        assert_eq!(meta, &leader_snapshot.0);
        assert!(
            data.len() > 2 * SNAPSHOT_CHUNK,
            "snapshot should span chunks"
        );
        assert!(*data == leader_snapshot.1, "snapshot bytes differ");
        assert_eq!(learner_sm.commands, 13);
        assert!(
            learner_sm
                .membership
                .membership()
                .voter_ids()
                .collect::<BTreeSet<_>>()
                == voters
        );
    }

    for node in nodes.iter().chain([&learner]) {
        node.raft.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn unreachable_peers_fail_fast_as_unreachable() {
    let mut network = Network::new(1);
    let peer = Member {
        raft_addr: closed_port_addr(),
        api_addr: String::new(),
    };
    let mut client = network.new_client(2, &peer).await;
    let option = RPCOption::new(Duration::from_secs(5));

    let started = Instant::now();
    let vote = VoteRequest {
        vote: Vote::new(1, 1),
        last_log_id: None,
    };
    let err = client.vote(vote, option.clone()).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    let append = AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let err = client
        .append_entries(append, option.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    let snapshot = Snapshot {
        meta: SnapshotMeta::default(),
        snapshot: Box::new(Cursor::new(vec![1, 2, 3])),
    };
    let err = client
        .full_snapshot(
            Vote::new_committed(1, 1),
            snapshot,
            std::future::pending(),
            option.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StreamingError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    // An address that is no URI at all is unreachable too, not a panic.
    let bad = Member {
        raft_addr: "not an address".into(),
        api_addr: String::new(),
    };
    let mut client = network.new_client(3, &bad).await;
    let vote = VoteRequest {
        vote: Vote::new(1, 1),
        last_log_id: None,
    };
    let err = client.vote(vote, option).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    let err = network
        .forward_write(&peer.raft_addr, &command("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, crate::Error::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    // Accepts connections but never speaks HTTP/2.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            conns.push(conn);
        }
    });
    let mut client = Network::new(1)
        .new_client(
            2,
            &Member {
                raft_addr: addr,
                api_addr: String::new(),
            },
        )
        .await;
    let vote = VoteRequest {
        vote: Vote::new(1, 1),
        last_log_id: None,
    };
    let started = Instant::now();
    let err = client
        .vote(vote, RPCOption::new(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn oversized_append_batches_ask_openraft_to_split() {
    let mut client = Network::new(1)
        .new_client(
            2,
            &Member {
                raft_addr: closed_port_addr(),
                api_addr: String::new(),
            },
        )
        .await;
    let big = "x".repeat(MAX_MESSAGE_BYTES / 2 + 1);
    let entries = (1..=2)
        .map(|i| Entry {
            log_id: log_id(1, 1, i),
            payload: EntryPayload::Normal(LogCommand::shared(command(&big))),
        })
        .collect();
    let append = AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries,
        leader_commit: None,
    };
    let err = client
        .append_entries(append, RPCOption::new(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::PayloadTooLarge(_)), "{err:?}");
}

/// A hand-built snapshot for a fresh member from a leader (9) it has never heard of.
fn foreign_snapshot(index: u64, len: usize) -> (Vote, SnapshotMeta, Vec<u8>) {
    let leader = Member {
        raft_addr: "127.0.0.1:1".into(),
        api_addr: "127.0.0.1:2".into(),
    };
    let membership = Membership::new(vec![BTreeSet::from([9])], BTreeMap::from([(9, leader)]));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(5, 9, index)),
        last_membership: StoredMembership::new(Some(log_id(5, 9, 1)), membership),
        snapshot_id: format!("foreign-{index}"),
    };
    let mut data = 7u64.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (i % 253) as u8));
    (Vote::new_committed(5, 9), meta, data)
}

fn chunk(part: Part) -> pb::InstallSnapshotChunk {
    pb::InstallSnapshotChunk { part: Some(part) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_are_checked_and_installed() {
    let node = start_node(1).await;
    let mut network = Network::new(9);
    let mut peer = network.new_client(1, &node.member).await;
    let option = RPCOption::new(Duration::from_secs(2));

    // full_snapshot: header and chunks over one stream, installed whole.
    let (vote, meta, data) = foreign_snapshot(42, 3 * SNAPSHOT_CHUNK + 17);
    let snapshot = Snapshot {
        meta: meta.clone(),
        snapshot: Box::new(Cursor::new(data.clone())),
    };
    let resp = peer
        .full_snapshot(vote, snapshot, std::future::pending(), option.clone())
        .await
        .unwrap();
    assert_eq!(resp.vote, vote);
    let m = node
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot == meta.last_log_id, "snapshot installed")
        .await
        .unwrap();
    assert_eq!(m.last_applied, meta.last_log_id);
    {
        let sm = node.sm.0.lock().unwrap();
        assert_eq!(sm.installed.len(), 1);
        assert_eq!(sm.installed[0].0, meta);
        assert!(sm.installed[0].1 == data);
        assert_eq!(sm.commands, 7);
    }

    // Malformed streams are refused.
    let mut raw = network.client(&node.member.raft_addr).unwrap();
    let header = |vote: &Vote, meta: &SnapshotMeta, total: u64| {
        chunk(Part::Header(wire::snapshot_header_to_pb(vote, meta, total)))
    };
    let cases = [
        (
            vec![chunk(Part::Data(vec![1]))],
            tonic::Code::InvalidArgument,
        ),
        (vec![], tonic::Code::InvalidArgument),
        (
            vec![header(&vote, &meta, 10), chunk(Part::Data(vec![0; 5]))],
            tonic::Code::InvalidArgument,
        ),
        (
            vec![header(&vote, &meta, 4), chunk(Part::Data(vec![0; 5]))],
            tonic::Code::InvalidArgument,
        ),
        (
            vec![header(&vote, &meta, 4), header(&vote, &meta, 4)],
            tonic::Code::InvalidArgument,
        ),
        (
            vec![pb::InstallSnapshotChunk { part: None }],
            tonic::Code::InvalidArgument,
        ),
        (
            vec![header(&vote, &meta, MAX_SNAPSHOT_BYTES + 1)],
            tonic::Code::ResourceExhausted,
        ),
    ];
    for (i, (messages, code)) in cases.into_iter().enumerate() {
        let status = raw
            .install_snapshot(tokio_stream::iter(messages))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "case {i}: {status:?}");
    }

    // A stale leader gets the member's vote back instead of an install.
    let stale = Vote::new_committed(2, 3);
    let resp = raw
        .install_snapshot(tokio_stream::iter(vec![
            header(&stale, &meta, 3),
            chunk(Part::Data(vec![1, 2, 3])),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wire::snapshot_response_from_pb(&resp).unwrap(), vote);
    assert_eq!(node.sm.0.lock().unwrap().installed.len(), 1);

    // openraft's chunked install_snapshot is reassembled into one stream.
    let (vote, meta, data) = foreign_snapshot(50, 2 * SNAPSHOT_CHUNK);
    let pieces: Vec<&[u8]> = data.chunks(SNAPSHOT_CHUNK).collect();
    let request = |offset: usize, piece: &[u8], done: bool| InstallSnapshotRequest {
        vote,
        meta: meta.clone(),
        offset: offset as u64,
        data: piece.to_vec(),
        done,
    };
    let err = peer
        .install_snapshot(request(SNAPSHOT_CHUNK, pieces[1], false), option.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RPCError::RemoteError(ref e)
                if matches!(e.source, RaftError::APIError(InstallSnapshotError::SnapshotMismatch(_)))
        ),
        "{err:?}"
    );
    let mut offset = 0;
    for (i, piece) in pieces.iter().enumerate() {
        let resp = peer
            .install_snapshot(
                request(offset, piece, i + 1 == pieces.len()),
                option.clone(),
            )
            .await
            .unwrap();
        assert_eq!(resp.vote, vote);
        offset += piece.len();
    }
    node.raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot == meta.last_log_id,
            "second snapshot installed",
        )
        .await
        .unwrap();
    assert!(node.sm.0.lock().unwrap().installed[1].1 == data);

    // A cancelled transfer stops at once.
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    };
    let err = peer
        .full_snapshot(
            vote,
            snapshot,
            std::future::ready(ReplicationClosed::new("test")),
            option,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StreamingError::Closed(_)), "{err:?}");

    node.raft.shutdown().await.unwrap();
}

fn put_config(name: &str, data: Vec<u8>) -> pb::Command {
    pb::Command {
        version: 1,
        proposed_at: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        op: Some(pb::command::Op::PutConfig(pb::PutConfigCommand {
            config: Some(pb::ConfigSpec {
                name: name.into(),
                data,
                ..Default::default()
            }),
        })),
    }
}

/// The same over the real sled store and state machine: the snapshot a learner gets
/// is the encoded state, spanning several chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_members_replicate_and_ship_snapshots() {
    let nodes = vec![
        start_sled_node(1).await,
        start_sled_node(2).await,
        start_sled_node(3).await,
    ];
    let leader = form_cluster(&nodes).await;
    let leader_node = &nodes[(leader - 1) as usize];
    let follower_id = if leader == 1 { 2 } else { 1 };

    let config_bytes = |i: usize| vec![i as u8; 256 * 1024];
    let mut last = 0;
    for i in 0..12 {
        let resp = leader_node
            .raft
            .client_write(LogCommand::shared(put_config(
                &format!("config-{i}"),
                config_bytes(i),
            )))
            .await
            .unwrap();
        assert!(
            matches!(
                resp.data.outcome,
                Some(pb::command_result::Outcome::Config(_))
            ),
            "{:?}",
            resp.data.outcome
        );
        last = resp.log_id.index;
    }
    let forwarded = Network::new(follower_id)
        .forward_write(
            &leader_node.member.raft_addr,
            &put_config("config-12", config_bytes(12)),
        )
        .await
        .unwrap();
    assert!(matches!(
        forwarded.outcome,
        Some(pb::command_result::Outcome::Config(_))
    ));
    last += 1;
    for node in &nodes {
        node.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(last), "writes applied everywhere")
            .await
            .unwrap();
        assert_eq!(node.sm.state().read().await.configs().len(), 13);
    }

    snapshot_and_purge(&leader_node.raft, last).await;
    let learner = start_sled_node(4).await;
    leader_node
        .raft
        .add_learner(4, learner.member.clone(), true)
        .await
        .unwrap();
    learner
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.snapshot.is_some_and(|s| s.index >= last)
                    && m.last_applied.is_some_and(|a| a.index >= last)
            },
            "learner installed the snapshot",
        )
        .await
        .unwrap();
    {
        let state = learner.sm.state();
        let state = state.read().await;
        assert_eq!(state.configs().len(), 13);
        for i in 0..13 {
            let config = state.config(&format!("config-{i}")).unwrap();
            assert_eq!(config.spec.as_ref().unwrap().data, config_bytes(i));
        }
    }

    for node in nodes.iter().chain([&learner]) {
        node.raft.shutdown().await.unwrap();
    }
}
