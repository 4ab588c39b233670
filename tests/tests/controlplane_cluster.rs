//! A 3-member control plane of real processes on loopback: acknowledged writes survive
//! the leader's death and a crash of every member; without a majority nothing is
//! acknowledged; leases pass to another holder only after expiry, with a higher token.

use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use constellation_tests::binaries::ControlPlane;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

type Client = ControlPlaneClient<Channel>;

async fn client(addr: &str) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    ControlPlaneClient::new(channel)
}

/// Starts three members: the first bootstraps, the others join through it.
async fn three_members(dir: &std::path::Path) -> Vec<ControlPlane> {
    ControlPlane::start_cluster(dir, 3)
        .await
        .expect("3 voters and a leader")
}

async fn status(addr: &str) -> Result<pb::ClusterStatusResponse, tonic::Status> {
    Ok(client(addr)
        .await
        .cluster_status(pb::ClusterStatusRequest {})
        .await?
        .into_inner())
}

/// Polls `probe` until it returns `Some`, at most `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = probe().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn spec(name: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: name.into(),
        image: "constellation-test/busybox:latest".into(),
        ..Default::default()
    }
}

async fn apply(addr: &str, name: &str) -> Result<(), tonic::Status> {
    client(addr)
        .await
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec(name)),
            ..Default::default()
        })
        .await
        .map(drop)
}

async fn service_names(addr: &str) -> BTreeSet<String> {
    client(addr)
        .await
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .services
        .into_iter()
        .filter_map(|s| s.spec.map(|s| s.name))
        .collect()
}

fn leader_index(members: &[ControlPlane], status: &pb::ClusterStatusResponse) -> usize {
    let leader = status.leader_id.expect("a leader");
    members.iter().position(|m| m.id == leader).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_death_and_full_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_members(dir.path()).await;
    let first_status = status(&members[0].api_addr).await.unwrap();
    let old_leader = leader_index(&members, &first_status);
    let follower = (old_leader + 1) % 3;

    // A write sent to a follower is forwarded and acknowledged.
    apply(&members[follower].api_addr, "via-follower")
        .await
        .unwrap();

    // Writers send to every member in turn and record what was acknowledged.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let addrs: Vec<String> = members.iter().map(|m| m.api_addr.clone()).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, addrs, stop) = (acked.clone(), addrs.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-{n}");
                let addr = &addrs[(w + n as usize) % addrs.len()];
                if apply(addr, &name).await.is_ok() {
                    acked.lock().unwrap().insert(name);
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = acked.lock().unwrap().len();
    members[old_leader].crash().await.unwrap();
    let survivor = &members[follower].api_addr;
    let new_status = wait_for(Duration::from_secs(20), || async {
        let s = status(survivor).await.ok()?;
        (s.leader_id.is_some() && s.leader_id != first_status.leader_id).then_some(s)
    })
    .await
    .expect("a new leader");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(before_kill > 0, "writes before the kill");
    assert!(acked.len() > before_kill, "writes continued after the kill");
    assert_ne!(new_status.leader_id, first_status.leader_id);

    let present = service_names(survivor).await;
    let missing: Vec<_> = acked.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(present.contains("via-follower"));

    // Crash every member, restart all from their data directories: everything is back.
    members[old_leader].restart().await.unwrap();
    for m in members.iter_mut() {
        m.crash().await.unwrap();
    }
    for m in members.iter_mut() {
        m.restart().await.unwrap();
    }
    let addr = members[0].api_addr.clone();
    let after = wait_for(Duration::from_secs(30), || async {
        let names = client(&addr)
            .await
            .list_services(pb::ListServicesRequest::default())
            .await
            .ok()?
            .into_inner()
            .services
            .into_iter()
            .filter_map(|s| s.spec.map(|s| s.name))
            .collect::<BTreeSet<_>>();
        Some(names)
    })
    .await
    .unwrap();
    let missing: Vec<_> = acked.difference(&after).collect();
    assert!(missing.is_empty(), "lost after a full crash: {missing:?}");
}

async fn acquire(
    addr: &str,
    holder: &str,
    ttl_secs: i64,
) -> Result<pb::AcquireLeaseResponse, tonic::Status> {
    client(addr)
        .await
        .acquire_lease(pb::AcquireLeaseRequest {
            name: "db-primary".into(),
            holder: holder.into(),
            ttl: Some(pbjson_types::Duration {
                seconds: ttl_secs,
                nanos: 0,
            }),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_pass_on_after_expiry_and_a_minority_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = three_members(dir.path()).await;
    let addr = members[1].api_addr.clone();

    // Holder a takes the lease; b is refused while a holds it.
    let a = acquire(&addr, "a", 2).await.unwrap();
    assert!(a.acquired);
    let a_token = a.lease.unwrap().fencing_token;
    let b = acquire(&addr, "b", 2).await.unwrap();
    assert!(!b.acquired);
    assert_eq!(b.lease.unwrap().holder, "a");

    // a dies (stops renewing): b gets the lease after expiry, with a higher token.
    let started = Instant::now();
    let b = wait_for(Duration::from_secs(15), || async {
        let r = acquire(&addr, "b", 2).await.ok()?;
        r.acquired.then_some(r)
    })
    .await
    .expect("b acquires after expiry");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "expired early: {:?}",
        started.elapsed()
    );
    let b_lease = b.lease.unwrap();
    assert_eq!(b_lease.holder, "b");
    assert!(b_lease.fencing_token > a_token);

    // a's renewal with its old token is refused.
    let renew = client(&addr)
        .await
        .renew_lease(pb::RenewLeaseRequest {
            name: "db-primary".into(),
            holder: "a".into(),
            fencing_token: a_token,
            ttl: None,
        })
        .await;
    assert_eq!(renew.unwrap_err().code(), tonic::Code::FailedPrecondition);

    // Stop two of the three: the last acknowledges no write and grants no lease.
    members[0].crash().await.unwrap();
    members[2].crash().await.unwrap();
    let write = apply(&addr, "without-majority").await;
    assert!(write.is_err(), "a minority acknowledged a write");
    let lease = acquire(&addr, "c", 2).await;
    assert!(
        lease.as_ref().map_or(true, |r| !r.acquired),
        "a minority granted a lease: {lease:?}"
    );
}
