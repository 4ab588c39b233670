use std::collections::BTreeMap;

use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationReport, AllocationState, AllocationStatus,
    ApplyServiceCommand, Command, Constraint, ConstraintOperator, DeleteServiceCommand,
    NodeAvailability, NodeDescription, NodeResources, NodeStatus, Placement, PlanCommand,
    RegisterNodeCommand, ReportStatusCommand, Resources, ServiceSpec, SetNodeAvailabilityCommand,
    SetNodeStatusCommand, Spread, command::Op, command_result::Outcome,
};
use pbjson_types::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::state::{AllocationFilter, COMMAND_VERSION};

mod index;
mod properties;
mod rescheduling;

const GIB: u64 = 1 << 30;

/// The planner's clock in these tests (no drain or update waits on it).
const NOW: Timestamp = Timestamp {
    seconds: 1_700_000_000,
    nanos: 0,
};

fn apply(state: &mut State, op: Op) {
    let command = Command {
        version: COMMAND_VERSION,
        proposed_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        op: Some(op),
    };
    let result = state.apply(&command);
    assert!(
        !matches!(result.outcome, Some(Outcome::Error(_))),
        "{result:?}"
    );
}

fn register(state: &mut State, name: &str, cpu_millis: u64, memory_bytes: u64) {
    register_labelled(state, name, cpu_millis, memory_bytes, &[]);
}

fn register_labelled(
    state: &mut State,
    name: &str,
    cpu_millis: u64,
    memory_bytes: u64,
    labels: &[(&str, &str)],
) {
    let description = NodeDescription {
        name: name.into(),
        capacity: Some(NodeResources {
            cpu_millis,
            memory_bytes,
        }),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    apply(
        state,
        Op::RegisterNode(RegisterNodeCommand {
            node_id: format!("id-{name}"),
            description: Some(description),
        }),
    );
}

fn set_status(state: &mut State, name: &str, status: NodeStatus) {
    apply(
        state,
        Op::SetNodeStatus(SetNodeStatusCommand {
            node_id: format!("id-{name}"),
            status: status as i32,
            ..Default::default()
        }),
    );
}

fn set_availability(state: &mut State, name: &str, availability: NodeAvailability) {
    apply(
        state,
        Op::SetNodeAvailability(SetNodeAvailabilityCommand {
            name: name.into(),
            availability: availability as i32,
            ..Default::default()
        }),
    );
}

fn service(name: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: "nginx".into(),
        replicas: Some(replicas),
        ..Default::default()
    }
}

fn with_resources(mut spec: ServiceSpec, cpus: &str, memory: &str) -> ServiceSpec {
    spec.resources = Some(Resources {
        cpu_reservation: cpus.into(),
        memory_reservation: memory.into(),
        ..Default::default()
    });
    spec
}

fn put_service(state: &mut State, spec: ServiceSpec) {
    apply(
        state,
        Op::ApplyService(ApplyServiceCommand {
            spec: Some(spec),
            expected_version: None,
        }),
    );
}

fn delete_service(state: &mut State, name: &str) {
    apply(
        state,
        Op::DeleteService(DeleteServiceCommand { name: name.into() }),
    );
}

/// Deterministic ids: a-0, a-1, ...
fn counter(prefix: &str) -> impl FnMut() -> String {
    let prefix = prefix.to_owned();
    let mut n = 0;
    move || {
        n += 1;
        format!("{prefix}-{n}")
    }
}

/// A prefix no other call returns, so that ids of different plans never collide.
fn fresh(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{n}")
}

/// Plans once (ids from a fresh prefix) and applies the plan; returns it.
fn step(state: &mut State, prefix: &str) -> Option<PlanCommand> {
    let planned = plan(state, NOW, &mut counter(&fresh(prefix)));
    if let Some(p) = &planned {
        apply(state, Op::Plan(p.clone()));
    }
    planned
}

