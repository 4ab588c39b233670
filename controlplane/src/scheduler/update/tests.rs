//! Drains and rolling updates driven through the real state machine: a simulated
//! clock and simulated agents (each allocation's container turns RUNNING with the
//! health its version's spec gets from the test, and stops when told to).

use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationReport, AllocationState, AllocationStatus,
    ApplyServiceCommand, Command, FailureAction, HealthState, NodeAvailability, NodeDescription,
    NodeResources, NodeStatus, PlanCommand, RegisterNodeCommand, ReportStatusCommand, Service,
    ServiceSpec, SetNodeAvailabilityCommand, SetNodeStatusCommand, UpdateOrder, UpdatePolicy,
    UpdateState, command::Op, command_result::Outcome,
};
use pbjson_types::{Duration, Timestamp};
use proptest::prelude::*;

use super::super::{is_live, plan};
use super::next_wake;
use crate::state::{COMMAND_VERSION, State, is_terminal, spec_of_version};

const START: i64 = 1_700_000_000;

fn secs(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

/// What a simulated agent makes of a container of this spec.
type Behaviour = dyn Fn(&ServiceSpec) -> HealthState;

/// Healthy unless the image says "broken" (then its health check fails).
fn by_image(spec: &ServiceSpec) -> HealthState {
    if spec.image.contains("broken") {
        HealthState::Unhealthy
    } else {
        HealthState::Healthy
    }
}

struct Sim {
    state: State,
    /// Milliseconds since `START`.
    now_ms: i64,
    next_id: usize,
}

impl Sim {
    fn new(nodes: &[&str]) -> Self {
        let mut sim = Self {
            state: State::new(),
            now_ms: 0,
            next_id: 0,
        };
        for name in nodes {
            sim.register(name);
        }
        sim
    }

    fn now(&self) -> Timestamp {
        Timestamp {
            seconds: START + self.now_ms / 1000,
            nanos: i32::try_from((self.now_ms % 1000) * 1_000_000).unwrap_or(0),
        }
    }

    fn advance_ms(&mut self, ms: i64) {
        self.now_ms += ms;
    }

    fn apply(&mut self, op: Op) {
        let command = Command {
            version: COMMAND_VERSION,
            proposed_at: Some(self.now()),
            op: Some(op),
        };
        let result = self.state.apply(&command);
        assert!(
            !matches!(result.outcome, Some(Outcome::Error(_))),
            "{result:?}"
        );
    }

    fn register(&mut self, name: &str) {
        self.apply(Op::RegisterNode(RegisterNodeCommand {
            node_id: format!("id-{name}"),
            description: Some(NodeDescription {
                name: name.into(),
                capacity: Some(NodeResources {
                    cpu_millis: 64_000,
                    memory_bytes: 64 << 30,
                }),
                ..Default::default()
            }),
        }));
    }

    fn put(&mut self, spec: ServiceSpec) {
        self.apply(Op::ApplyService(ApplyServiceCommand {
            spec: Some(spec),
            expected_version: None,
        }));
    }

    fn drain(&mut self, node: &str, deadline: i64, batch: u32) {
        self.apply(Op::SetNodeAvailability(SetNodeAvailabilityCommand {
            name: node.into(),
            availability: NodeAvailability::Draining as i32,
            drain_deadline: secs(deadline),
            drain_batch_size: batch,
        }));
    }

    fn down(&mut self, node: &str) {
        self.apply(Op::SetNodeStatus(SetNodeStatusCommand {
            node_id: format!("id-{node}"),
            status: NodeStatus::Down as i32,
            ..Default::default()
        }));
    }

    /// Plans once at the current time and applies the plan.
    fn step(&mut self) -> Option<PlanCommand> {
        let mut next = self.next_id;
        let planned = plan(&self.state, self.now(), &mut || {
            next += 1;
            format!("a{next}")
        });
        self.next_id = next;
        if let Some(p) = &planned {
            self.apply(Op::Plan(p.clone()));
        }
        planned
    }

    /// The agents act once: new (and still starting) containers come up with the
    /// health `behaviour` gives their version's spec; containers told to stop stop.
    fn agents(&mut self, behaviour: &Behaviour) {
        let mut reports: Vec<(String, AllocationReport)> = Vec::new();
        for alloc in self.state.allocations(&crate::state::AllocationFilter {
            include_terminal: true,
            ..Default::default()
        }) {
            let down = self
                .state
                .node_by_id(&alloc.node_id)
                .is_none_or(|n| n.status() == NodeStatus::Down);
            if down {
                continue;
            }
            let current = alloc.status.clone().unwrap_or_default().state();
            let status = if alloc.desired_state() == AllocationDesiredState::Stop {
                if matches!(current, AllocationState::Stopped | AllocationState::Lost) {
                    continue;
                }
                AllocationStatus {
                    state: AllocationState::Stopped as i32,
                    ..Default::default()
                }
            } else if !is_terminal(alloc)
                && (current == AllocationState::Pending
                    || alloc
                        .status
                        .as_ref()
                        .is_some_and(|s| s.health() == HealthState::Starting))
            {
                let Some(spec) = self
                    .state
                    .service(&alloc.service_name)
                    .and_then(|s| spec_of_version(s, alloc.service_version))
                    .map(|(spec, _)| spec.clone())
                else {
                    continue;
                };
                AllocationStatus {
                    state: AllocationState::Running as i32,
                    health: behaviour(&spec) as i32,
                    ..Default::default()
                }
            } else {
                continue;
            };
            reports.push((
                alloc.node_id.clone(),
                AllocationReport {
                    allocation_id: alloc.id.clone(),
                    status: Some(status),
                    spec_hash: String::new(),
                },
            ));
        }
        for (node_id, report) in reports {
            self.apply(Op::ReportStatus(ReportStatusCommand {
                node_id,
                reports: vec![report],
            }));
        }
    }

    /// Steps and lets the agents act, `rounds` times, `ms` apart.
    fn run(&mut self, rounds: usize, ms: i64, behaviour: &Behaviour) {
        for _ in 0..rounds {
            self.step();
            self.agents(behaviour);
            self.advance_ms(ms);
        }
    }

    fn service(&self, name: &str) -> &Service {
        self.state.service(name).expect("service exists")
    }

    fn update(&self, name: &str) -> constellation_proto::v1::UpdateStatus {
        self.service(name)
            .status
            .as_ref()
            .and_then(|s| s.update.clone())
            .unwrap_or_default()
    }

    /// Live allocations of the service.
    fn live(&self, name: &str) -> Vec<Allocation> {
        self.state
            .allocations_of_service(name)
            .filter(|a| is_live(&self.state, a))
            .cloned()
            .collect()
    }

    /// Allocations of the service told to run that are RUNNING and healthy.
    fn healthy(&self, name: &str) -> usize {
        self.live(name)
            .iter()
            .filter(|a| super::super::replace::is_healthy(a))
            .count()
    }

    /// The spec each live allocation of the service runs (its version's).
    fn images(&self, name: &str) -> Vec<String> {
        let service = self.service(name);
        let mut images: Vec<String> = self
            .live(name)
            .iter()
            .map(|a| {
                spec_of_version(service, a.service_version)
                    .map(|(s, _)| s.image.clone())
                    .unwrap_or_default()
            })
            .collect();
        images.sort();
        images
    }
}

fn web(replicas: u32, image: &str, order: UpdateOrder, parallelism: u32) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        image: image.into(),
        replicas: Some(replicas),
        update: Some(UpdatePolicy {
            parallelism,
            order: order as i32,
            monitor: secs(5),
            healthy_deadline: secs(30),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Three nodes, `replicas` of web:v1 running healthy.
fn running(replicas: u32, order: UpdateOrder, parallelism: u32) -> Sim {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.put(web(replicas, "web:v1", order, parallelism));
    sim.run(3, 1000, &by_image);
    assert_eq!(sim.healthy("web"), replicas as usize);
    sim
}

#[test]
fn drain_starts_a_replacement_and_stops_the_old_one_once_it_is_healthy() {
    let mut sim = Sim::new(&["a", "b", "c"]);
    sim.put(web(2, "web:v1", UpdateOrder::StartFirst, 1));
    sim.run(2, 1000, &by_image);
    let on_a: Vec<Allocation> = sim
        .live("web")
        .into_iter()
        .filter(|a| a.node_name == "a")
        .collect();
    assert_eq!(on_a.len(), 1, "{:?}", sim.live("web"));
    let old = &on_a[0];
    sim.drain("a", 3600, 1);

    // A replacement in the same slot elsewhere; the old one keeps running.
    let p = sim.step().expect("a replacement");
    assert_eq!(p.upserts.len(), 1, "{p:?}");
    let new = &p.upserts[0];
    assert_eq!(
        (new.slot, new.previous_allocation_id.as_str()),
        (old.slot, old.id.as_str())
    );
    assert_ne!(new.node_name, "a");
    assert!(sim.step().is_none(), "waits for the replacement");

    // Starting is not healthy yet.
    sim.agents(&|_| HealthState::Starting);
    assert!(sim.step().is_none(), "the replacement is not healthy yet");
    let a = sim.state.node("a").and_then(|n| n.drain).expect("drain");
    assert_eq!((a.remaining, a.completed), (1, false));
    sim.apply(Op::ReportStatus(ReportStatusCommand {
        node_id: new.node_id.clone(),
        reports: vec![AllocationReport {
            allocation_id: new.id.clone(),
            status: Some(AllocationStatus {
                state: AllocationState::Running as i32,
                health: HealthState::Healthy as i32,
                ..Default::default()
            }),
            spec_hash: String::new(),
        }],
    }));
    let p = sim.step().expect("the old one stops");
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].id, old.id);
    assert_eq!(p.upserts[0].desired_state(), AllocationDesiredState::Stop);
    let a = sim.state.node("a").and_then(|n| n.drain).expect("drain");
    assert_eq!(
        (a.remaining, a.completed),
        (1, false),
        "still running until the agent says it stopped"
    );
    sim.agents(&by_image);
    let a = sim.state.node("a").and_then(|n| n.drain).expect("drain");
    assert_eq!((a.remaining, a.completed), (0, true));
    assert_eq!(sim.healthy("web"), 2);
    assert!(sim.step().is_none());
}

#[test]
fn drain_moves_one_replacement_at_a_time_per_service_and_node() {
    let mut sim = Sim::new(&["a"]);
    sim.put(web(3, "web:v1", UpdateOrder::StopFirst, 1));
    sim.run(2, 1000, &by_image);
    sim.register("b");
    sim.drain("a", 3600, 2);
    let mut max_in_flight = 0;
    for _ in 0..20 {
        sim.step();
        let in_flight = sim.live("web").len() - 3;
        max_in_flight = max_in_flight.max(in_flight);
        assert!(sim.healthy("web") >= 3, "never fewer than 3 healthy");
        sim.agents(&by_image);
        sim.advance_ms(500);
    }
    assert_eq!(max_in_flight, 1, "parallelism 1 bounds the drain");
    let live = sim.live("web");
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|a| a.node_name == "b"), "{live:?}");
    let a = sim.state.node("a").and_then(|n| n.drain).expect("drain");
    assert!(a.completed);
}

