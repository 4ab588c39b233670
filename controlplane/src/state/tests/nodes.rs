//! RegisterNode, SetNodeStatus, SetNodeAvailability.

use constellation_proto::v1::{
    AllocationState, ChangeKind, CommandErrorCode, NodeAvailability, NodeStatus,
    SetNodeAvailabilityCommand, SetNodeStatusCommand, command::Op, command_result::Outcome,
    event::Payload,
};

use super::*;

fn set_status(
    state: &mut State,
    time: i64,
    id: &str,
    status: NodeStatus,
    message: &str,
) -> CommandResult {
    let op = Op::SetNodeStatus(SetNodeStatusCommand {
        node_id: id.into(),
        status: status as i32,
        message: message.into(),
        last_seen: Some(at(time)),
    });
    apply(state, time, op)
}

fn set_availability(
    state: &mut State,
    time: i64,
    name: &str,
    availability: NodeAvailability,
    deadline: Option<i64>,
) -> CommandResult {
    let op = Op::SetNodeAvailability(SetNodeAvailabilityCommand {
        name: name.into(),
        availability: availability as i32,
        drain_deadline: deadline.map(secs),
        drain_batch_size: 1,
    });
    apply(state, time, op)
}

fn node_kinds(events: &[Event]) -> Vec<ChangeKind> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Node(n)) => Some(n.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn register_creates_then_updates() {
    let mut state = State::new();
    let r = register(&mut state, 10, "n1", "alpha");
    let Some(Outcome::Node(node)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(node.status(), NodeStatus::Ready);
    assert_eq!(node.availability(), NodeAvailability::Active);
    assert_eq!(node.registered_at, Some(at(10)));
    assert_eq!(node.last_seen, Some(at(10)));
    assert_eq!(state.node("alpha").map(|n| n.id.as_str()), Some("n1"));
    assert_eq!(state.node_by_id("n1").map(|n| n.id.as_str()), Some("n1"));

    set_status(&mut state, 15, "n1", NodeStatus::Down, "gone");
    let r = register(&mut state, 20, "n1", "alpha");
    let Some(Outcome::Node(node)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(node.status(), NodeStatus::Ready);
    assert_eq!(node.status_message, "");
    assert_eq!(node.registered_at, Some(at(10)));
    assert_eq!(node.last_seen, Some(at(20)));
    let events = events_since(&state, 0);
    assert_consecutive(&events, 1);
    assert_eq!(
        node_kinds(&events),
        [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Updated
        ]
    );
}

#[test]
fn register_name_clash_is_already_exists() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    let r = register(&mut state, 2, "n2", "alpha");
    assert_error(&r, CommandErrorCode::AlreadyExists);
    assert_eq!(r.index, 1);
    assert!(state.node_by_id("n2").is_none());
}

#[test]
fn register_rename_moves_the_name_index() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    register(&mut state, 2, "n1", "beta");
    assert!(state.node("alpha").is_none());
    assert_eq!(state.node("beta").map(|n| n.id.as_str()), Some("n1"));
    assert_ok(&register(&mut state, 3, "n2", "alpha"));
    assert_eq!(state.nodes().count(), 2);
}

#[test]
fn register_requires_id_and_name() {
    let mut state = State::new();
    assert_error(
        &register(&mut state, 1, "", "alpha"),
        CommandErrorCode::InvalidArgument,
    );
    assert_error(
        &register(&mut state, 1, "n1", ""),
        CommandErrorCode::InvalidArgument,
    );
    let r = apply(&mut state, 1, Op::RegisterNode(Default::default()));
    assert_error(&r, CommandErrorCode::InvalidArgument);
}

#[test]
fn set_status_unknown_is_not_found() {
    let mut state = State::new();
    assert_error(
        &set_status(&mut state, 1, "nope", NodeStatus::Ready, ""),
        CommandErrorCode::NotFound,
    );
}

#[test]
fn set_status_same_is_no_event() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    set_status(&mut state, 1, "n1", NodeStatus::Ready, "");
    assert_eq!(state.event_index(), 1, "same status, message and last_seen");
    set_status(&mut state, 2, "n1", NodeStatus::Ready, "");
    assert_eq!(state.event_index(), 2, "last_seen moved");
}

#[test]
fn node_down_loses_running_allocations() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    let mut stopped = alloc("a3", "web", "n1");
    stopped.set_desired_state(constellation_proto::v1::AllocationDesiredState::Stop);
    apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a2", "web", "n1"), stopped],
            &[],
        ),
    );
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::None),
    );
    assert_eq!(
        state
            .node("alpha")
            .and_then(|n| n.allocated)
            .map(|r| r.cpu_millis),
        Some(200)
    );
    let before = state.event_index();
    let r = set_status(&mut state, 4, "n1", NodeStatus::Down, "missed heartbeats");
    let Some(Outcome::Node(node)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(node.status(), NodeStatus::Down);
    assert_eq!(node.status_message, "missed heartbeats");
    for id in ["a1", "a2"] {
        let s = state
            .allocation(id)
            .and_then(|a| a.status.clone())
            .expect("status");
        assert_eq!(s.state(), AllocationState::Lost, "{id}");
        assert_eq!(s.updated_at, Some(at(4)));
    }
    let a3 = state
        .allocation("a3")
        .and_then(|a| a.status.clone())
        .expect("status");
    assert_eq!(
        a3.state(),
        AllocationState::Pending,
        "terminal allocations are left alone"
    );
    assert_eq!(node.allocated.map(|r| r.cpu_millis), Some(0));
    let events = events_since(&state, before);
    assert_consecutive(&events, before + 1);
    let lost = events
        .iter()
        .filter(|e| matches!(&e.payload, Some(Payload::Allocation(_))))
        .count();
    assert_eq!(lost, 2);
    assert_eq!(node_kinds(&events), [ChangeKind::Updated], "one node event");
}

