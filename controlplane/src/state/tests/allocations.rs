//! Plan and ReportStatus, and the allocation queries.

use constellation_proto::v1::{
    AllocationDesiredState, AllocationState, ChangeKind, CommandErrorCode, HealthState,
    ReportStatusCommand, command::Op, event::Payload,
};

use super::*;
use crate::state::AllocationFilter;

fn allocation_kinds(events: &[Event]) -> Vec<(ChangeKind, String)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Allocation(a)) => Some((
                a.kind(),
                a.allocation
                    .as_ref()
                    .map(|a| a.id.clone())
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

fn setup() -> State {
    let mut state = State::new();
    register(&mut state, 1, "n1", "N1");
    register(&mut state, 1, "n2", "N2");
    state
}

#[test]
fn plan_creates_updates_and_removes() {
    let mut state = setup();
    let before = state.event_index();
    apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a2", "web", "n2")],
            &[],
        ),
    );
    let a1 = state.allocation("a1").expect("a1");
    assert_eq!(a1.created_at, Some(at(2)));
    assert_eq!(
        a1.status.as_ref().map(|s| s.state()),
        Some(AllocationState::Pending)
    );
    assert_eq!(
        state
            .node("N1")
            .and_then(|n| n.allocated)
            .map(|r| r.memory_bytes),
        Some(1000)
    );

    // Move a1 to n2, remove a2 and a missing id.
    let mut moved = alloc("a1", "web", "n2");
    moved.slot = 7;
    apply(&mut state, 3, plan(vec![moved], &["a2", "nope"]));
    assert_eq!(
        state.allocation("a1").map(|a| (a.slot, a.node_id.as_str())),
        Some((7, "n2"))
    );
    assert_eq!(
        state.allocation("a1").and_then(|a| a.created_at),
        Some(at(2))
    );
    assert!(state.allocation("a2").is_none());
    assert_eq!(
        state
            .node("N1")
            .and_then(|n| n.allocated)
            .map(|r| r.memory_bytes),
        Some(0)
    );
    assert_eq!(
        state
            .node("N2")
            .and_then(|n| n.allocated)
            .map(|r| r.memory_bytes),
        Some(1000)
    );
    assert_eq!(state.allocations_of_node("n1").count(), 0);
    assert_eq!(state.allocations_of_node("n2").count(), 1);

    let events = events_since(&state, before);
    assert_consecutive(&events, before + 1);
    assert_eq!(
        allocation_kinds(&events),
        [
            (ChangeKind::Created, "a1".to_string()),
            (ChangeKind::Created, "a2".to_string()),
            (ChangeKind::Updated, "a1".to_string()),
            (ChangeKind::Deleted, "a2".to_string()),
        ]
    );
}

#[test]
fn identical_plan_emits_nothing() {
    let mut state = setup();
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    let index = state.event_index();
    apply(
        &mut state,
        3,
        plan(vec![alloc("a1", "web", "n1")], &["gone"]),
    );
    assert_eq!(state.event_index(), index);
}

#[test]
fn plan_keeps_reported_status() {
    let mut state = setup();
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::Healthy),
    );
    // A plan built from an older read carries the old (pending) status.
    let mut stale = state.allocation("a1").cloned().expect("a1");
    stale.status = None;
    stale.set_desired_state(AllocationDesiredState::Stop);
    apply(&mut state, 4, plan(vec![stale], &[]));
    let a1 = state.allocation("a1").expect("a1");
    assert_eq!(a1.desired_state(), AllocationDesiredState::Stop);
    assert_eq!(
        a1.status.as_ref().map(|s| s.state()),
        Some(AllocationState::Running)
    );
}

#[test]
fn plan_validation() {
    let mut state = setup();
    let r = apply(&mut state, 2, plan(vec![alloc("", "web", "n1")], &[]));
    assert_error(&r, CommandErrorCode::InvalidArgument);
    let r = apply(&mut state, 2, plan(vec![alloc("a1", "", "n1")], &[]));
    assert_error(&r, CommandErrorCode::InvalidArgument);
    let r = apply(&mut state, 2, plan(vec![alloc("a1", "web", "")], &[]));
    assert_error(&r, CommandErrorCode::InvalidArgument);
    let r = apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a1", "web", "n2")],
            &[],
        ),
    );
    assert_error(&r, CommandErrorCode::InvalidArgument);
    assert!(state.allocation("a1").is_none());
}