/// Plans until nothing changes (at most a few rounds) and returns the live placements.
fn converge(state: &mut State) {
    for _ in 0..5 {
        if step(state, "r").is_none() {
            return;
        }
    }
    panic!("the scheduler did not converge");
}

fn live(state: &State, service: &str) -> Vec<Allocation> {
    state
        .allocations_of_service(service)
        .filter(|a| is_live(state, a))
        .cloned()
        .collect()
}

/// Node name → live allocations of the service.
fn counts(state: &State, service: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in live(state, service) {
        *counts.entry(a.node_name).or_default() += 1;
    }
    counts
}

fn report(state: &mut State, alloc: &Allocation, status: AllocationState) {
    apply(
        state,
        Op::ReportStatus(ReportStatusCommand {
            node_id: alloc.node_id.clone(),
            reports: vec![AllocationReport {
                allocation_id: alloc.id.clone(),
                status: Some(AllocationStatus {
                    state: status as i32,
                    ..Default::default()
                }),
                spec_hash: String::new(),
            }],
        }),
    );
}

fn constrained(
    name: &str,
    attribute: &str,
    operator: ConstraintOperator,
    value: &str,
) -> ServiceSpec {
    let mut spec = service(name, 1);
    spec.placement = Some(Placement {
        constraints: vec![Constraint {
            attribute: attribute.into(),
            operator: operator as i32,
            value: value.into(),
        }],
        ..Default::default()
    });
    spec
}

// ---- unit tests ----

#[test]
fn nothing_to_do_gives_none() {
    let mut state = State::new();
    assert_eq!(plan(&state, NOW, &mut counter("a")), None);
    register(&mut state, "n1", 1000, GIB);
    assert_eq!(plan(&state, NOW, &mut counter("a")), None);
}

#[test]
fn places_a_new_allocation_fully_filled_in() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(
        &mut state,
        with_resources(service("web", 1), "500m", "256Mi"),
    );
    let p = plan(&state, NOW, &mut counter("a")).expect("a plan");
    assert!(p.removals.is_empty());
    let [alloc] = p.upserts.as_slice() else {
        panic!("{p:?}")
    };
    assert_eq!(alloc.id, "a-1");
    assert_eq!(alloc.service_name, "web");
    assert_eq!(alloc.service_version, 1);
    assert_eq!(alloc.node_id, "id-n1");
    assert_eq!(alloc.node_name, "n1");
    assert_eq!(alloc.slot, 0);
    assert_eq!(alloc.desired_state(), AllocationDesiredState::Run);
    assert_eq!(
        alloc.reserved,
        Some(NodeResources {
            cpu_millis: 500,
            memory_bytes: 256 << 20
        })
    );
    apply(&mut state, Op::Plan(p));
    let stored = state.allocation("a-1").unwrap();
    assert_eq!(
        stored.status.as_ref().unwrap().state(),
        AllocationState::Pending
    );
    assert_eq!(plan(&state, NOW, &mut counter("b")), None);
}

#[test]
fn replicas_absent_means_one() {
    let mut state = State::new();
    register(&mut state, "n1", 1000, GIB);
    let mut spec = service("web", 0);
    spec.replicas = None;
    put_service(&mut state, spec);
    converge(&mut state);
    assert_eq!(live(&state, "web").len(), 1);
}

#[test]
fn reservation_defaults_to_the_limit() {
    let mut spec = service("web", 1);
    spec.resources = Some(Resources {
        cpus: "1.5".into(),
        memory_limit: "1g".into(),
        memory_reservation: "512m".into(),
        ..Default::default()
    });
    let r = reservation(&spec);
    assert_eq!(r.cpu_millis, 1500);
    assert_eq!(r.memory_bytes, parse_memory("512m").unwrap());
}

