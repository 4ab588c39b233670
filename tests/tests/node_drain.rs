//! Draining a node with the real binaries on the real Docker engine: a three-member
//! control plane, two agents (two node names on the local engine), a service with two
//! replicas and an HTTP health check. Cordon and uncordon work through any member;
//! draining one node moves its replica to the other, and the service's healthy count,
//! sampled every 100 ms throughout, never drops to zero.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, client, is_healthy as healthy};
use constellation_tests::binaries::{Agent, ControlPlane};
use constellation_tests::docker;
use constellation_tests::specs::{http_service, millis};
use constellation_tests::wait_until;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

async fn node(addr: &str, name: &str) -> pb::Node {
    client(addr)
        .get_node(pb::GetNodeRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("GetNode")
        .into_inner()
        .node
        .expect("a node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_its_replica_and_never_leaves_none_healthy() {
    let Some(_docker) = docker::connect_or_skip("node_drain").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let members = ControlPlane::start_cluster(dir.path(), 3).await.unwrap();
    let addrs: Vec<String> = members.iter().map(|m| m.api_addr.clone()).collect();
    let node_a = docker::unique_name("drain-a");
    let node_b = docker::unique_name("drain-b");
    let _containers = docker::NodeContainersGuard::new(&[&node_a, &node_b]);
    let _a = Agent::start(&node_a, &addrs[0], &dir.path().join("a").join("secrets"))
        .await
        .unwrap();
    let _b = Agent::start(&node_b, &addrs[0], &dir.path().join("b").join("secrets"))
        .await
        .unwrap();
    for name in [&node_a, &node_b] {
        wait_until(Duration::from_secs(20), "node registered", || async {
            client(&addrs[1])
                .get_node(pb::GetNodeRequest {
                    name: name.to_string(),
                    ..Default::default()
                })
                .await
                .is_ok_and(|r| {
                    r.into_inner()
                        .node
                        .is_some_and(|n| n.status() == pb::NodeStatus::Ready)
                })
        })
        .await;
    }

    // Cordon through one member, uncordon through another: both are writes any
    // member accepts and forwards to the leader.
    client(&addrs[1])
        .cordon_node(pb::CordonNodeRequest {
            name: node_b.clone(),
        })
        .await
        .expect("cordon through a follower");
    assert_eq!(
        node(&addrs[2], &node_b).await.availability(),
        pb::NodeAvailability::Cordoned
    );
    client(&addrs[2])
        .uncordon_node(pb::UncordonNodeRequest {
            name: node_b.clone(),
        })
        .await
        .expect("uncordon through another member");
    assert_eq!(
        node(&addrs[0], &node_b).await.availability(),
        pb::NodeAvailability::Active
    );

    let service = docker::unique_name("drainweb");
    client(&addrs[0])
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(http_service(&service, 2, 300)),
            ..Default::default()
        })
        .await
        .expect("ApplyService");
    wait_until(
        Duration::from_secs(40),
        "two healthy replicas, one per node",
        || async {
            let live = allocations(&addrs[0], &service).await;
            live.len() == 2
                && live.iter().all(healthy)
                && live.iter().any(|a| a.node_name == node_a)
                && live.iter().any(|a| a.node_name == node_b)
        },
    )
    .await;
    let before = allocations(&addrs[0], &service).await;
    let old = before
        .iter()
        .find(|a| a.node_name == node_a)
        .cloned()
        .expect("a replica on the drained node");

    // Sample the healthy count every 100 ms from now until the drain is done.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (addr, service, sampling) = (addrs[0].clone(), service.clone(), sampling.clone());
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let live = allocations(&addr, &service).await;
                samples.push(live.iter().filter(|a| healthy(a)).count());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        }
    });

    let started = Instant::now();
    let drained = client(&addrs[1])
        .drain_node(pb::DrainNodeRequest {
            name: node_a.clone(),
            deadline: millis(60_000),
            batch_size: 1,
        })
        .await
        .expect("drain through a follower")
        .into_inner()
        .node
        .expect("the node");
    assert_eq!(drained.availability(), pb::NodeAvailability::Draining);

    wait_until(Duration::from_secs(45), "drain completed", || async {
        let live = allocations(&addrs[0], &service).await;
        let drain = node(&addrs[0], &node_a).await.drain.unwrap_or_default();
        drain.completed
            && drain.remaining == 0
            && live.len() == 2
            && live.iter().all(|a| a.node_name == node_b && healthy(a))
    })
    .await;
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    eprintln!(
        "drain took {took:?}; {} samples, healthy counts min {:?} max {:?}",
        samples.len(),
        samples.iter().min(),
        samples.iter().max()
    );
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    assert!(
        samples.iter().all(|&n| n >= 1),
        "the service had no healthy replica at some point: {samples:?}"
    );

    // The replacement took the drained replica's slot and names it.
    let after = allocations(&addrs[0], &service).await;
    let replacement = after
        .iter()
        .find(|a| a.slot == old.slot)
        .expect("the slot is held");
    assert_eq!(replacement.previous_allocation_id, old.id, "{after:#?}");
    let kept = before.iter().find(|a| a.node_name == node_b).unwrap();
    assert!(
        after.iter().any(|a| a.id == kept.id),
        "the replica on the other node was not touched: {after:#?}"
    );
    let all = client(&addrs[0])
        .list_allocations(pb::ListAllocationsRequest {
            service_name: service.clone(),
            include_terminal: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .allocations;
    let gone = all.iter().find(|a| a.id == old.id).expect("the old one");
    assert_eq!(
        gone.status.clone().unwrap_or_default().state(),
        pb::AllocationState::Stopped
    );

    client(&addrs[0])
        .delete_service(pb::DeleteServiceRequest {
            name: service.clone(),
        })
        .await
        .unwrap();
}
