//! Draining a host on the multi-host harness (network namespaces with their own dockerd
//! and agent; needs root): its replica moves to the third host, the service's healthy
//! count sampled every 100 ms never drops to zero, and the drained host's engine runs
//! nothing of the service afterwards.

use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::failover::{Cluster, node_name};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_hosts_replica_moves_without_the_service_losing_all_health() -> anyhow::Result<()>
{
    let test = "a_drained_hosts_replica_moves_without_the_service_losing_all_health";
    let Some((cluster, before, victim)) = Cluster::with_service_or_skip(test).await? else {
        return Ok(());
    };
    let cluster = Arc::new(cluster);
    let victim_name = node_name(victim);

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (cluster, sampling) = (cluster.clone(), sampling.clone());
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                samples.push(cluster.healthy().await.map(|h| h.len()).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        }
    });

    let started = Instant::now();
    client(&cluster.cp.api_addr)
        .drain_node(pb::DrainNodeRequest {
            name: victim_name.clone(),
            deadline: Some(pbjson_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            batch_size: 1,
        })
        .await?;
    let after = cluster
        .wait_healthy(2, std::slice::from_ref(&victim_name), WAIT)
        .await?;
    let moved = started.elapsed();
    let deadline = Instant::now() + WAIT;
    loop {
        let node = client(&cluster.cp.api_addr)
            .get_node(pb::GetNodeRequest {
                name: victim_name.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .node
            .unwrap_or_default();
        let running = cluster.running_containers().await?;
        if node.drain.is_some_and(|d| d.completed) && running.get(&victim_name) == Some(&0) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "drain not complete: {node:?} {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await?;
    eprintln!(
        "{test}: replacement healthy {moved:?} after the drain, drain complete after {:?}; {} samples, min healthy {:?}",
        started.elapsed(),
        samples.len(),
        samples.iter().min()
    );
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(samples.iter().all(|&n| n >= 1), "{samples:?}");
    // The replica elsewhere was not touched; the drained one was replaced.
    let survivors = before.keys().filter(|id| after.contains_key(*id)).count();
    assert_eq!(survivors, 1, "before {before:#?} after {after:#?}");
    let replacement = after
        .values()
        .find(|a| !before.contains_key(&a.id))
        .expect("a replacement");
    assert!(
        before.contains_key(&replacement.previous_allocation_id),
        "{replacement:#?}"
    );
    let Ok(cluster) = Arc::try_unwrap(cluster) else {
        anyhow::bail!("the sampler still holds the cluster");
    };
    cluster.teardown().await
}
