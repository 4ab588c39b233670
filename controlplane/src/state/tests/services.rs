//! ApplyService and DeleteService; command-level checks (version, missing fields).

use constellation_proto::v1::{
    AllocationDesiredState, AllocationState, ApplyServiceCommand, ChangeKind, Command,
    CommandErrorCode, DeleteServiceCommand, HealthState, command::Op, command_result::Outcome,
    event::Payload,
};

use super::*;
use crate::state::{COMMAND_VERSION, spec_hash};

fn apply_spec(
    state: &mut State,
    time: i64,
    spec: ServiceSpec,
    expected: Option<u64>,
) -> CommandResult {
    let op = Op::ApplyService(ApplyServiceCommand {
        spec: Some(spec),
        expected_version: expected,
    });
    apply(state, time, op)
}

fn service_of(result: &CommandResult) -> &constellation_proto::v1::Service {
    match &result.outcome {
        Some(Outcome::Service(s)) => s,
        other => panic!("expected a service, got {other:?}"),
    }
}

fn service_kinds(events: &[Event]) -> Vec<ChangeKind> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Service(s)) => Some(s.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn create_then_update_then_same_spec() {
    let mut state = State::new();
    let r = apply_spec(&mut state, 10, spec("web", "nginx:1"), None);
    assert!(r.changed);
    let s = service_of(&r);
    assert_eq!(s.version, 1);
    assert_eq!(s.spec_hash, spec_hash(&spec("web", "nginx:1")));
    assert_eq!(s.spec_hash.len(), 64);
    assert_eq!(s.created_at, Some(at(10)));
    assert_eq!(s.status.as_ref().map(|st| st.desired), Some(1));
    assert!(s.previous_spec.is_none());
    assert_eq!(r.index, 1);

    let mut v2 = spec("web", "nginx:2");
    v2.replicas = Some(3);
    let r = apply_spec(&mut state, 20, v2.clone(), Some(1));
    let s = service_of(&r);
    assert!(r.changed);
    assert_eq!(s.version, 2);
    assert_eq!(s.created_at, Some(at(10)));
    assert_eq!(s.updated_at, Some(at(20)));
    assert_eq!(s.previous_spec, Some(spec("web", "nginx:1")));
    assert_eq!(s.status.as_ref().map(|st| st.desired), Some(3));
    assert_eq!(r.index, 2);

    let r = apply_spec(&mut state, 30, v2, None);
    assert!(!r.changed);
    assert_eq!(service_of(&r).version, 2);
    assert_eq!(r.index, 2, "an identical spec emits nothing");
    let events = events_since(&state, 0);
    assert_consecutive(&events, 1);
    assert_eq!(
        service_kinds(&events),
        [ChangeKind::Created, ChangeKind::Updated]
    );
}

#[test]
fn replicas_zero_is_desired_zero() {
    let mut state = State::new();
    let mut s = spec("web", "nginx");
    s.replicas = Some(0);
    let r = apply_spec(&mut state, 1, s, None);
    assert_eq!(service_of(&r).status.as_ref().map(|st| st.desired), Some(0));
}

#[test]
fn expected_version_is_checked() {
    let mut state = State::new();
    let r = apply_spec(&mut state, 1, spec("web", "a"), Some(1));
    assert_error(&r, CommandErrorCode::FailedPrecondition);
    assert_ok(&apply_spec(&mut state, 1, spec("web", "a"), Some(0)));
    let r = apply_spec(&mut state, 2, spec("web", "b"), Some(0));
    assert_error(&r, CommandErrorCode::FailedPrecondition);
    let r = apply_spec(&mut state, 2, spec("web", "b"), Some(2));
    assert_error(&r, CommandErrorCode::FailedPrecondition);
    assert_eq!(r.index, 1);
    assert_eq!(state.service("web").map(|s| s.version), Some(1));
    assert_ok(&apply_spec(&mut state, 2, spec("web", "b"), Some(1)));
}

#[test]
fn missing_spec_or_name_is_invalid() {
    let mut state = State::new();
    let r = apply(
        &mut state,
        1,
        Op::ApplyService(ApplyServiceCommand::default()),
    );
    assert_error(&r, CommandErrorCode::InvalidArgument);
    let r = apply_spec(&mut state, 1, spec("", "x"), None);
    assert_error(&r, CommandErrorCode::InvalidArgument);
    assert_eq!(state.event_index(), 0);
}

#[test]
fn unsupported_versions_change_nothing() {
    let mut state = State::new();
    for version in [0, COMMAND_VERSION + 1] {
        let mut c = command(
            1,
            Op::ApplyService(ApplyServiceCommand {
                spec: Some(spec("web", "x")),
                expected_version: None,
            }),
        );
        c.version = version;
        let r = state.apply(&c);
        assert_error(&r, CommandErrorCode::UnsupportedVersion);
        assert_eq!(r.index, 0);
    }
    assert!(state.service("web").is_none());
}

#[test]
fn missing_time_or_op_is_invalid() {
    let mut state = State::new();
    let r = state.apply(&Command {
        version: COMMAND_VERSION,
        proposed_at: Some(at(1)),
        op: None,
    });
    assert_error(&r, CommandErrorCode::InvalidArgument);
    let mut c = command(
        1,
        Op::DeleteService(DeleteServiceCommand { name: "x".into() }),
    );
    c.proposed_at = None;
    assert_error(&state.apply(&c), CommandErrorCode::InvalidArgument);
}

#[test]
fn delete_missing_is_not_found() {
    let mut state = State::new();
    let r = apply(
        &mut state,
        1,
        Op::DeleteService(DeleteServiceCommand { name: "x".into() }),
    );
    assert_error(&r, CommandErrorCode::NotFound);
}

#[test]
fn delete_stops_allocations() {
    let mut state = State::new();
    apply_spec(&mut state, 1, spec("web", "x"), None);
    register(&mut state, 1, "n1", "N1");
    assert_ok(&apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a2", "web", "n1")],
            &[],
        ),
    ));
    let before = state.event_index();
    let r = apply(
        &mut state,
        3,
        Op::DeleteService(DeleteServiceCommand { name: "web".into() }),
    );
    assert_eq!(r.outcome, Some(Outcome::Done(true)));
    assert!(state.service("web").is_none());
    for id in ["a1", "a2"] {
        let a = state.allocation(id).expect("kept");
        assert_eq!(a.desired_state(), AllocationDesiredState::Stop);
    }
    let events = events_since(&state, before);
    assert_consecutive(&events, before + 1);
    let allocs = events
        .iter()
        .filter(|e| matches!(&e.payload, Some(Payload::Allocation(a)) if a.kind() == ChangeKind::Updated))
        .count();
    assert_eq!(allocs, 2);
    assert_eq!(service_kinds(&events).last(), Some(&ChangeKind::Deleted));
    // Stopped allocations reserve nothing.
    let node = state.node("N1").expect("node");
    assert_eq!(node.allocated.map(|r| r.cpu_millis), Some(0));
}

