//! End-to-end tests of the API: one-member clusters in temporary directories, served
//! on real listeners and called through the generated `ControlPlaneClient`.

use std::collections::BTreeMap;
use std::time::Duration;

use constellation_proto::v1::{self as pb, control_plane_client::ControlPlaneClient};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::control_plane_server;
use crate::cluster::{Cluster, Tuning};
use crate::raft::Member;

struct TestMember {
    me: Member,
    cluster: Cluster,
    client: ControlPlaneClient<Channel>,
    _dir: tempfile::TempDir,
}

/// Starts a bootstrapped one-member cluster serving the API, and a client for it.
async fn start() -> TestMember {
    start_with(&Tuning::default()).await
}

/// [`start`] with other timings.
async fn start_with(tuning: &Tuning) -> TestMember {
    let member = start_member_with(1, tuning).await;
    member.cluster.bootstrap().await.unwrap();
    member
        .cluster
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "single member leads")
        .await
        .unwrap();
    member
}

/// Starts member `id` serving both listeners, not yet part of any cluster.
async fn start_member(id: u64) -> TestMember {
    start_member_with(id, &Tuning::default()).await
}

async fn start_member_with(id: u64, tuning: &Tuning) -> TestMember {
    let dir = tempfile::tempdir().unwrap();
    let raft = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = Member {
        raft_addr: raft.local_addr().unwrap().to_string(),
        api_addr: api.local_addr().unwrap().to_string(),
    };
    let api_addr = me.api_addr.clone();
    let cluster = Cluster::open(id, dir.path(), me.clone(), tuning)
        .await
        .unwrap();
    let peer = cluster.peer_service();
    tokio::spawn(
        Server::builder()
            .add_service(peer)
            .serve_with_incoming(TcpListenerStream::new(raft)),
    );
    tokio::spawn(
        crate::api::server_builder()
            .add_service(control_plane_server(cluster.clone()))
            .serve_with_incoming(TcpListenerStream::new(api)),
    );
    let client = ControlPlaneClient::connect(format!("http://{api_addr}"))
        .await
        .unwrap();
    TestMember {
        me,
        cluster,
        client,
        _dir: dir,
    }
}

fn spec(name: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: name.into(),
        image: "nginx:1.27".into(),
        ..Default::default()
    }
}

fn apply(spec: pb::ServiceSpec) -> pb::ApplyServiceRequest {
    pb::ApplyServiceRequest {
        spec: Some(spec),
        ..Default::default()
    }
}

