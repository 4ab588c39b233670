//! End-to-end tests of the dispatcher: a one-member cluster serving the Dispatcher and
//! ControlPlane services on a real listener, an agent played by a `DispatcherClient`.

use std::time::Duration;

use constellation_proto::v1::{
    self as pb, agent_message::Kind as Up, control_message::Kind as Down,
    control_plane_client::ControlPlaneClient, dispatcher_client::DispatcherClient,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Server};
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

use super::{DispatcherService, DispatcherSettings, SessionRegistry};
use crate::api::control_plane_server;
use crate::cluster::{Cluster, Tuning};
use crate::raft::Member;

const WAIT: Duration = Duration::from_secs(10);

struct TestMember {
    api_addr: String,
    cluster: Cluster,
    sessions: SessionRegistry,
    control: ControlPlaneClient<Channel>,
    dispatcher: DispatcherClient<Channel>,
    _dir: tempfile::TempDir,
}

/// A bootstrapped one-member cluster serving both APIs on one listener.
async fn start(settings: DispatcherSettings) -> TestMember {
    let dir = tempfile::tempdir().unwrap();
    let raft = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = Member {
        raft_addr: raft.local_addr().unwrap().to_string(),
        api_addr: api.local_addr().unwrap().to_string(),
    };
    let cluster = Cluster::open(1, dir.path(), me.clone(), &Tuning::default())
        .await
        .unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(cluster.peer_service())
            .serve_with_incoming(TcpListenerStream::new(raft)),
    );
    let service = DispatcherService::new(cluster.clone(), settings);
    let sessions = service.sessions();
    tokio::spawn(
        Server::builder()
            .add_service(control_plane_server(cluster.clone()))
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(api)),
    );
    cluster.bootstrap().await.unwrap();
    cluster
        .raft()
        .wait(Some(WAIT))
        .current_leader(1, "single member leads")
        .await
        .unwrap();
    let url = format!("http://{}", me.api_addr);
    TestMember {
        api_addr: me.api_addr,
        cluster,
        sessions,
        control: ControlPlaneClient::connect(url.clone()).await.unwrap(),
        dispatcher: DispatcherClient::connect(url).await.unwrap(),
        _dir: dir,
    }
}

/// An agent's end of a session.
struct Agent {
    up: mpsc::Sender<pb::AgentMessage>,
    down: Streaming<pb::ControlMessage>,
}

impl Agent {
    async fn send(&self, kind: Up) {
        let message = pb::AgentMessage { kind: Some(kind) };
        self.up.send(message).await.unwrap();
    }

    async fn next(&mut self) -> Down {
        tokio::time::timeout(WAIT, self.down.message())
            .await
            .expect("a control message within 10 s")
            .unwrap()
            .expect("the session is open")
            .kind
            .expect("a control message kind")
    }

    async fn assignments(&mut self) -> pb::Assignments {
        match self.next().await {
            Down::Assignments(a) => a,
            other => panic!("expected assignments, got {other:?}"),
        }
    }
}

/// Opens a session whose first message is `first`.
async fn open(client: &mut DispatcherClient<Channel>, first: Up) -> Result<Agent, Status> {
    let (up, rx) = mpsc::channel(16);
    up.send(pb::AgentMessage { kind: Some(first) })
        .await
        .unwrap();
    let down = client.session(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Agent { up, down })
}

