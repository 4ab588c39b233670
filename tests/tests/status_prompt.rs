//! An agent sends a status change as soon as it happens, not with whatever next wakes
//! its session. The control plane here asks for a heartbeat every 60 s
//! (`--heartbeat-period`), so the agent's session is otherwise silent for a minute:
//! a container's RUNNING and then its first passing health check must still reach the
//! control plane within seconds.
//!
//! Before the fix, a report pushed while the session had nothing pending waited for
//! the next heartbeat or message. With the default 1 s heartbeat that added up to a
//! second to every failover (measured with `constellation-bench failover`: the
//! replacement's first passing probe reached the control plane 0.4 to 0.9 s late).
//!
//! Alone in its test binary: the heartbeat setting reaches the control plane through
//! the harness's process-wide child environment.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, apply_service, is_healthy};
use constellation_tests::binaries::{OneNode, set_child_env};
use constellation_tests::docker;
use constellation_tests::specs::millis;
use constellation_tests::wait_until;
use std::time::Duration;

fn running(a: &pb::Allocation) -> bool {
    a.status
        .as_ref()
        .is_some_and(|s| s.state() == pb::AllocationState::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_reach_the_control_plane_between_heartbeats() {
    let Some(_docker) = docker::connect_or_skip("status_prompt").await.unwrap() else {
        return;
    };
    set_child_env([("CONSTELLATION_HEARTBEAT_PERIOD".into(), "60s".into())]);
    let dir = tempfile::tempdir().unwrap();
    let cluster = OneNode::start(dir.path(), "hbstatus").await.unwrap();
    let cp = &cluster.cp;

    let name = docker::unique_name("hbstatus");
    // The first probe runs 3 s after the start, well after RUNNING was sent, when the
    // session has nothing pending.
    let spec = pb::ServiceSpec {
        name: name.clone(),
        image: docker::test_image(),
        command: ["sleep", "3600"].map(String::from).to_vec(),
        health_check: Some(pb::HealthCheck {
            test: vec!["CMD-SHELL".into(), "exit 0".into()],
            interval: millis(3000),
            timeout: millis(2000),
            retries: 3,
            ..Default::default()
        }),
        stop_grace_period: millis(1000),
        ..Default::default()
    };
    apply_service(&cp.api_addr, spec).await;
    // Both bounds are far below the 60 s heartbeat and far above what the reports take
    // (the agent sends at most one batch per 200 ms).
    wait_until(
        Duration::from_secs(30),
        "the control plane sees the replica RUNNING",
        || async { allocations(&cp.api_addr, &name).await.iter().any(running) },
    )
    .await;
    wait_until(
        Duration::from_secs(15),
        "the control plane sees the replica HEALTHY after its first probe",
        || async {
            allocations(&cp.api_addr, &name)
                .await
                .iter()
                .any(is_healthy)
        },
    )
    .await;
}