fn ttl(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

async fn list(client: &mut ControlPlaneClient<Channel>) -> pb::ListServicesResponse {
    client
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner()
}

fn bad_fields(status: &Status) -> Vec<String> {
    let bad = status
        .get_details_bad_request()
        .expect("a BadRequest detail");
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

/// The next message of a watch, failing the test after 10 s.
async fn next(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message within 10 s")
        .unwrap()
        .expect("the stream is open")
}

/// Reads watch messages until `count` events arrived; returns their indexes.
async fn indexes(stream: &mut tonic::Streaming<pb::WatchResponse>, count: usize) -> Vec<u64> {
    let mut found = Vec::new();
    while found.len() < count {
        found.extend(next(stream).await.events.iter().map(|e| e.index));
    }
    found
}

fn service_name(event: &pb::Event) -> &str {
    match &event.payload {
        Some(pb::event::Payload::Service(s)) => s
            .service
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .map_or("", |s| s.name.as_str()),
        _ => "",
    }
}

#[tokio::test]
async fn service_lifecycle() {
    let TestMember { mut client, .. } = start().await;
    let applied = client
        .apply_service(apply(spec("web")))
        .await
        .unwrap()
        .into_inner();
    assert!(applied.changed);
    assert_eq!(applied.service.as_ref().unwrap().version, 1);
    assert!(applied.index > 0);

    let got = client
        .get_service(pb::GetServiceRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.service, applied.service);
    assert!(got.allocations.is_empty());

    let again = client
        .apply_service(apply(spec("web")))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    assert_eq!(again.index, applied.index);
    assert_eq!(again.service.unwrap().version, 1);

    // A dry run reports the next version and writes nothing.
    let mut changed = spec("web");
    changed.image = "nginx:1.28".into();
    let dry = client
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(changed),
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.changed);
    assert_eq!(dry.service.unwrap().version, 2);
    let before = list(&mut client).await;
    assert_eq!(before.index, applied.index);
    assert_eq!(before.services, vec![applied.service.clone().unwrap()]);

    // Three mistakes: all reported, nothing written.
    let mut bad = spec("Bad_Name");
    bad.image = "".into();
    bad.replicas = Some(1_000_000);
    let status = client.apply_service(apply(bad)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_fields(&status).len(), 3, "{:?}", bad_fields(&status));
    assert_eq!(list(&mut client).await, before);

    // A stale expected version is refused by the state.
    let status = client
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec("web")),
            expected_version: Some(7),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    let deleted = client
        .delete_service(pb::DeleteServiceRequest { name: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.index > applied.index);
    let status = client
        .get_service(pb::GetServiceRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .delete_service(pb::DeleteServiceRequest { name: "web".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let after = list(&mut client).await;
    assert!(after.services.is_empty());
    assert_eq!(after.index, deleted.index);
}

#[tokio::test]
async fn oversize_request_is_refused() {
    let TestMember { mut client, .. } = start().await;
    let before = list(&mut client).await;
    let mut big = spec("big");
    big.env = BTreeMap::from([("BLOB".to_string(), "x".repeat(5 * 1024 * 1024))]);
    let status = client.apply_service(apply(big)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_fields(&status), ["request"]);
    assert_eq!(list(&mut client).await, before);
}

#[tokio::test]
async fn concurrent_writes_share_log_entries() {
    let TestMember {
        client, cluster, ..
    } = start().await;
    let last_log = || {
        cluster
            .raft()
            .metrics()
            .borrow()
            .last_log_index
            .unwrap_or(0)
    };
    let before = last_log();
    let writes: Vec<_> = (0..200)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let name = format!("svc-{i}");
                let applied = client.apply_service(apply(spec(&name))).await.unwrap();
                (name, applied.into_inner())
            })
        })
        .collect();
    let mut indexes = Vec::new();
    for write in writes {
        let (name, applied) = write.await.unwrap();
        // Each command got its own result, about its own service.
        assert_eq!(applied.service.unwrap().spec.unwrap().name, name);
        indexes.push(applied.index);
    }
    indexes.sort();
    indexes.dedup();
    assert_eq!(indexes.len(), 200, "every write has its own event index");
    assert_eq!(list(&mut client.clone()).await.services.len(), 200);
    let entries = last_log() - before;
    assert!(
        entries < 200,
        "200 concurrent writes took {entries} log entries"
    );
}

