//! An agent starting a large batch of containers keeps taking assignments: a service
//! applied while the batch starts is taken up at once (reported PREPARING, then
//! started in the same pool) instead of after the batch's slowest container. The
//! engine is then never idle between batches; `constellation-bench containers`
//! measures the effect.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, apply_service, client};
use constellation_tests::binaries::OneNode;
use constellation_tests::docker;
use constellation_tests::wait_until;
use std::time::Duration;

fn sleeper(name: &str, replicas: u32) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: name.into(),
        image: docker::test_image(),
        command: ["sleep", "3600"].map(String::from).to_vec(),
        replicas: Some(replicas),
        stop_grace_period: constellation_tests::specs::millis(1000),
        ..Default::default()
    }
}

fn state(a: &pb::Allocation) -> pb::AllocationState {
    a.status
        .as_ref()
        .map_or(pb::AllocationState::Unspecified, |s| s.state())
}

fn reported(a: &pb::Allocation) -> bool {
    !matches!(
        state(a),
        pb::AllocationState::Unspecified | pb::AllocationState::Pending
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_applied_during_a_batch_of_starts_joins_it() {
    let Some(_docker) = docker::connect_or_skip("agent_batch").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = OneNode::start(dir.path(), "batch").await.unwrap();
    let cp = &cluster.cp;
    // 24 containers take a few seconds on this engine (about 6-10 starts/s).
    let big = docker::unique_name("batchbig");
    apply_service(&cp.api_addr, sleeper(&big, 24)).await;
    wait_until(
        Duration::from_secs(30),
        "the batch is being prepared",
        || async { allocations(&cp.api_addr, &big).await.iter().any(reported) },
    )
    .await;

    let late = docker::unique_name("batchlate");
    apply_service(&cp.api_addr, sleeper(&late, 1)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let big_when_late_reported = loop {
        if allocations(&cp.api_addr, &late).await.iter().any(reported) {
            break allocations(&cp.api_addr, &big).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the late service was not reported within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let running = big_when_late_reported
        .iter()
        .filter(|a| state(a) == pb::AllocationState::Running)
        .count();
    assert!(
        running < 24,
        "the late service was taken up only after the whole batch ran ({running} of 24 running)"
    );

    wait_until(Duration::from_secs(90), "all 25 running", || async {
        let all: Vec<pb::Allocation> = [
            allocations(&cp.api_addr, &big).await,
            allocations(&cp.api_addr, &late).await,
        ]
        .concat();
        all.len() == 25 && all.iter().all(|a| state(a) == pb::AllocationState::Running)
    })
    .await;
    for name in [big, late] {
        client(&cp.api_addr)
            .delete_service(pb::DeleteServiceRequest { name })
            .await
            .unwrap();
    }
}