#[test]
fn constraints_select_nodes() {
    let cases: &[(&str, ConstraintOperator, &str, &[&str])] = &[
        ("node.labels.zone", ConstraintOperator::Equal, "a", &["n1"]),
        (
            "node.labels.zone",
            ConstraintOperator::Unspecified,
            "b",
            &["n2"],
        ),
        (
            "node.labels.zone",
            ConstraintOperator::NotEqual,
            "a",
            &["n2", "n3"],
        ),
        (
            "node.labels.zone",
            ConstraintOperator::In,
            "a, b",
            &["n1", "n2"],
        ),
        (
            "node.labels.zone",
            ConstraintOperator::NotIn,
            "a,b",
            &["n3"],
        ),
        (
            "node.labels.zone",
            ConstraintOperator::Exists,
            "",
            &["n1", "n2"],
        ),
        (
            "node.labels.zone",
            ConstraintOperator::NotExists,
            "",
            &["n3"],
        ),
        ("node.name", ConstraintOperator::Equal, "n3", &["n3"]),
        (
            "node.name",
            ConstraintOperator::NotEqual,
            "n1",
            &["n2", "n3"],
        ),
        ("node.name", ConstraintOperator::In, "n1,n3", &["n1", "n3"]),
        ("node.id", ConstraintOperator::Equal, "id-n2", &["n2"]),
        ("node.labels.zone", ConstraintOperator::Equal, "c", &[]),
    ];
    for (attribute, operator, value, expected) in cases {
        let mut state = State::new();
        register_labelled(&mut state, "n1", 4000, 8 * GIB, &[("zone", "a")]);
        register_labelled(&mut state, "n2", 4000, 8 * GIB, &[("zone", "b")]);
        register(&mut state, "n3", 4000, 8 * GIB);
        let mut spec = constrained("web", attribute, *operator, value);
        spec.replicas = Some(6);
        put_service(&mut state, spec);
        converge(&mut state);
        let got: Vec<String> = counts(&state, "web").into_keys().collect();
        assert_eq!(got, *expected, "{attribute} {operator:?} {value:?}");
        if !expected.is_empty() {
            assert_eq!(live(&state, "web").len(), 6);
        }
    }
}

#[test]
fn max_per_node_limits_and_leaves_the_rest_unplaced() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    let mut spec = service("web", 5);
    spec.placement = Some(Placement {
        max_per_node: 2,
        ..Default::default()
    });
    put_service(&mut state, spec);
    converge(&mut state);
    let c = counts(&state, "web");
    assert_eq!(c.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    // A third node lets the fifth replica in.
    register(&mut state, "n3", 4000, 8 * GIB);
    converge(&mut state);
    assert_eq!(counts(&state, "web").get("n3"), Some(&1));
    let mut slots: Vec<u32> = live(&state, "web").iter().map(|a| a.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2, 3, 4]);
}

#[test]
fn resources_limit_placement() {
    let mut state = State::new();
    register(&mut state, "small", 1000, GIB);
    register(&mut state, "big", 2000, 4 * GIB);
    put_service(
        &mut state,
        with_resources(service("web", 5), "500m", "100Mi"),
    );
    converge(&mut state);
    let c = counts(&state, "web");
    assert_eq!(c.get("small"), Some(&2));
    assert_eq!(c.get("big"), Some(&3));
    assert_eq!(live(&state, "web").len(), 5);
    // Nothing fits a sixth.
    put_service(
        &mut state,
        with_resources(service("web", 7), "500m", "100Mi"),
    );
    let p = plan(&state, NOW, &mut counter("x")).expect("one more");
    assert_eq!(p.upserts.len(), 1);
    apply(&mut state, Op::Plan(p));
    assert_eq!(plan(&state, NOW, &mut counter("y")), None);
}

#[test]
fn spreads_across_label_values_first() {
    let mut state = State::new();
    register_labelled(&mut state, "a1", 4000, 8 * GIB, &[("zone", "a")]);
    register_labelled(&mut state, "a2", 4000, 8 * GIB, &[("zone", "a")]);
    register_labelled(&mut state, "b1", 4000, 8 * GIB, &[("zone", "b")]);
    let mut spec = service("web", 4);
    spec.placement = Some(Placement {
        spreads: vec![Spread {
            attribute: "node.labels.zone".into(),
        }],
        ..Default::default()
    });
    put_service(&mut state, spec);
    converge(&mut state);
    let c = counts(&state, "web");
    assert_eq!(c.get("b1"), Some(&2));
    assert_eq!(c.get("a1").unwrap() + c.get("a2").unwrap(), 2);
}