#[test]
fn report_updates_status_and_health() {
    let mut state = setup();
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    let before = state.event_index();
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::Starting),
    );
    apply(
        &mut state,
        4,
        report("n1", "a1", AllocationState::Running, HealthState::Starting),
    );
    apply(
        &mut state,
        5,
        report("n1", "a1", AllocationState::Running, HealthState::Healthy),
    );
    let status = state
        .allocation("a1")
        .and_then(|a| a.status.clone())
        .expect("status");
    assert_eq!(status.health(), HealthState::Healthy);
    assert_eq!(status.updated_at, Some(at(5)));

    let events = events_since(&state, before);
    assert_consecutive(&events, before + 1);
    let health: Vec<(HealthState, HealthState)> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Health(h)) => Some((h.previous(), h.current())),
            _ => None,
        })
        .collect();
    assert_eq!(
        health,
        [
            (HealthState::Unspecified, HealthState::Starting),
            (HealthState::Starting, HealthState::Healthy)
        ]
    );
    assert_eq!(
        allocation_kinds(&events).len(),
        2,
        "the identical report emitted nothing"
    );
    let Some(Payload::Health(h)) = &events
        .iter()
        .find(|e| matches!(e.payload, Some(Payload::Health(_))))
        .and_then(|e| e.payload.clone())
    else {
        panic!("no health event")
    };
    assert_eq!(
        (
            h.allocation_id.as_str(),
            h.service_name.as_str(),
            h.node_name.as_str()
        ),
        ("a1", "web", "N1")
    );
}

#[test]
fn a_failed_allocation_reported_stopped_after_cleanup_stays_failed_with_its_message() {
    let mut state = setup();
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    let with = |state: AllocationState, message: &str| {
        Op::ReportStatus(ReportStatusCommand {
            node_id: "n1".into(),
            reports: vec![constellation_proto::v1::AllocationReport {
                allocation_id: "a1".into(),
                status: Some(constellation_proto::v1::AllocationStatus {
                    state: state as i32,
                    message: message.into(),
                    ..Default::default()
                }),
                spec_hash: String::new(),
            }],
        })
    };
    apply(
        &mut state,
        3,
        with(AllocationState::Failed, "image not found: web:missing"),
    );
    apply(
        &mut state,
        4,
        with(AllocationState::Stopped, "container removed"),
    );
    let status = state
        .allocation("a1")
        .and_then(|a| a.status.clone())
        .expect("status");
    assert_eq!(status.state(), AllocationState::Failed);
    assert_eq!(status.message, "image not found: web:missing");
}

#[test]
fn reports_for_unknown_or_foreign_allocations_are_ignored() {
    let mut state = setup();
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    let index = state.event_index();
    let r = apply(
        &mut state,
        3,
        report("n2", "a1", AllocationState::Running, HealthState::None),
    );
    assert_ok(&r);
    let r = apply(
        &mut state,
        3,
        report("n1", "zz", AllocationState::Running, HealthState::None),
    );
    assert_ok(&r);
    let r = apply(
        &mut state,
        3,
        Op::ReportStatus(ReportStatusCommand {
            node_id: "n1".into(),
            reports: vec![constellation_proto::v1::AllocationReport {
                allocation_id: "a1".into(),
                status: None,
                spec_hash: String::new(),
            }],
        }),
    );
    assert_ok(&r);
    assert_eq!(state.event_index(), index);
    let status = state
        .allocation("a1")
        .and_then(|a| a.status.clone())
        .expect("status");
    assert_eq!(status.state(), AllocationState::Pending);
}

#[test]
fn allocation_filter() {
    let mut state = setup();
    let mut stopped = alloc("a3", "web", "n2");
    stopped.set_desired_state(AllocationDesiredState::Stop);
    apply(
        &mut state,
        2,
        plan(
            vec![
                alloc("a1", "web", "n1"),
                alloc("a2", "db", "n1"),
                stopped,
                alloc("a4", "web", "n2"),
            ],
            &[],
        ),
    );
    apply(
        &mut state,
        3,
        report("n2", "a4", AllocationState::Failed, HealthState::None),
    );
    let ids = |filter: AllocationFilter| -> Vec<String> {
        state
            .allocations(&filter)
            .iter()
            .map(|a| a.id.clone())
            .collect()
    };
    assert_eq!(ids(AllocationFilter::default()), ["a1", "a2"]);
    assert_eq!(
        ids(AllocationFilter {
            include_terminal: true,
            ..Default::default()
        }),
        ["a1", "a2", "a3", "a4"]
    );
    assert_eq!(
        ids(AllocationFilter {
            service_name: "web".into(),
            include_terminal: true,
            ..Default::default()
        }),
        ["a1", "a3", "a4"]
    );
    assert_eq!(
        ids(AllocationFilter {
            service_name: "web".into(),
            node_name: "N1".into(),
            include_terminal: false,
        }),
        ["a1"]
    );
    assert_eq!(
        ids(AllocationFilter {
            node_name: "nope".into(),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
}
