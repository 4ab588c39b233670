//! The scheduler's promises, one property each, over random clusters and histories
//! (node failures, cordons, scaling, deletions, status reports).

use super::*;

/// Runs a random history: plans once before and after each event, calls `check` with
/// the state each plan was made from and the plan, and applies the plan.
fn for_each_plan(
    nodes: &[NodeGen],
    specs: &[ServiceSpec],
    events: &[Event],
    mut check: impl FnMut(&State, &PlanCommand) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut state = State::new();
    build_nodes(&mut state, nodes);
    for spec in specs {
        put_service(&mut state, spec.clone());
    }
    for event in std::iter::once(None).chain(events.iter().map(Some)) {
        if let Some(event) = event {
            happen(&mut state, nodes, specs, event);
        }
        if let Some(p) = plan(&state, NOW, &mut counter(&fresh("h"))) {
            check(&state, &p)?;
            apply(&mut state, Op::Plan(p));
        }
    }
    Ok(())
}

fn cluster_gen() -> impl Strategy<Value = (Vec<NodeGen>, Vec<ServiceSpec>, Vec<Event>)> {
    (
        proptest::collection::vec(node_gen(), 1..7),
        (0usize..4).prop_flat_map(|n| (0..n).map(service_gen).collect::<Vec<_>>()),
        proptest::collection::vec(event_gen(), 0..12),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every new allocation goes to a READY and ACTIVE node: never a cordoned, draining,
    /// down or unknown one.
    #[test]
    fn never_places_on_cordoned_draining_or_down_nodes((nodes, specs, events) in cluster_gen()) {
        for_each_plan(&nodes, &specs, &events, |before, p| {
            for new in p.upserts.iter().filter(|u| before.allocation(&u.id).is_none()) {
                let node = before.node_by_id(&new.node_id).expect("a known node");
                prop_assert_eq!(node.status(), NodeStatus::Ready);
                prop_assert_eq!(node.availability(), NodeAvailability::Active);
            }
            Ok(())
        })?;
    }

    /// After every plan, what the allocations on each node reserve fits its capacity,
    /// in cpu and in memory.
    #[test]
    fn never_exceeds_node_capacity((nodes, specs, events) in cluster_gen()) {
        for_each_plan(&nodes, &specs, &events, |before, p| {
            let mut after = before.clone();
            apply(&mut after, Op::Plan(p.clone()));
            for node in after.nodes() {
                let capacity = node.description.as_ref().unwrap().capacity.unwrap();
                let mut used = NodeResources::default();
                for a in after.allocations_of_node(&node.id).filter(|a| !is_terminal(a)) {
                    let r = a.reserved.unwrap_or_default();
                    used.cpu_millis += r.cpu_millis;
                    used.memory_bytes += r.memory_bytes;
                }
                prop_assert!(used.cpu_millis <= capacity.cpu_millis, "{node:?}");
                prop_assert!(used.memory_bytes <= capacity.memory_bytes, "{node:?}");
                prop_assert_eq!(node.allocated.unwrap_or_default(), used);
            }
            Ok(())
        })?;
    }

    /// The same state and the same time give the same plan, ids and order included:
    /// planned twice, and planned on the state rebuilt from its snapshot (what another
    /// member holds when it becomes leader).
    #[test]
    fn same_input_gives_the_same_plan((nodes, specs, events) in cluster_gen()) {
        for_each_plan(&nodes, &specs, &events, |before, p| {
            let prefix = fresh("d");
            let first = plan(before, NOW, &mut counter(&prefix));
            let again = plan(before, NOW, &mut counter(&prefix));
            let restored = State::from_snapshot(before.to_snapshot()).expect("a valid snapshot");
            let elsewhere = plan(&restored, NOW, &mut counter(&prefix));
            prop_assert_eq!(&first, &again);
            prop_assert_eq!(&first, &elsewhere);
            let first = first.expect("the driver planned something");
            prop_assert_eq!(&first.removals, &p.removals);
            prop_assert_eq!(first.upserts.len(), p.upserts.len());
            Ok(())
        })?;
    }

    /// No needless moves: a live allocation is never moved or re-slotted, and a plan
    /// stops one only when its service is gone or has more live allocations than it
    /// asks for (only that many), or its node is draining.
    #[test]
    fn stable_placement_moves_nothing_needlessly((nodes, specs, events) in cluster_gen()) {
        for_each_plan(&nodes, &specs, &events, |before, p| {
            let mut stopped: BTreeMap<&str, usize> = BTreeMap::new();
            for upsert in &p.upserts {
                let Some(existing) = before.allocation(&upsert.id) else { continue };
                prop_assert_eq!(&upsert.node_id, &existing.node_id);
                prop_assert_eq!(upsert.slot, existing.slot);
                if !is_live(before, existing) || upsert.desired_state() != AllocationDesiredState::Stop {
                    continue;
                }
                let draining = before
                    .node_by_id(&existing.node_id)
                    .is_some_and(|n| n.availability() == NodeAvailability::Draining);
                if !draining {
                    *stopped.entry(existing.service_name.as_str()).or_default() += 1;
                }
            }
            for (service, n) in stopped {
                let Some(spec) = before.service(service).and_then(|s| s.spec.as_ref()) else {
                    continue; // deleted: everything goes
                };
                let live_count = live(before, service).len();
                let extra = live_count.saturating_sub(desired_replicas(spec));
                prop_assert!(n <= extra, "{service}: stopped {n} of {live_count} live, {extra} extra");
            }
            // A plan never removes a live allocation of a service that still exists.
            for id in &p.removals {
                let a = before.allocation(id).expect("removes what exists");
                prop_assert!(!is_live(before, a) || before.service(&a.service_name).is_none());
            }
            Ok(())
        })?;
    }

    /// Adding nodes to a settled cluster moves nothing: the plan is still empty.
    #[test]
    fn adding_nodes_moves_nothing(
        (nodes, specs, events) in cluster_gen(),
        more in proptest::collection::vec(node_gen(), 1..4),
    ) {
        let mut state = State::new();
        build_nodes(&mut state, &nodes);
        for spec in &specs {
            put_service(&mut state, spec.clone());
        }
        for event in &events {
            happen(&mut state, &nodes, &specs, event);
        }
        converge(&mut state);
        // Only services with every replica placed would take nothing from new nodes.
        let full = state.services().all(|s| {
            let spec = s.spec.as_ref().unwrap();
            live(&state, &spec.name).len() >= desired_replicas(spec)
        });
        let before: Vec<Allocation> = state.allocations(&AllocationFilter::default()).into_iter().cloned().collect();
        for (i, n) in more.iter().enumerate() {
            register(&mut state, &format!("extra{i}"), n.cpu, n.memory);
        }
        let p = plan(&state, NOW, &mut counter("x"));
        if full {
            prop_assert_eq!(p, None);
        } else if let Some(p) = p {
            // Only new placements: nothing existing is touched.
            for upsert in &p.upserts {
                prop_assert!(before.iter().all(|b| b.id != upsert.id));
            }
        }
    }

    /// A service spread over a zone label on equal nodes: its replica counts per zone
    /// value differ by at most one, whatever the number of nodes in each zone.
    #[test]
    fn spreads_evenly_across_zone_values(
        zones in proptest::collection::vec(1usize..4, 1..5),
        replicas in 0u32..30,
        max_per_node in 0u32..3,
    ) {
        let mut state = State::new();
        for (z, count) in zones.iter().enumerate() {
            for k in 0..*count {
                let zone = format!("z{z}");
                register_labelled(&mut state, &format!("n{z}-{k}"), 64_000, 256 * GIB, &[("zone", zone.as_str())]);
            }
        }
        let mut spec = with_resources(service("web", replicas), "100m", "64Mi");
        spec.placement = Some(Placement {
            spreads: vec![Spread { attribute: "node.labels.zone".into() }],
            max_per_node,
            ..Default::default()
        });
        put_service(&mut state, spec);
        converge(&mut state);
        let mut per_zone = vec![0usize; zones.len()];
        for a in live(&state, "web") {
            let zone: usize = a.node_name[1..a.node_name.find('-').unwrap()].parse().unwrap();
            per_zone[zone] += 1;
        }
        let placed: usize = per_zone.iter().sum();
        if max_per_node == 0 {
            prop_assert_eq!(placed, replicas as usize);
            let (min, max) = (per_zone.iter().min().unwrap(), per_zone.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{per_zone:?}");
        } else {
            // Zones that filled up (every node at max_per_node) may hold fewer; every
            // zone with room holds at most one fewer than the fullest zone.
            let capacity: usize = zones.iter().sum::<usize>() * max_per_node as usize;
            prop_assert_eq!(placed, (replicas as usize).min(capacity));
            let max = per_zone.iter().max().unwrap();
            for (n, nodes) in per_zone.iter().zip(&zones) {
                if *n < nodes * max_per_node as usize {
                    prop_assert!(max - n <= 1, "{per_zone:?}");
                }
            }
        }
    }
}