#[test]
fn drain_deadline_stops_what_could_not_move() {
    let mut sim = Sim::new(&["a"]);
    sim.put(web(2, "web:v1", UpdateOrder::StopFirst, 1));
    sim.run(2, 1000, &by_image);
    sim.drain("a", 10, 1);
    sim.run(5, 1000, &by_image);
    assert_eq!(sim.live("web").len(), 2, "nowhere to go: they stay");
    sim.advance_ms(6000);
    let p = sim.step().expect("the deadline passed");
    assert_eq!(p.upserts.len(), 2);
    assert!(
        p.upserts
            .iter()
            .all(|a| a.desired_state() == AllocationDesiredState::Stop)
    );
    sim.agents(&by_image);
    let a = sim.state.node("a").and_then(|n| n.drain).expect("drain");
    assert_eq!((a.remaining, a.completed), (0, true));
}

#[test]
fn stop_first_update_replaces_in_batches_gated_on_monitor() {
    let mut sim = running(3, UpdateOrder::StopFirst, 1);
    let v1 = sim.service("web").version;
    sim.put(web(3, "web:v2", UpdateOrder::StopFirst, 1));
    let update = sim.update("web");
    assert_eq!(update.state(), UpdateState::Updating);
    assert_eq!((update.from_version, update.to_version), (v1, v1 + 1));
    // The old allocations still run their own spec.
    assert_eq!(sim.images("web"), ["web:v1"; 3]);

    let p = sim.step().expect("first batch");
    assert_eq!(p.upserts.len(), 1, "{p:?}");
    let stopped = &p.upserts[0];
    assert_eq!(stopped.desired_state(), AllocationDesiredState::Stop);
    assert!(
        sim.step().is_none(),
        "its slot waits until its container stopped"
    );
    sim.agents(&by_image);
    let p = sim.step().expect("the new one");
    assert_eq!(p.upserts.len(), 1, "{p:?}");
    assert_eq!(p.upserts[0].slot, stopped.slot);
    assert_eq!(p.upserts[0].desired_state(), AllocationDesiredState::Run);
    sim.agents(&by_image);
    // Healthy, but not for the monitor period yet.
    sim.advance_ms(4000);
    assert!(sim.step().is_none());
    sim.advance_ms(1500);
    assert!(
        sim.step().is_some(),
        "second batch after the monitor period"
    );
    sim.run(30, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v2"; 3]);
    let update = sim.update("web");
    assert_eq!(update.state(), UpdateState::Completed, "{update:?}");
    assert!(update.completed_at.is_some());
    assert!(
        sim.service("web").retained_versions.is_empty(),
        "no allocation runs v1 any more"
    );
}

#[test]
fn start_first_update_keeps_the_old_one_until_the_new_one_is_healthy() {
    let mut sim = running(1, UpdateOrder::StartFirst, 1);
    let old = sim.live("web")[0].clone();
    sim.put(web(1, "web:v2", UpdateOrder::StartFirst, 1));
    let p = sim.step().expect("a replacement");
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].previous_allocation_id, old.id);
    sim.agents(&|_| HealthState::Starting);
    assert!(sim.step().is_none());
    assert_eq!(sim.healthy("web"), 1, "the old one still serves");
    sim.run(10, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v2"]);
    assert_eq!(sim.update("web").state(), UpdateState::Completed);
}