#[test]
fn prefers_nodes_with_fewer_allocations_overall() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    put_service(&mut state, service("db", 1));
    converge(&mut state);
    assert_eq!(counts(&state, "db").get("n1"), Some(&1));
    put_service(&mut state, service("web", 1));
    converge(&mut state);
    assert_eq!(counts(&state, "web").get("n2"), Some(&1));
}

#[test]
fn skips_cordoned_draining_down_and_unknown_nodes() {
    let mut state = State::new();
    for name in ["a", "b", "c", "d", "e"] {
        register(&mut state, name, 4000, 8 * GIB);
    }
    set_availability(&mut state, "a", NodeAvailability::Cordoned);
    set_availability(&mut state, "b", NodeAvailability::Draining);
    set_status(&mut state, "c", NodeStatus::Down);
    set_status(&mut state, "d", NodeStatus::Unknown);
    put_service(&mut state, service("web", 3));
    converge(&mut state);
    assert_eq!(counts(&state, "web").get("e"), Some(&3));
    assert_eq!(counts(&state, "web").len(), 1);
}

#[test]
fn scale_up_then_down_stops_the_highest_slots() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    put_service(&mut state, service("web", 2));
    converge(&mut state);
    put_service(&mut state, service("web", 5));
    let p = step(&mut state, "up").unwrap();
    let mut slots: Vec<u32> = p.upserts.iter().map(|a| a.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![2, 3, 4]);
    assert_eq!(live(&state, "web").len(), 5);

    put_service(&mut state, service("web", 2));
    let p = step(&mut state, "down").unwrap();
    assert!(p.removals.is_empty());
    let mut stopped: Vec<u32> = p
        .upserts
        .iter()
        .inspect(|a| assert_eq!(a.desired_state(), AllocationDesiredState::Stop))
        .map(|a| a.slot)
        .collect();
    stopped.sort();
    assert_eq!(stopped, vec![2, 3, 4]);
    let mut kept: Vec<u32> = live(&state, "web").iter().map(|a| a.slot).collect();
    kept.sort();
    assert_eq!(kept, vec![0, 1]);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);

    put_service(&mut state, service("web", 0));
    converge(&mut state);
    assert!(live(&state, "web").is_empty());
}

#[test]
fn deleted_service_allocations_are_removed_once_stopped() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(&mut state, service("web", 2));
    converge(&mut state);
    let allocs = live(&state, "web");
    report(&mut state, &allocs[0], AllocationState::Running);
    delete_service(&mut state, "web");
    // The running one waits for the agent; the pending one goes.
    let p = step(&mut state, "x").unwrap();
    assert_eq!(p.removals, vec![allocs[1].id.clone()]);
    assert!(p.upserts.is_empty());
    assert_eq!(plan(&state, NOW, &mut counter("y")), None);
    report(&mut state, &allocs[0], AllocationState::Stopped);
    let p = step(&mut state, "z").unwrap();
    assert_eq!(p.removals, vec![allocs[0].id.clone()]);
    assert_eq!(state.allocations_of_node("id-n1").count(), 0);
    assert_eq!(
        state.node("n1").unwrap().allocated,
        Some(NodeResources::default())
    );
}