#[tokio::test]
async fn leases_fence_their_holders() {
    let TestMember { mut client, .. } = start().await;
    let acquire = |holder: &str| pb::AcquireLeaseRequest {
        name: "scheduler".into(),
        holder: holder.into(),
        ttl: ttl(30),
    };
    let a = client
        .acquire_lease(acquire("a"))
        .await
        .unwrap()
        .into_inner();
    assert!(a.acquired);
    let token = a.lease.unwrap().fencing_token;
    assert!(token > 0);

    let b = client
        .acquire_lease(acquire("b"))
        .await
        .unwrap()
        .into_inner();
    assert!(!b.acquired);
    assert_eq!(b.lease.unwrap().holder, "a");

    let status = client
        .renew_lease(pb::RenewLeaseRequest {
            name: "scheduler".into(),
            holder: "a".into(),
            fencing_token: token - 1,
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let renewed = client
        .renew_lease(pb::RenewLeaseRequest {
            name: "scheduler".into(),
            holder: "a".into(),
            fencing_token: token,
            ttl: ttl(60),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.lease.unwrap().fencing_token, token);

    client
        .release_lease(pb::ReleaseLeaseRequest {
            name: "scheduler".into(),
            holder: "a".into(),
            fencing_token: token,
        })
        .await
        .unwrap();
    let b = client
        .acquire_lease(acquire("b"))
        .await
        .unwrap()
        .into_inner();
    assert!(b.acquired);
    assert!(b.lease.unwrap().fencing_token > token);

    let leases = client
        .list_leases(pb::ListLeasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leases.leases.len(), 1);
    assert_eq!(leases.leases[0].holder, "b");

    let status = client
        .acquire_lease(pb::AcquireLeaseRequest {
            ttl: None,
            ..acquire("c")
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["ttl"]);
}

#[tokio::test]
async fn secrets_and_configs_never_return_secret_data() {
    let TestMember { mut client, .. } = start().await;
    let put = client
        .put_secret(pb::PutSecretRequest {
            secret: Some(pb::SecretSpec {
                name: "db-password".into(),
                data: b"hunter2".to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.secret.unwrap().name, "db-password");
    let listed = client
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.secrets.len(), 1);
    assert!(!format!("{listed:?}").contains("hunter2"));

    client
        .put_config(pb::PutConfigRequest {
            config: Some(pb::ConfigSpec {
                name: "nginx.conf".into(),
                data: b"events {}".to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let configs = client
        .list_configs(pb::ListConfigsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(configs.configs.len(), 1);

    client
        .delete_secret(pb::DeleteSecretRequest {
            name: "db-password".into(),
        })
        .await
        .unwrap();
    client
        .delete_config(pb::DeleteConfigRequest {
            name: "nginx.conf".into(),
        })
        .await
        .unwrap();
    let status = client
        .delete_config(pb::DeleteConfigRequest {
            name: "nginx.conf".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn nodes_and_migrations_answer_not_found() {
    let TestMember { mut client, .. } = start().await;
    let status = client
        .get_node(pb::GetNodeRequest {
            name: "n1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .cordon_node(pb::CordonNodeRequest { name: "n1".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .create_migration(pb::CreateMigrationRequest {
            service_name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let nodes = client
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(nodes.nodes.is_empty());
    let migrations = client
        .list_migrations(pb::ListMigrationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(migrations.migrations.is_empty());
}

#[tokio::test]
async fn cluster_status_and_membership() {
    let TestMember {
        mut client,
        cluster,
        ..
    } = start().await;
    let status = client
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.id, 1);
    assert_eq!(status.leader_id, Some(1));
    assert_eq!(status.members.len(), 1);
    assert_eq!(
        status.members[0].api_addr,
        cluster.leader().unwrap().1.api_addr
    );

    let status = client
        .add_member(pb::AddMemberRequest {
            id: 0,
            raft_addr: "nowhere".into(),
            api_addr: "".into(),
            learner_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["id", "raft_addr", "api_addr"]);
    let status = client
        .remove_member(pb::RemoveMemberRequest { id: 9 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let TestMember { mut client, .. } = start().await;
    for name in ["a", "b", "c"] {
        client.apply_service(apply(spec(name))).await.unwrap();
    }
    let index = list(&mut client).await.index;
    let mut stream = client
        .watch(pb::WatchRequest {
            from_index: 0,
            topics: vec![pb::Topic::Service as i32],
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await;
    let names: Vec<&str> = first.events.iter().map(service_name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(first.last_index, index);
    let seen: Vec<u64> = first.events.iter().map(|e| e.index).collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    let applied = client
        .apply_service(apply(spec("d")))
        .await
        .unwrap()
        .into_inner();
    let live = next(&mut stream).await;
    assert_eq!(live.events.len(), 1);
    assert_eq!(service_name(&live.events[0]), "d");
    assert_eq!(live.events[0].index, applied.index);
}

#[tokio::test]
async fn an_idle_watch_sends_heartbeats_with_the_current_index() {
    let tuning = Tuning {
        watch_heartbeat: Duration::from_millis(200),
        ..Tuning::default()
    };
    let TestMember { mut client, .. } = start_with(&tuning).await;
    client.apply_service(apply(spec("a"))).await.unwrap();
    let index = list(&mut client).await.index;
    let mut stream = client
        .watch(pb::WatchRequest {
            from_index: index,
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    // Nothing happens: the stream still speaks, with empty responses at the index.
    for _ in 0..3 {
        let beat = next(&mut stream).await;
        assert!(beat.events.is_empty(), "{beat:?}");
        assert_eq!(beat.last_index, index);
    }
    // Events after heartbeats arrive as usual.
    let applied = client
        .apply_service(apply(spec("b")))
        .await
        .unwrap()
        .into_inner();
    let mut live = next(&mut stream).await;
    while live.events.is_empty() {
        live = next(&mut stream).await;
    }
    assert_eq!(live.events[0].index, index + 1);
    assert_eq!(live.last_index, applied.index);
}

#[tokio::test]
async fn watch_resumes_from_the_last_index_without_duplicates() {
    let TestMember { mut client, .. } = start().await;
    for name in ["a", "b", "c", "d"] {
        client.apply_service(apply(spec(name))).await.unwrap();
    }
    let all = {
        let mut stream = client
            .watch(pb::WatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        indexes(&mut stream, 1).await
    };
    assert!(all.len() >= 4, "{all:?}");
    let expected: Vec<u64> = (all[0]..all[0] + all.len() as u64).collect();
    assert_eq!(all, expected, "gapless and in order");

    // Read two events, disconnect, resume from the second: exactly the rest follows.
    let mut stream = client
        .watch(pb::WatchRequest {
            from_index: all[0] - 1,
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let head: Vec<u64> = indexes(&mut stream, 1).await.into_iter().take(2).collect();
    drop(stream);
    let resume = head[1];
    let mut stream = client
        .watch(pb::WatchRequest {
            from_index: resume,
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let rest = indexes(&mut stream, all.len() - 2).await;
    assert_eq!(rest, all[2..]);
    let applied = client
        .apply_service(apply(spec("e")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(indexes(&mut stream, 1).await, [applied.index]);
}

#[tokio::test]
async fn watch_refuses_unknown_topics() {
    let TestMember { mut client, .. } = start().await;
    let status = client
        .watch(pb::WatchRequest {
            from_index: 0,
            topics: vec![99],
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["topics[0]"]);
}

async fn save(client: &mut ControlPlaneClient<Channel>) -> Vec<pb::SnapshotChunk> {
    client
        .save_snapshot(pb::SaveSnapshotRequest {})
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
}

async fn restore(
    client: &mut ControlPlaneClient<Channel>,
    chunks: Vec<pb::SnapshotChunk>,
) -> Result<pb::RestoreSnapshotResponse, Status> {
    client
        .restore_snapshot(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn snapshot_restores_into_another_cluster() {
    let TestMember { mut client, .. } = start().await;
    for name in ["a", "b"] {
        client.apply_service(apply(spec(name))).await.unwrap();
    }
    client
        .acquire_lease(pb::AcquireLeaseRequest {
            name: "l".into(),
            holder: "h".into(),
            ttl: ttl(30),
        })
        .await
        .unwrap();
    let source = list(&mut client).await;
    let chunks = save(&mut client).await;
    match &chunks[0].part {
        Some(pb::snapshot_chunk::Part::Header(h)) => {
            assert_eq!(h.format_version, crate::state::SNAPSHOT_FORMAT_VERSION);
            assert_eq!(h.event_index, source.index);
        }
        other => panic!("first part {other:?}"),
    }
    assert!(matches!(
        chunks.last().unwrap().part,
        Some(pb::snapshot_chunk::Part::Trailer(_))
    ));

    let TestMember {
        client: mut target, ..
    } = start().await;
    let empty = list(&mut target).await;

    // A flipped data byte fails the checksum; nothing changes.
    let mut corrupt = chunks.clone();
    let Some(pb::snapshot_chunk::Part::Data(data)) = &mut corrupt[1].part else {
        panic!("second part is data");
    };
    let middle = data.len() / 2;
    data[middle] ^= 0x40;
    let status = restore(&mut target, corrupt).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_fields(&status), ["trailer.sha256"]);
    // Data before the header is refused too.
    let status = restore(&mut target, chunks[1..].to_vec())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["header"]);
    assert_eq!(list(&mut target).await, empty);

    let restored = restore(&mut target, chunks).await.unwrap();
    let after = list(&mut target).await;
    assert_eq!(after.services, source.services);
    assert_eq!(after.index, restored.index);
    assert!(restored.index > source.index);
    let leases = target
        .list_leases(pb::ListLeasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leases.leases.len(), 1);

    // The restore cleared the history: watching from an old index must re-list.
    let status = target
        .watch(pb::WatchRequest {
            from_index: 1,
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let info = status
        .get_details_error_info()
        .expect("an ErrorInfo detail");
    assert_eq!(info.reason, "INDEX_COMPACTED");
    assert_eq!(info.domain, "constellation.v1");
    assert_eq!(
        info.metadata.get("oldest_retained"),
        Some(&(restored.index + 1).to_string())
    );
    // Watching from the listed index works.
    let mut stream = target
        .watch(pb::WatchRequest {
            from_index: after.index,
            topics: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let applied = target
        .apply_service(apply(spec("c")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(indexes(&mut stream, 1).await, [applied.index]);
}

fn add(member: &TestMember, id: u64) -> pb::AddMemberRequest {
    pb::AddMemberRequest {
        id,
        raft_addr: member.me.raft_addr.clone(),
        api_addr: member.me.api_addr.clone(),
        learner_only: false,
    }
}

#[tokio::test]
async fn followers_proxy_membership_changes_to_the_leader() {
    let mut first = start().await;
    let second = start_member(2).await;
    let third = start_member(3).await;
    let added = first
        .client
        .add_member(add(&second, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.status.unwrap().members.len(), 2);
    second
        .cluster
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "the follower knows the leader")
        .await
        .unwrap();

    // Asked of the follower, answered by the leader.
    let mut follower = second.client.clone();
    let added = follower
        .add_member(add(&third, 3))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(added.id, 1, "the leader answered");
    assert_eq!(added.members.len(), 3);
    let removed = follower
        .remove_member(pb::RemoveMemberRequest { id: 3 })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(removed.members.len(), 2);

    // Writes through the follower reach the leader too.
    let applied = follower
        .apply_service(apply(spec("web")))
        .await
        .unwrap()
        .into_inner();
    assert!(applied.changed);
}

#[test]
fn snapshot_data_is_split_into_chunks_of_at_most_one_mib() {
    use super::snapshot::{CHUNK_BYTES, chunks};
    let data = vec![7u8; CHUNK_BYTES * 2 + 10];
    let parts = chunks(pb::SnapshotHeader::default(), &data);
    let sizes: Vec<usize> = parts
        .iter()
        .filter_map(|c| match &c.part {
            Some(pb::snapshot_chunk::Part::Data(d)) => Some(d.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [CHUNK_BYTES, CHUNK_BYTES, 10]);
    assert_eq!(parts.len(), 5);
}

#[test]
fn restored_state_is_inflated_with_a_cap() {
    use super::snapshot::{MAX_RESTORE_STATE_BYTES, decode};
    use std::io::Write;
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    bomb.write_all(&vec![0u8; MAX_RESTORE_STATE_BYTES + 1024])
        .unwrap();
    let bomb = bomb.finish().unwrap();
    let err = decode(&bomb).unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let err = decode(b"not gzip").unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}
