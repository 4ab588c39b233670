//! The reschedule policy end to end, with the real binaries on the real Docker engine:
//! a service whose image does not exist fails, is replaced once after the policy's
//! delay, fails again, and is then left alone with the reason on its allocation.

use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::binaries::{Agent, ControlPlane, cli_ok};
use constellation_tests::docker;
use std::time::{Duration, Instant};

fn secs(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

/// Every allocation of the service, terminal ones included.
async fn all_allocations(addr: &str, service: &str) -> Vec<pb::Allocation> {
    client(addr)
        .list_allocations(pb::ListAllocationsRequest {
            service_name: service.into(),
            include_terminal: true,
            ..Default::default()
        })
        .await
        .expect("ListAllocations")
        .into_inner()
        .allocations
}

/// FAILED, or STOPPED: the agent reports a failed allocation stopped once it has
/// cleaned up after it.
fn given_up(a: &pb::Allocation) -> bool {
    matches!(
        a.status.clone().unwrap_or_default().state(),
        pb::AllocationState::Failed | pb::AllocationState::Stopped
    )
}

#[tokio::test]
async fn a_failing_service_is_rescheduled_as_its_policy_allows_then_left_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let _agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("ghost");
    let spec = pb::ServiceSpec {
        name: service.clone(),
        image: format!("constellation-test/{service}:none"),
        reschedule: Some(pb::ReschedulePolicy {
            attempts: 1,
            interval: secs(3600),
            delay: secs(2),
            delay_function: pb::DelayFunction::Constant as i32,
            unlimited: false,
            ..Default::default()
        }),
        ..Default::default()
    };
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap();

    // The first allocation fails and waits for its delay, saying when.
    let start = Instant::now();
    let first = loop {
        let allocs = all_allocations(&cp.api_addr, &service).await;
        if let Some(a) = allocs.iter().find(|a| {
            a.desired_description
                .starts_with("reschedule attempt 1 due at")
        }) {
            break a.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no failed allocation waiting: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(given_up(&first), "{first:#?}");
    let waiting_since = Instant::now();

    // Its replacement fails too; with the one attempt used up it stays, saying why,
    // and nothing else is placed.
    let last = loop {
        let allocs = all_allocations(&cp.api_addr, &service).await;
        if let [only] = allocs.as_slice()
            && only.desired_description.starts_with("not rescheduled")
        {
            break only.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not given up: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        waiting_since.elapsed() >= Duration::from_secs(1),
        "replaced before its 2 s delay"
    );
    assert_eq!(last.previous_allocation_id, first.id);
    assert_eq!(last.reschedule_attempts, 1);
    assert!(given_up(&last), "{last:#?}");
    assert_eq!(
        last.desired_description,
        "not rescheduled: reschedule attempts used up (1 within 1h); \
         apply a changed spec to try again"
    );
    // Operators see the reason in `constellation alloc ls`.
    let listed = cli_ok(&cp.api_addr, &["alloc", "ls", "--all"]);
    let line = listed
        .lines()
        .find(|l| l.contains(&last.id))
        .unwrap_or_else(|| panic!("{} not listed:\n{listed}", last.id));
    assert!(
        line.contains("not rescheduled: reschedule attempts used up"),
        "{listed}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let allocs = all_allocations(&cp.api_addr, &service).await;
    assert_eq!(allocs.len(), 1, "{allocs:#?}");
    assert_eq!(allocs[0].id, last.id);

    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest {
            name: service.clone(),
        })
        .await
        .unwrap();
}