#[test]
fn lost_allocations_are_replaced_in_their_slot_and_then_removed() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    put_service(&mut state, service("web", 2));
    converge(&mut state);
    let on_n1: Vec<Allocation> = live(&state, "web")
        .into_iter()
        .filter(|a| a.node_name == "n1")
        .collect();
    let [lost] = on_n1.as_slice() else {
        panic!("{on_n1:?}")
    };
    set_status(&mut state, "n1", NodeStatus::Down);
    assert_eq!(
        state
            .allocation(&lost.id)
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .state(),
        AllocationState::Lost
    );
    let p = step(&mut state, "re").unwrap();
    assert_eq!(p.removals, vec![lost.id.clone()]);
    let [replacement] = p.upserts.as_slice() else {
        panic!("{p:?}")
    };
    assert_eq!(replacement.slot, lost.slot);
    assert_eq!(replacement.node_name, "n2");
    assert_eq!(replacement.previous_allocation_id, lost.id);
    assert_eq!(live(&state, "web").len(), 2);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
}

#[test]
fn lost_allocations_stay_while_nothing_can_replace_them() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(&mut state, service("web", 1));
    converge(&mut state);
    set_status(&mut state, "n1", NodeStatus::Down);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
}

#[test]
fn live_allocations_on_cordoned_nodes_stay() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    put_service(&mut state, service("web", 2));
    converge(&mut state);
    set_availability(&mut state, "n1", NodeAvailability::Cordoned);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
}

#[test]
fn resources_released_by_a_plan_are_used_by_the_same_plan() {
    let mut state = State::new();
    register(&mut state, "n1", 1000, GIB);
    put_service(
        &mut state,
        with_resources(service("old", 2), "500m", "100Mi"),
    );
    converge(&mut state);
    // No room for "new" until "old" goes.
    put_service(&mut state, with_resources(service("new", 1), "1", "100Mi"));
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
    delete_service(&mut state, "old");
    put_service(&mut state, with_resources(service("new", 1), "1", "100Mi"));
    let p = step(&mut state, "x").unwrap();
    assert_eq!(p.removals.len(), 2);
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(live(&state, "new").len(), 1);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);

    // Scaling one service down makes room for another in the same plan.
    put_service(
        &mut state,
        with_resources(service("other", 1), "500m", "100Mi"),
    );
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
    put_service(&mut state, with_resources(service("new", 0), "1", "100Mi"));
    let p = step(&mut state, "y").unwrap();
    assert_eq!(p.upserts.len(), 2, "{p:?}");
    assert_eq!(live(&state, "other").len(), 1);
    assert_eq!(plan(&state, NOW, &mut counter("z")), None);
}

// ---- properties ----

#[derive(Debug, Clone)]
struct NodeGen {
    cpu: u64,
    memory: u64,
    status: NodeStatus,
    availability: NodeAvailability,
    zone: Option<u8>,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        0u64..5,
        0u64..5,
        prop_oneof![
            4 => Just(NodeStatus::Ready),
            1 => Just(NodeStatus::Down),
            1 => Just(NodeStatus::Unknown),
        ],
        prop_oneof![
            4 => Just(NodeAvailability::Active),
            1 => Just(NodeAvailability::Cordoned),
            1 => Just(NodeAvailability::Draining),
        ],
        proptest::option::of(0u8..3),
    )
        .prop_map(|(cpu, memory, status, availability, zone)| NodeGen {
            cpu: cpu * 1000,
            memory: memory * GIB,
            status,
            availability,
            zone,
        })
}

fn service_gen(index: usize) -> impl Strategy<Value = ServiceSpec> {
    (
        proptest::option::of(0u32..7),
        0u64..4,
        0u64..4,
        0u32..3,
        any::<bool>(),
        proptest::option::of(0u8..3),
    )
        .prop_map(move |(replicas, cpu, memory, max_per_node, spread, zone)| {
            let mut spec = with_resources(
                service(&format!("svc{index}"), 0),
                &format!("{}m", cpu * 400),
                &format!("{}Mi", memory * 400),
            );
            spec.replicas = replicas;
            spec.placement = Some(Placement {
                constraints: zone
                    .map(|z| Constraint {
                        attribute: "node.labels.zone".into(),
                        operator: ConstraintOperator::NotEqual as i32,
                        value: z.to_string(),
                    })
                    .into_iter()
                    .collect(),
                spreads: spread
                    .then(|| Spread {
                        attribute: "node.labels.zone".into(),
                    })
                    .into_iter()
                    .collect(),
                max_per_node,
            });
            spec
        })
}

