//! Rolling updates with the real binaries on the real Docker engine: a new version
//! that never passes its health check is rolled back by the control plane on its own,
//! while the old version keeps answering HTTP (sampled every 100 ms) and keeps at
//! least one healthy replica throughout; a start-first update of a good version never
//! has fewer healthy replicas than the service asks for.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, client, is_healthy as healthy, service, update_state};
use constellation_tests::binaries::OneNode;
use constellation_tests::docker;
use constellation_tests::specs::rolling_http_service as web;
use constellation_tests::wait_until;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One GET / with a 2 s bound; true on a 200 answer.
async fn http_ok(addr: &str) -> bool {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        std::io::Result::Ok(response)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), get).await,
        Ok(Ok(r)) if r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200")
    )
}

/// What the sampler saw.
#[derive(Debug, Default)]
struct Samples {
    healthy: Vec<usize>,
    http_failures: usize,
    http_requests: usize,
    states: Vec<pb::UpdateState>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_failing_its_health_check_rolls_back_while_the_old_one_serves() {
    let Some(_docker) = docker::connect_or_skip("rolling_update").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = OneNode::start(dir.path(), "roll").await.unwrap();
    let cp = &cluster.cp;
    let name = docker::unique_name("rollweb");
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(web(&name)),
            ..Default::default()
        })
        .await
        .expect("ApplyService");
    wait_until(Duration::from_secs(40), "two healthy replicas", || async {
        let live = allocations(&cp.api_addr, &name).await;
        live.len() == 2 && live.iter().all(healthy)
    })
    .await;
    let original = service(&cp.api_addr, &name).await;
    let v1 = original.version;
    // Stop-first, one at a time, lowest slot first: slot 1 keeps the old version
    // through the update and the rollback; it must answer every request.
    let live = allocations(&cp.api_addr, &name).await;
    let kept = live.iter().find(|a| a.slot == 1).cloned().expect("slot 1");
    let endpoint = kept
        .status
        .as_ref()
        .and_then(|s| s.endpoints.first().cloned())
        .expect("an endpoint");
    let kept_addr = format!("{}:{}", endpoint.host_ip, endpoint.host_port);
    assert!(http_ok(&kept_addr).await, "the old version answers");

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (addr, name, sampling) = (cp.api_addr.clone(), name.clone(), sampling.clone());
        async move {
            let mut samples = Samples::default();
            while sampling.load(Ordering::Relaxed) {
                let live = allocations(&addr, &name).await;
                samples
                    .healthy
                    .push(live.iter().filter(|a| healthy(a)).count());
                samples.http_requests += 1;
                if !http_ok(&kept_addr).await {
                    samples.http_failures += 1;
                }
                let state = update_state(&service(&addr, &name).await);
                if samples.states.last() != Some(&state) {
                    samples.states.push(state);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        }
    });

    // The new version never serves: its health check fails.
    let mut broken = web(&name);
    broken.command = ["sh", "-c", "exec sleep 3600"].map(String::from).to_vec();
    let started = Instant::now();
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(broken),
            ..Default::default()
        })
        .await
        .expect("ApplyService v2");
    wait_until(Duration::from_secs(50), "rolled back", || async {
        let s = service(&cp.api_addr, &name).await;
        let live = allocations(&cp.api_addr, &name).await;
        update_state(&s) == pb::UpdateState::RolledBack
            && live.len() == 2
            && live.iter().all(healthy)
    })
    .await;
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let mut samples = sampler.await.unwrap();
    eprintln!("rolled back in {took:?}; {samples:?}");
    // The sampler may have stopped just before it saw the last state.
    let last = update_state(&service(&cp.api_addr, &name).await);
    if samples.states.last() != Some(&last) {
        samples.states.push(last);
    }

    assert!(samples.healthy.len() >= 5, "too few samples: {samples:?}");
    assert!(
        samples.healthy.iter().all(|&n| n >= 1),
        "no healthy replica at some point: {samples:?}"
    );
    assert_eq!(
        samples.http_failures, 0,
        "the old version stopped answering"
    );
    let seen: Vec<pb::UpdateState> = samples
        .states
        .iter()
        .copied()
        .filter(|s| *s != pb::UpdateState::Unspecified)
        .collect();
    assert_eq!(
        seen.last(),
        Some(&pb::UpdateState::RolledBack),
        "{samples:?}"
    );
    assert!(
        seen.contains(&pb::UpdateState::RollingBack),
        "rolling back was visible: {samples:?}"
    );

    let rolled = service(&cp.api_addr, &name).await;
    assert_eq!(rolled.spec, original.spec, "the spec is the original again");
    assert_eq!(
        rolled.version,
        v1 + 2,
        "the rollback is a version of its own"
    );
    let update = rolled.status.and_then(|s| s.update).expect("update status");
    assert_eq!(
        (update.from_version, update.to_version),
        (v1 + 1, v1 + 2),
        "{update:?}"
    );
    assert!(
        update.message.contains("rolled back") && update.message.contains("health check"),
        "{update:?}"
    );
    // Every replica runs a version whose spec is the original: v1 (never replaced)
    // or the rollback's version.
    let live = allocations(&cp.api_addr, &name).await;
    assert!(
        live.iter()
            .all(|a| a.service_version == v1 || a.service_version == v1 + 2),
        "{live:#?}"
    );
    let still = live
        .iter()
        .find(|a| a.id == kept.id)
        .expect("slot 1 was never replaced");
    let container = |a: &pb::Allocation| a.status.clone().unwrap_or_default().container_id;
    assert_eq!(
        container(still),
        container(&kept),
        "its container was never recreated: the agent kept getting its own version's spec"
    );

    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest { name: name.clone() })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_first_update_never_has_fewer_healthy_replicas_than_asked_for() {
    let Some(_docker) = docker::connect_or_skip("rolling_update_start_first")
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = OneNode::start(dir.path(), "roll").await.unwrap();
    let cp = &cluster.cp;
    let name = docker::unique_name("rollweb");
    let mut spec = web(&name);
    if let Some(update) = spec.update.as_mut() {
        update.set_order(pb::UpdateOrder::StartFirst);
    }
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec.clone()),
            ..Default::default()
        })
        .await
        .expect("ApplyService");
    wait_until(Duration::from_secs(40), "two healthy replicas", || async {
        let live = allocations(&cp.api_addr, &name).await;
        live.len() == 2 && live.iter().all(healthy)
    })
    .await;
    let v1 = service(&cp.api_addr, &name).await.version;

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (addr, name, sampling) = (cp.api_addr.clone(), name.clone(), sampling.clone());
        async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let live = allocations(&addr, &name).await;
                samples.push(live.iter().filter(|a| healthy(a)).count());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        }
    });
    spec.env.insert("RELEASE".into(), "2".into());
    let started = Instant::now();
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .expect("ApplyService v2");
    wait_until(Duration::from_secs(50), "update completed", || async {
        let s = service(&cp.api_addr, &name).await;
        let live = allocations(&cp.api_addr, &name).await;
        update_state(&s) == pb::UpdateState::Completed
            && live.len() == 2
            && live
                .iter()
                .all(|a| healthy(a) && a.service_version == v1 + 1)
    })
    .await;
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    eprintln!("updated in {took:?}; healthy samples {samples:?}");
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(
        samples.iter().all(|&n| n >= 2),
        "fewer healthy replicas than asked for at some point: {samples:?}"
    );
    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest { name: name.clone() })
        .await
        .unwrap();
}