#[test]
fn scaling_replaces_nothing() {
    let mut sim = running(2, UpdateOrder::StopFirst, 1);
    let before: Vec<String> = sim.live("web").iter().map(|a| a.id.clone()).collect();
    sim.put(web(3, "web:v1", UpdateOrder::StopFirst, 1));
    sim.run(5, 1000, &by_image);
    let live = sim.live("web");
    assert_eq!(live.len(), 3);
    assert!(before.iter().all(|id| live.iter().any(|a| &a.id == id)));
    assert_eq!(sim.update("web").state(), UpdateState::Unspecified);
}

#[test]
fn a_failing_version_rolls_back_by_itself() {
    let mut sim = running(2, UpdateOrder::StopFirst, 1);
    let original = sim.service("web").spec.clone().expect("spec");
    let watched_from = sim.state.event_index();
    sim.put(web(2, "web:broken", UpdateOrder::StopFirst, 1));
    let broken_version = sim.service("web").version;
    let mut states = Vec::new();
    for _ in 0..40 {
        sim.step();
        sim.agents(&by_image);
        assert!(sim.healthy("web") >= 1, "one replica always serves");
        let state = sim.update("web").state();
        if states.last() != Some(&state) {
            states.push(state);
        }
        sim.advance_ms(1000);
    }
    assert_eq!(
        states,
        [
            UpdateState::Updating,
            UpdateState::RollingBack,
            UpdateState::RolledBack
        ]
    );
    let service = sim.service("web");
    assert_eq!(service.spec.as_ref(), Some(&original));
    assert_eq!(service.version, broken_version + 1);
    let update = sim.update("web");
    assert_eq!(
        (update.from_version, update.to_version),
        (broken_version, broken_version + 1)
    );
    assert!(
        update
            .message
            .starts_with("rolled back: 1 of 2 new replicas failed"),
        "{update:?}"
    );
    assert!(
        update.message.contains("health check failing"),
        "{update:?}"
    );
    assert_eq!(sim.images("web"), ["web:v1"; 2]);
    assert_eq!(sim.healthy("web"), 2);

    // A watcher of the service topic saw every step of it.
    let events = sim
        .state
        .events_after(watched_from, &[constellation_proto::v1::Topic::Service])
        .expect("retained");
    let mut seen: Vec<UpdateState> = Vec::new();
    for event in events {
        let Some(constellation_proto::v1::event::Payload::Service(e)) = event.payload else {
            continue;
        };
        let state = e
            .service
            .and_then(|s| s.status?.update)
            .map_or(UpdateState::Unspecified, |u| u.state());
        if seen.last() != Some(&state) {
            seen.push(state);
        }
    }
    assert_eq!(seen, states, "the Watch stream carries the update status");
}