fn build_nodes(state: &mut State, nodes: &[NodeGen]) {
    for (i, n) in nodes.iter().enumerate() {
        let name = format!("n{i}");
        let labels: Vec<(&str, String)> = n
            .zone
            .map(|z| ("zone", z.to_string()))
            .into_iter()
            .collect();
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        register_labelled(state, &name, n.cpu, n.memory, &labels);
        if n.status != NodeStatus::Ready {
            set_status(state, &name, n.status);
        }
        if n.availability != NodeAvailability::Active {
            set_availability(state, &name, n.availability);
        }
    }
}

/// What happens between two scheduler rounds.
#[derive(Debug, Clone)]
enum Event {
    NodeDown(usize),
    NodeUp(usize),
    Cordon(usize),
    Uncordon(usize),
    Scale(usize, u32),
    Delete(usize),
    Report(usize, AllocationState),
}

fn event_gen() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..6).prop_map(Event::NodeDown),
        (0usize..6).prop_map(Event::NodeUp),
        (0usize..6).prop_map(Event::Cordon),
        (0usize..6).prop_map(Event::Uncordon),
        (0usize..4, 0u32..7).prop_map(|(s, r)| Event::Scale(s, r)),
        (0usize..4).prop_map(Event::Delete),
        (
            0usize..40,
            prop_oneof![
                Just(AllocationState::Running),
                Just(AllocationState::Starting),
                Just(AllocationState::Stopped),
                Just(AllocationState::Failed),
                Just(AllocationState::Exited),
            ]
        )
            .prop_map(|(i, s)| Event::Report(i, s)),
    ]
}

fn happen(state: &mut State, nodes: &[NodeGen], specs: &[ServiceSpec], event: &Event) {
    let node = |i: usize| format!("n{}", i % nodes.len());
    match event {
        Event::NodeDown(i) => set_status(state, &node(*i), NodeStatus::Down),
        Event::NodeUp(i) => set_status(state, &node(*i), NodeStatus::Ready),
        Event::Cordon(i) => set_availability(state, &node(*i), NodeAvailability::Cordoned),
        Event::Uncordon(i) => set_availability(state, &node(*i), NodeAvailability::Active),
        Event::Scale(s, r) => {
            if let Some(spec) = specs.get(*s) {
                let mut spec = spec.clone();
                spec.replicas = Some(*r);
                put_service(state, spec);
            }
        }
        Event::Delete(s) => {
            if let Some(spec) = specs.get(*s)
                && state.service(&spec.name).is_some()
            {
                delete_service(state, &spec.name);
            }
        }
        Event::Report(i, status) => {
            let all = AllocationFilter {
                include_terminal: true,
                ..Default::default()
            };
            let allocs: Vec<Allocation> = state.allocations(&all).into_iter().cloned().collect();
            if !allocs.is_empty() {
                report(state, &allocs[i % allocs.len()], *status);
            }
        }
    }
}