#[test]
fn status_counts_follow_reports() {
    let mut state = State::new();
    let mut s = spec("web", "x");
    s.replicas = Some(2);
    apply_spec(&mut state, 1, s, None);
    register(&mut state, 1, "n1", "N1");
    apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a2", "web", "n1")],
            &[],
        ),
    );
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::Healthy),
    );
    apply(
        &mut state,
        3,
        report("n1", "a2", AllocationState::Running, HealthState::Starting),
    );
    let status = state
        .service("web")
        .and_then(|s| s.status.clone())
        .expect("status");
    assert_eq!((status.desired, status.running, status.healthy), (2, 2, 1));
    apply(
        &mut state,
        4,
        report("n1", "a2", AllocationState::Running, HealthState::None),
    );
    let status = state
        .service("web")
        .and_then(|s| s.status.clone())
        .expect("status");
    assert_eq!((status.running, status.healthy), (2, 2));
    // The spec's version is untouched by status changes.
    assert_eq!(state.service("web").map(|s| s.version), Some(1));
}

#[test]
fn recreated_service_counts_existing_allocations() {
    let mut state = State::new();
    apply_spec(&mut state, 1, spec("web", "x"), None);
    register(&mut state, 1, "n1", "N1");
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::None),
    );
    apply(
        &mut state,
        4,
        Op::DeleteService(DeleteServiceCommand { name: "web".into() }),
    );
    let r = apply_spec(&mut state, 5, spec("web", "y"), Some(0));
    let status = service_of(&r).status.clone().expect("status");
    assert_eq!(
        (status.running, status.healthy),
        (1, 1),
        "the stopping replica still runs"
    );
    assert_eq!(service_of(&r).version, 1);
}