#[test]
fn pause_and_continue_failure_actions() {
    let mut sim = running(2, UpdateOrder::StopFirst, 1);
    let mut spec = web(2, "web:broken", UpdateOrder::StopFirst, 1);
    if let Some(u) = spec.update.as_mut() {
        u.set_failure_action(FailureAction::Pause);
    }
    sim.put(spec.clone());
    sim.run(20, 1000, &by_image);
    let update = sim.update("web");
    assert_eq!(update.state(), UpdateState::Paused, "{update:?}");
    assert!(update.message.starts_with("paused: 1 of 2"), "{update:?}");
    assert_eq!(sim.images("web"), ["web:broken", "web:v1"]);

    // Applying a new spec resumes; CONTINUE replaces every replica even if they fail.
    if let Some(u) = spec.update.as_mut() {
        u.set_failure_action(FailureAction::Continue);
    }
    spec.image = "web:broken-too".into();
    sim.put(spec);
    assert_eq!(sim.update("web").state(), UpdateState::Updating);
    sim.run(30, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:broken-too"; 2]);
    assert_eq!(sim.update("web").state(), UpdateState::Completed);
}

#[test]
fn a_new_spec_supersedes_a_running_update() {
    let mut sim = running(3, UpdateOrder::StopFirst, 1);
    sim.put(web(3, "web:v2", UpdateOrder::StopFirst, 1));
    sim.run(2, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v1", "web:v1", "web:v2"]);
    sim.put(web(3, "web:v3", UpdateOrder::StopFirst, 1));
    let versions: Vec<u64> = sim
        .service("web")
        .retained_versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 2], "both older versions still run");
    let update = sim.update("web");
    assert_eq!((update.from_version, update.to_version), (2, 3));
    sim.run(40, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v3"; 3]);
    assert_eq!(sim.update("web").state(), UpdateState::Completed);
    assert!(sim.service("web").retained_versions.is_empty());
}

#[test]
fn an_update_waits_for_a_node_that_went_down() {
    let mut sim = running(2, UpdateOrder::StopFirst, 1);
    sim.put(web(2, "web:v2", UpdateOrder::StopFirst, 1));
    let on = sim.live("web")[0].node_name.clone();
    sim.down(&on);
    sim.run(40, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v2"; 2]);
    assert_eq!(sim.update("web").state(), UpdateState::Completed);
}

/// What happens between two plans in the property test.
#[derive(Debug, Clone)]
enum Event {
    /// The agents act (the image decides health).
    Agents,
    /// Time passes (ms).
    Advance(i64),
    /// A new spec: broken or not, its index makes it distinct.
    Update { broken: bool, n: u8 },
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(Event::Agents),
            4 => (100i64..4000).prop_map(Event::Advance),
            1 => (any::<bool>(), any::<u8>()).prop_map(|(broken, n)| Event::Update { broken, n }),
        ],
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Stop-first never leaves fewer than replicas − parallelism allocations placed;
    /// start-first never leaves the service without a healthy replica; both settle
    /// on the last spec once the agents keep acting.
    #[test]
    fn updates_keep_enough_replicas(
        replicas in 1u32..5,
        parallelism in 1u32..3,
        start_first in any::<bool>(),
        events in events(),
    ) {
        let order = if start_first { UpdateOrder::StartFirst } else { UpdateOrder::StopFirst };
        let mut sim = running(replicas, order, parallelism);
        let mut last_image = "web:v1".to_owned();
        for event in events {
            match event {
                Event::Agents => sim.agents(&by_image),
                Event::Advance(ms) => sim.advance_ms(ms),
                Event::Update { broken, n } => {
                    last_image = if broken { format!("web:broken-{n}") } else { format!("web:v-{n}") };
                    sim.put(web(replicas, &last_image, order, parallelism));
                }
            }
            sim.step();
            let live = sim.live("web");
            let placed = live.iter().filter(|a| a.previous_allocation_id.is_empty()
                || !live.iter().any(|o| o.id == a.previous_allocation_id)).count();
            if start_first {
                prop_assert!(sim.healthy("web") >= 1, "no healthy replica: {live:?}");
            } else {
                prop_assert!(placed + parallelism as usize >= replicas as usize,
                    "{placed} placed of {replicas}: {live:?}");
            }
        }
        sim.run(80, 2000, &by_image);
        let images = sim.images("web");
        prop_assert_eq!(images.len(), replicas as usize);
        if !last_image.contains("broken") {
            let state = sim.update("web").state();
            prop_assert!(matches!(state, UpdateState::Unspecified | UpdateState::Completed
                | UpdateState::RolledBack), "{:?}", state);
            prop_assert!(images.iter().all(|i| *i == last_image), "{:?}", images);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Draining a node never leaves the service with fewer healthy replicas than it
    /// asks for (the old allocation runs until its replacement is healthy), never
    /// has more than `parallelism` replacements in flight, and ends with nothing on
    /// the drained node.
    #[test]
    fn drains_keep_every_replica_healthy(
        nodes in 2usize..5,
        replicas in 1u32..6,
        parallelism in 1u32..3,
        batch in 1u32..3,
        drained in 0usize..5,
        gaps in prop::collection::vec((any::<bool>(), 100i64..3000), 1..40),
    ) {
        let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut sim = Sim::new(&refs);
        sim.put(web(replicas, "web:v1", UpdateOrder::StopFirst, parallelism));
        sim.run(3, 1000, &by_image);
        prop_assert_eq!(sim.healthy("web"), replicas as usize);
        let node = names[drained % nodes].clone();
        sim.drain(&node, 3600, batch);
        for (agents, ms) in gaps {
            sim.step();
            let live = sim.live("web");
            prop_assert!(sim.healthy("web") >= replicas as usize, "{live:?}");
            prop_assert!(live.len() <= (replicas + parallelism) as usize, "{live:?}");
            if agents {
                sim.agents(&by_image);
            }
            sim.advance_ms(ms);
        }
        sim.run(40, 1000, &by_image);
        let live = sim.live("web");
        prop_assert_eq!(live.len(), replicas as usize);
        prop_assert!(live.iter().all(|a| a.node_name != node), "{live:?}");
        let drain = sim.state.node(&node).and_then(|n| n.drain).unwrap_or_default();
        prop_assert!(drain.completed, "{drain:?}");
    }
}

#[test]
fn the_next_wake_is_the_end_of_a_monitor_period_or_a_deadline() {
    let mut sim = running(2, UpdateOrder::StopFirst, 1);
    assert_eq!(next_wake(&sim.state, &sim.now()), None, "nothing waits");
    sim.put(web(2, "web:v2", UpdateOrder::StopFirst, 1));
    sim.step();
    sim.agents(&by_image);
    sim.step();
    let placed = sim.now();
    // Placed, not healthy yet: its healthy deadline (30 s).
    assert_eq!(
        next_wake(&sim.state, &sim.now()).map(|t| t.seconds),
        Some(placed.seconds + 30)
    );
    sim.advance_ms(1500);
    sim.agents(&by_image);
    let healthy_at = sim.now();
    // Healthy: the end of its monitor period (5 s).
    assert_eq!(next_wake(&sim.state, &sim.now()), {
        let mut t = healthy_at;
        t.seconds += 5;
        Some(t)
    });
    sim.run(30, 1000, &by_image);
    assert_eq!(sim.update("web").state(), UpdateState::Completed);
    assert_eq!(next_wake(&sim.state, &sim.now()), None);

    // A drain with nowhere to go wakes at its deadline.
    let mut sim = Sim::new(&["a"]);
    sim.put(web(1, "web:v1", UpdateOrder::StopFirst, 1));
    sim.run(2, 1000, &by_image);
    let start = sim.now();
    sim.drain("a", 10, 1);
    sim.step();
    assert_eq!(
        next_wake(&sim.state, &sim.now()).map(|t| t.seconds),
        Some(start.seconds + 10)
    );
}

#[test]
fn an_operator_rollback_rolls_the_replicas_back() {
    use constellation_proto::v1::{CommandErrorCode, RollbackServiceCommand};
    let mut sim = running(2, UpdateOrder::StartFirst, 1);
    let rollback = |sim: &mut Sim, name: &str| {
        sim.state.apply(&Command {
            version: COMMAND_VERSION,
            proposed_at: Some(sim.now()),
            op: Some(Op::RollbackService(RollbackServiceCommand {
                name: name.into(),
            })),
        })
    };
    let code = |r: &constellation_proto::v1::CommandResult| match &r.outcome {
        Some(Outcome::Error(e)) => Some(e.code()),
        _ => None,
    };
    assert_eq!(
        code(&rollback(&mut sim, "nope")),
        Some(CommandErrorCode::NotFound)
    );
    assert_eq!(
        code(&rollback(&mut sim, "web")),
        Some(CommandErrorCode::FailedPrecondition),
        "no previous spec yet"
    );
    sim.put(web(2, "web:v2", UpdateOrder::StartFirst, 1));
    sim.run(30, 1000, &by_image);
    assert_eq!(sim.images("web"), ["web:v2"; 2]);
    let before = sim.service("web").version;

    let result = rollback(&mut sim, "web");
    assert_eq!(code(&result), None);
    assert!(result.changed);
    let update = sim.update("web");
    assert_eq!(update.state(), UpdateState::RollingBack);
    assert_eq!(
        (update.from_version, update.to_version),
        (before, before + 1)
    );
    for _ in 0..30 {
        sim.step();
        sim.agents(&by_image);
        assert!(
            sim.healthy("web") >= 2,
            "start-first: never fewer than 2 healthy"
        );
        sim.advance_ms(1000);
    }
    assert_eq!(sim.images("web"), ["web:v1"; 2]);
    let update = sim.update("web");
    assert_eq!(update.state(), UpdateState::RolledBack, "{update:?}");
    assert_eq!(update.message, "rolled back: requested");
}