/// Checks one plan against the state it was made from, applies it, and checks the
/// result; returns the state after.
fn check_plan(before: &State, prefix: &str, p: &PlanCommand) -> Result<State, TestCaseError> {
    // Determinism.
    let replanned = plan(before, NOW, &mut counter(prefix));
    prop_assert_eq!(replanned.as_ref(), Some(p));
    for upsert in &p.upserts {
        match before.allocation(&upsert.id) {
            // New: only on nodes that take new allocations.
            None => {
                let node = before.node_by_id(&upsert.node_id);
                prop_assert!(node.is_some_and(accepts_new), "placed on {node:?}");
                prop_assert_eq!(upsert.desired_state(), AllocationDesiredState::Run);
            }
            // Existing: never moved, never re-slotted, only stopped, or (a failed or
            // lost one whose slot waits) told why in its description.
            Some(existing) => {
                prop_assert_eq!(&upsert.node_id, &existing.node_id);
                prop_assert_eq!(upsert.slot, existing.slot);
                if upsert.desired_state() != AllocationDesiredState::Stop {
                    prop_assert!(reschedule::is_rescheduled(existing), "{existing:?}");
                    let mut described = existing.clone();
                    described
                        .desired_description
                        .clone_from(&upsert.desired_description);
                    prop_assert_eq!(upsert, &described);
                }
            }
        }
    }
    for id in &p.removals {
        let existing = before.allocation(id);
        prop_assert!(
            existing
                .is_some_and(|a| !is_live(before, a) || before.service(&a.service_name).is_none())
        );
    }
    let mut after = before.clone();
    apply(&mut after, Op::Plan(p.clone()));
    // Capacity holds on every node, counting existing and planned allocations.
    for node in after.nodes() {
        let capacity = node.description.as_ref().unwrap().capacity.unwrap();
        let allocated = node.allocated.unwrap_or_default();
        prop_assert!(allocated.cpu_millis <= capacity.cpu_millis, "{node:?}");
        prop_assert!(allocated.memory_bytes <= capacity.memory_bytes, "{node:?}");
    }
    // Live allocations of `before` are still live, where they were (unless stopped).
    let stopped: Vec<&str> = p.upserts.iter().map(|u| u.id.as_str()).collect();
    for a in before.allocations(&AllocationFilter::default()) {
        if is_live(before, a) && !stopped.contains(&a.id.as_str()) && !p.removals.contains(&a.id) {
            let now = after.allocation(&a.id);
            prop_assert!(now.is_some_and(|n| n.node_id == a.node_id && is_live(&after, n)));
        }
    }
    // Fixpoint.
    let again = plan(&after, NOW, &mut counter("q"));
    prop_assert_eq!(again, None);
    Ok(after)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Safety, determinism, stability and fixpoint over random clusters and histories.
    #[test]
    fn plans_are_safe_stable_and_final(
        nodes in proptest::collection::vec(node_gen(), 1..6),
        specs in (0usize..4).prop_flat_map(|n| (0..n).map(service_gen).collect::<Vec<_>>()),
        events in proptest::collection::vec(event_gen(), 0..12),
    ) {
        let mut state = State::new();
        build_nodes(&mut state, &nodes);
        for spec in &specs {
            put_service(&mut state, spec.clone());
        }
        let prefix = fresh("p");
        if let Some(p) = plan(&state, NOW, &mut counter(&prefix)) {
            state = check_plan(&state, &prefix, &p)?;
        }
        for event in &events {
            happen(&mut state, &nodes, &specs, event);
            let prefix = fresh("p");
            if let Some(p) = plan(&state, NOW, &mut counter(&prefix)) {
                state = check_plan(&state, &prefix, &p)?;
            }
        }
    }

    /// With N equal eligible nodes and R replicas per service, per-node counts of each
    /// service differ by at most one.
    #[test]
    fn spreads_evenly_over_equal_nodes(
        n in 1usize..7,
        replicas in proptest::collection::vec(0u32..20, 1..4),
    ) {
        let mut state = State::new();
        for i in 0..n {
            register(&mut state, &format!("n{i}"), 64_000, 256 * GIB);
        }
        for (i, r) in replicas.iter().enumerate() {
            put_service(&mut state, with_resources(service(&format!("s{i}"), *r), "100m", "64Mi"));
        }
        converge(&mut state);
        for (i, r) in replicas.iter().enumerate() {
            let name = format!("s{i}");
            let c = counts(&state, &name);
            let per_node: Vec<usize> = (0..n).map(|k| c.get(&format!("n{k}")).copied().unwrap_or(0)).collect();
            let (min, max) = (per_node.iter().min().unwrap(), per_node.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{name}: {per_node:?}");
            prop_assert_eq!(per_node.iter().sum::<usize>(), *r as usize);
        }
    }
}