fn hello(name: &str, node_id: &str) -> Up {
    Up::Hello(pb::Hello {
        node: Some(pb::NodeDescription {
            name: name.into(),
            addresses: Some(pb::NodeAddresses {
                gossip_addr: format!("{name}.local:7946"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        node_id: node_id.into(),
        ..Default::default()
    })
}

/// Opens a session for `name` and returns it with its `SessionAccepted`, checking the
/// FULL that follows is empty.
async fn join(client: &mut DispatcherClient<Channel>, name: &str) -> (Agent, pb::SessionAccepted) {
    let mut agent = open(client, hello(name, "")).await.unwrap();
    let Down::Accepted(accepted) = agent.next().await else {
        panic!("expected SessionAccepted first");
    };
    let full = agent.assignments().await;
    assert_eq!(full.kind(), pb::AssignmentsKind::Full);
    assert_eq!(full.version, 1);
    assert!(full.upserts.is_empty() && full.removals.is_empty());
    (agent, accepted)
}

fn allocation(id: &str, slot: u32, node: &pb::SessionAccepted, name: &str) -> pb::Allocation {
    pb::Allocation {
        id: id.into(),
        service_name: "web".into(),
        service_version: 1,
        node_id: node.node_id.clone(),
        node_name: name.into(),
        slot,
        desired_state: pb::AllocationDesiredState::Run as i32,
        ..Default::default()
    }
}

async fn plan(cluster: &Cluster, upserts: Vec<pb::Allocation>) {
    cluster
        .write(pb::Command {
            op: Some(pb::command::Op::Plan(pb::PlanCommand {
                upserts,
                removals: Vec::new(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn running(id: &str) -> pb::AllocationReport {
    pb::AllocationReport {
        allocation_id: id.into(),
        status: Some(pb::AllocationStatus {
            state: pb::AllocationState::Running as i32,
            health: pb::HealthState::Healthy as i32,
            container_id: format!("c-{id}"),
            ..Default::default()
        }),
        spec_hash: String::new(),
    }
}

async fn allocations(control: &mut ControlPlaneClient<Channel>) -> Vec<pb::Allocation> {
    control
        .list_allocations(pb::ListAllocationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .allocations
}

/// Polls until every listed allocation is RUNNING and healthy.
async fn wait_running(control: &mut ControlPlaneClient<Channel>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let allocs = allocations(control).await;
        let all = allocs.iter().all(|a| {
            let s = a.status.clone().unwrap_or_default();
            s.state() == pb::AllocationState::Running && s.health() == pb::HealthState::Healthy
        });
        if !allocs.is_empty() && all {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "allocations not running: {allocs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Applies service `web` referencing secret `db-password` (put first).
async fn apply_web(control: &mut ControlPlaneClient<Channel>) -> pb::Service {
    control
        .put_secret(pb::PutSecretRequest {
            secret: Some(pb::SecretSpec {
                name: "db-password".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let spec = pb::ServiceSpec {
        name: "web".into(),
        image: "nginx:1.27".into(),
        replicas: Some(2),
        secrets: vec![pb::FileReference {
            name: "db-password".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    control
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap()
}

fn bad_fields(status: &Status) -> Vec<String> {
    let bad = status
        .get_details_bad_request()
        .expect("a BadRequest detail");
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

#[tokio::test]
async fn session_follows_assignments_and_batches_status() {
    let mut m = start(DispatcherSettings::default()).await;
    let (mut agent, accepted) = join(&mut m.dispatcher, "node-1").await;
    assert!(!accepted.node_id.is_empty());
    assert!(!accepted.session_id.is_empty());
    assert_eq!(
        accepted.heartbeat_period,
        Some(pbjson_types::Duration {
            seconds: 1,
            nanos: 0
        })
    );
    assert!(accepted.gossip_seeds.is_empty(), "{accepted:?}");
    assert_eq!(accepted.controlplane_addrs, vec![m.api_addr.clone()]);
    assert_eq!(accepted.cluster_nodes, 1, "the node counts itself");
    let node = m.cluster.state().read().await.node("node-1").cloned();
    assert_eq!(
        node.as_ref().map(|n| n.id.as_str()),
        Some(&*accepted.node_id)
    );
    assert_eq!(node.unwrap().status(), pb::NodeStatus::Ready);
    assert!(
        m.sessions
            .lock()
            .unwrap()
            .live
            .contains_key(&accepted.node_id)
    );

    // Placing two allocations sends them, with the current spec and the secret's data.
    let service = apply_web(&mut m.control).await;
    let ids = ["alloc-a", "alloc-b"];
    plan(
        &m.cluster,
        vec![
            allocation(ids[0], 0, &accepted, "node-1"),
            allocation(ids[1], 1, &accepted, "node-1"),
        ],
    )
    .await;
    let delta = agent.assignments().await;
    assert_eq!(delta.kind(), pb::AssignmentsKind::Delta);
    assert_eq!(delta.version, 2);
    assert!(delta.removals.is_empty());
    let got: Vec<_> = delta
        .upserts
        .iter()
        .map(|a| a.allocation.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(got, ids);
    for upsert in &delta.upserts {
        assert_eq!(upsert.spec, service.spec);
        assert_eq!(upsert.spec_hash, service.spec_hash);
        assert_eq!(
            upsert.secrets,
            vec![pb::FileData {
                name: "db-password".into(),
                data: b"hunter2".to_vec()
            }]
        );
        assert!(upsert.configs.is_empty());
    }

    // One status batch becomes one ReportStatus write.
    let before = m.cluster.state().read().await.event_index();
    agent
        .send(Up::Status(pb::StatusBatch {
            reports: vec![running(ids[0]), running(ids[1])],
        }))
        .await;
    wait_running(&mut m.control, Duration::from_secs(1)).await;
    let service_events = {
        let state = m.cluster.state().read().await;
        let events = state.events_after(before, &[pb::Topic::Service]).unwrap();
        assert_eq!(
            state
                .service("web")
                .unwrap()
                .status
                .as_ref()
                .unwrap()
                .healthy,
            2
        );
        events.len()
    };
    // Each ReportStatus write settles the service once: one event means one write.
    assert_eq!(service_events, 1);

    // Heartbeats are acknowledged with the period and the cluster's size, which has
    // grown by a node since this session was accepted.
    let (_other, other_accepted) = join(&mut m.dispatcher, "node-2").await;
    assert_eq!(other_accepted.cluster_nodes, 2);
    agent
        .send(Up::Heartbeat(pb::Heartbeat { sequence: 7 }))
        .await;
    let Down::HeartbeatAck(ack) = agent.next().await else {
        panic!("expected a heartbeat ack (status changes send no assignments)");
    };
    assert_eq!(ack.sequence, 7);
    assert_eq!(ack.heartbeat_period, accepted.heartbeat_period);
    assert_eq!(ack.cluster_nodes, 2);

    // Deleting the service removes both.
    m.control
        .delete_service(pb::DeleteServiceRequest { name: "web".into() })
        .await
        .unwrap();
    let delta = agent.assignments().await;
    assert_eq!(delta.kind(), pb::AssignmentsKind::Delta);
    assert_eq!(delta.version, 3);
    assert!(delta.upserts.is_empty());
    assert_eq!(delta.removals, ids);

    // Closing the stream ends the session and its registry entry.
    drop(agent);
    let deadline = tokio::time::Instant::now() + WAIT;
    while m
        .sessions
        .lock()
        .unwrap()
        .live
        .contains_key(&accepted.node_id)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_known_name_keeps_its_node_id_and_others_get_gossip_seeds() {
    let mut m = start(DispatcherSettings::default()).await;
    let (mut first, accepted) = join(&mut m.dispatcher, "node-1").await;

    let mut again = open(&mut m.dispatcher, hello("node-1", "some-other-id"))
        .await
        .unwrap();
    let Down::Accepted(second) = again.next().await else {
        panic!("expected SessionAccepted");
    };
    assert_eq!(second.node_id, accepted.node_id);
    assert_ne!(second.session_id, accepted.session_id);
    let registered = m.sessions.lock().unwrap().live[&accepted.node_id].clone();
    assert_eq!(registered.session_id, second.session_id);

    // The replaced session is ended at once.
    let ended = tokio::time::timeout(WAIT, first.down.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    drop(first);
    // Its end leaves the newer session's entry alone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let registered = m.sessions.lock().unwrap().live[&accepted.node_id].clone();
    assert_eq!(registered.session_id, second.session_id);

    let (_other, other) = join(&mut m.dispatcher, "node-2").await;
    assert_ne!(other.node_id, accepted.node_id);
    assert_eq!(other.gossip_seeds, vec!["node-1.local:7946".to_string()]);
}

#[tokio::test]
async fn the_first_message_must_be_a_valid_hello() {
    let mut m = start(DispatcherSettings::default()).await;
    let status = open(&mut m.dispatcher, hello("Bad_Name", ""))
        .await
        .err()
        .expect("a bad name is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_fields(&status), vec!["hello.node.name".to_string()]);

    let status = open(
        &mut m.dispatcher,
        Up::Heartbeat(pb::Heartbeat { sequence: 1 }),
    )
    .await
    .err()
    .expect("a heartbeat first is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_fields(&status), vec!["hello".to_string()]);
    assert_eq!(m.cluster.state().read().await.nodes().count(), 0);
}

#[tokio::test]
async fn pending_status_is_written_when_the_session_ends() {
    let settings = DispatcherSettings {
        status_flush_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut m = start(settings).await;
    let (mut agent, accepted) = join(&mut m.dispatcher, "node-1").await;
    apply_web(&mut m.control).await;
    plan(
        &m.cluster,
        vec![allocation("alloc-a", 0, &accepted, "node-1")],
    )
    .await;
    assert_eq!(agent.assignments().await.upserts.len(), 1);
    agent
        .send(Up::Status(pb::StatusBatch {
            reports: vec![running("alloc-a")],
        }))
        .await;
    // Messages are handled in order: once the ack is here, the batch is buffered.
    agent
        .send(Up::Heartbeat(pb::Heartbeat { sequence: 1 }))
        .await;
    assert!(matches!(agent.next().await, Down::HeartbeatAck(_)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        allocations(&mut m.control).await[0]
            .status
            .as_ref()
            .unwrap()
            .state(),
        pb::AllocationState::Pending,
        "nothing is written before the interval"
    );
    drop(agent);
    wait_running(&mut m.control, WAIT).await;
}

#[tokio::test]
async fn a_full_buffer_is_written_before_the_interval() {
    let settings = DispatcherSettings {
        status_flush_interval: Duration::from_secs(3600),
        status_batch_max: 2,
        ..Default::default()
    };
    let mut m = start(settings).await;
    let (mut agent, accepted) = join(&mut m.dispatcher, "node-1").await;
    apply_web(&mut m.control).await;
    let allocs = vec![
        allocation("alloc-a", 0, &accepted, "node-1"),
        allocation("alloc-b", 1, &accepted, "node-1"),
    ];
    plan(&m.cluster, allocs).await;
    assert_eq!(agent.assignments().await.upserts.len(), 2);
    for id in ["alloc-a", "alloc-b"] {
        agent
            .send(Up::Status(pb::StatusBatch {
                reports: vec![running(id)],
            }))
            .await;
    }
    wait_running(&mut m.control, Duration::from_secs(2)).await;
}

/// The state of allocation `id`, listed with the terminal ones.
async fn state_of(control: &mut ControlPlaneClient<Channel>, id: &str) -> Option<pb::Allocation> {
    control
        .list_allocations(pb::ListAllocationsRequest {
            include_terminal: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .allocations
        .into_iter()
        .find(|a| a.id == id)
}

#[tokio::test]
async fn a_reconnecting_agent_that_no_longer_runs_a_stopped_allocation_frees_its_slot() {
    let mut m = start(DispatcherSettings::default()).await;
    let (agent, accepted) = join(&mut m.dispatcher, "node-1").await;
    plan(&m.cluster, vec![allocation("a1", 0, &accepted, "node-1")]).await;
    agent
        .send(Up::Status(pb::StatusBatch {
            reports: vec![running("a1")],
        }))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut stored = loop {
        let a = state_of(&mut m.control, "a1").await;
        if let Some(a) = a.filter(|a| {
            a.status
                .as_ref()
                .is_some_and(|s| s.state() == pb::AllocationState::Running)
        }) {
            break a;
        }
        assert!(tokio::time::Instant::now() < deadline, "a1 never RUNNING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Told to stop; the agent removes the container but its report is lost with it.
    stored.set_desired_state(pb::AllocationDesiredState::Stop);
    plan(&m.cluster, vec![stored]).await;
    drop(agent);

    // It comes back running nothing: the allocation is STOPPED, its slot free.
    let _again = open(&mut m.dispatcher, hello("node-1", &accepted.node_id))
        .await
        .unwrap();
    loop {
        let a = state_of(&mut m.control, "a1").await.expect("a1 retained");
        let state = a.status.as_ref().map(|s| s.state());
        if state == Some(pb::AllocationState::Stopped) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a1 not STOPPED: {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node being registered has no session yet: it must not look like a node unheard of
/// since the election (its TTL would have run out long ago on a leader of some age).
#[test]
fn a_node_being_registered_counts_as_just_heard_from() {
    use crate::failover::{DetectorSettings, down_nodes};
    let elected = std::time::Instant::now();
    let now = elected + Duration::from_secs(600);
    let ready = vec![("id-new".to_string(), "new".to_string())];
    let settings = DetectorSettings::default();
    let mut sessions = super::Sessions::default();
    assert_eq!(
        down_nodes(&settings, &ready, &sessions.views(), elected, now).len(),
        1,
        "without the mark, the TTL counts from the election"
    );
    sessions.expect("id-new", 3, now);
    assert!(down_nodes(&settings, &ready, &sessions.views(), elected, now).is_empty());
    let ttl_later = now + settings.ttl(1) * 2;
    assert_eq!(
        down_nodes(&settings, &ready, &sessions.views(), elected, ttl_later).len(),
        1,
        "a session that never comes still expires"
    );
}