#[test]
fn drain_fills_and_clears_drain_status() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    apply(
        &mut state,
        2,
        plan(
            vec![alloc("a1", "web", "n1"), alloc("a2", "web", "n1")],
            &[],
        ),
    );
    let r = set_availability(&mut state, 100, "alpha", NodeAvailability::Draining, None);
    let Some(Outcome::Node(node)) = &r.outcome else {
        panic!("{r:?}")
    };
    let drain = node.drain.expect("drain status");
    assert_eq!(drain.started_at, Some(at(100)));
    assert_eq!(drain.deadline, Some(at(3700)));
    assert_eq!(drain.remaining, 2);
    assert!(!drain.completed);

    // Moving allocations away updates the drain's progress.
    apply(&mut state, 110, plan(vec![], &["a1"]));
    let drain = state.node("alpha").and_then(|n| n.drain).expect("drain");
    assert_eq!(drain.remaining, 1);
    apply(&mut state, 120, plan(vec![], &["a2"]));
    let drain = state.node("alpha").and_then(|n| n.drain).expect("drain");
    assert_eq!((drain.remaining, drain.completed), (0, true));

    // Draining again keeps the start and moves the deadline.
    set_availability(
        &mut state,
        200,
        "alpha",
        NodeAvailability::Draining,
        Some(60),
    );
    let drain = state.node("alpha").and_then(|n| n.drain).expect("drain");
    assert_eq!(
        (drain.started_at, drain.deadline),
        (Some(at(100)), Some(at(260)))
    );

    let r = set_availability(&mut state, 300, "alpha", NodeAvailability::Cordoned, None);
    let Some(Outcome::Node(node)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(node.availability(), NodeAvailability::Cordoned);
    assert!(node.drain.is_none());
}

#[test]
fn availability_errors_and_no_ops() {
    let mut state = State::new();
    assert_error(
        &set_availability(&mut state, 1, "alpha", NodeAvailability::Cordoned, None),
        CommandErrorCode::NotFound,
    );
    register(&mut state, 1, "n1", "alpha");
    assert_error(
        &set_availability(&mut state, 2, "alpha", NodeAvailability::Draining, Some(0)),
        CommandErrorCode::InvalidArgument,
    );
    let index = state.event_index();
    set_availability(&mut state, 2, "alpha", NodeAvailability::Active, None);
    assert_eq!(state.event_index(), index, "already active");
    assert_error(
        &set_availability(&mut state, 2, "n1", NodeAvailability::Cordoned, None),
        CommandErrorCode::NotFound,
    );
}

#[test]
fn unknown_enum_values_are_invalid_and_unspecified_normalised() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    let op = Op::SetNodeStatus(SetNodeStatusCommand {
        node_id: "n1".into(),
        status: 42,
        ..Default::default()
    });
    assert_error(&apply(&mut state, 2, op), CommandErrorCode::InvalidArgument);
    let op = Op::SetNodeAvailability(SetNodeAvailabilityCommand {
        name: "alpha".into(),
        availability: 42,
        ..Default::default()
    });
    assert_error(&apply(&mut state, 2, op), CommandErrorCode::InvalidArgument);
    let index = state.event_index();
    let op = Op::SetNodeAvailability(SetNodeAvailabilityCommand {
        name: "alpha".into(),
        ..Default::default()
    });
    apply(&mut state, 2, op);
    assert_eq!(state.event_index(), index, "UNSPECIFIED is ACTIVE");
    set_status(&mut state, 3, "n1", NodeStatus::Unspecified, "");
    assert_eq!(
        state.node("alpha").map(|n| n.status()),
        Some(NodeStatus::Unknown)
    );
}

#[test]
fn node_down_loses_allocations_told_to_stop_that_still_ran() {
    let mut state = State::new();
    register(&mut state, 1, "n1", "alpha");
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    apply(
        &mut state,
        3,
        report("n1", "a1", AllocationState::Running, HealthState::None),
    );
    set_availability(&mut state, 4, "alpha", NodeAvailability::Draining, None);
    let mut stopping = state.allocation("a1").cloned().expect("a1");
    stopping.set_desired_state(constellation_proto::v1::AllocationDesiredState::Stop);
    apply(&mut state, 5, plan(vec![stopping], &[]));
    let drain = state.node("alpha").and_then(|n| n.drain).expect("drain");
    assert_eq!(
        (drain.remaining, drain.completed),
        (1, false),
        "its container still runs"
    );
    set_status(&mut state, 6, "n1", NodeStatus::Down, "gone");
    let a1 = state.allocation("a1").and_then(|a| a.status.clone());
    assert_eq!(a1.map(|s| s.state()), Some(AllocationState::Lost));
    let drain = state.node("alpha").and_then(|n| n.drain).expect("drain");
    assert_eq!((drain.remaining, drain.completed), (0, true));
}
