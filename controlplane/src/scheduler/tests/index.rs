//! The indexed node search ([`super::super::index`]) against the full scan it replaces.

use super::*;
use crate::scheduler::index::Tally;

/// A node for the search: capacity, status, availability, zone and rack labels.
fn indexed_node_gen() -> impl Strategy<Value = (NodeGen, Option<u8>)> {
    (node_gen(), proptest::option::of(0u8..3))
}

/// A spec exercising every part of the order: spreads over zone, rack and name,
/// constraints, max per node, reservations.
fn search_spec_gen(index: usize) -> impl Strategy<Value = ServiceSpec> {
    (
        service_gen(index),
        proptest::sample::subsequence(
            vec!["node.labels.zone", "node.labels.rack", "node.name"],
            0..=3,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut spec, spreads, reverse)| {
            let mut spreads: Vec<Spread> = spreads
                .into_iter()
                .map(|a| Spread {
                    attribute: a.into(),
                })
                .collect();
            if reverse {
                spreads.reverse();
            }
            spec.placement.get_or_insert_default().spreads = spreads;
            spec
        })
}

fn build_racked_nodes(state: &mut State, nodes: &[(NodeGen, Option<u8>)]) {
    for (i, (n, rack)) in nodes.iter().enumerate() {
        let name = format!("n{i}");
        let mut labels: Vec<(&str, String)> = Vec::new();
        if let Some(z) = n.zone {
            labels.push(("zone", z.to_string()));
        }
        if let Some(r) = rack {
            labels.push(("rack", r.to_string()));
        }
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        register_labelled(state, &name, n.cpu * 4, n.memory * 4, &labels);
        if n.status != NodeStatus::Ready {
            set_status(state, &name, n.status);
        }
        if n.availability != NodeAvailability::Active {
            set_availability(state, &name, n.availability);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Through a sequence of placements and releases on one planner, the indexed
    /// search picks exactly the node the full scan over every node picks.
    #[test]
    fn indexed_best_node_equals_the_full_scan(
        nodes in proptest::collection::vec(indexed_node_gen(), 1..10),
        existing in (0usize..3).prop_flat_map(|n| (0..n).map(service_gen).collect::<Vec<_>>()),
        specs in (1usize..4).prop_flat_map(|n| (0..n).map(|i| search_spec_gen(10 + i)).collect::<Vec<_>>()),
        steps in proptest::collection::vec((0usize..4, 0u8..5, 0usize..64), 1..60),
    ) {
        let mut state = State::new();
        build_racked_nodes(&mut state, &nodes);
        for spec in &existing {
            put_service(&mut state, spec.clone());
        }
        converge(&mut state);
        let all: Vec<Allocation> = state
            .allocations(&AllocationFilter::default())
            .into_iter()
            .cloned()
            .collect();
        let mut planner = Planner::new(&state);
        let mut per_node: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); specs.len()];
        let mut tallies: Vec<Tally> = specs
            .iter()
            .zip(&per_node)
            .map(|(spec, counts)| Tally::new(spec, counts, &planner.nodes))
            .collect();
        for (s, action, k) in steps {
            let s = s % specs.len();
            if action == 0 && !all.is_empty() {
                // A release changes node ranks: tallies are rebuilt, as each service's
                // scale-up builds its own.
                let alloc = &all[k % all.len()];
                if !planner.released.contains(&alloc.id) {
                    planner.release(alloc);
                }
                tallies = specs
                    .iter()
                    .zip(&per_node)
                    .map(|(spec, counts)| Tally::new(spec, counts, &planner.nodes))
                    .collect();
                continue;
            }
            let spec = &specs[s];
            let need = reservation(spec);
            let scanned = planner.nodes.best_by_scan(spec, &need, &per_node[s]);
            let indexed = planner.nodes.best(spec, &need, &tallies[s]);
            prop_assert_eq!(indexed, scanned);
            let rebuilt = Tally::new(spec, &per_node[s], &planner.nodes);
            prop_assert_eq!(planner.nodes.best(spec, &need, &rebuilt), scanned);
            if let Some(id) = indexed {
                tallies[s].place(id, &need, &mut planner.nodes);
                *per_node[s].entry(id.to_owned()).or_default() += 1;
                // Another service's tally saw the old rank of this node: rebuild them.
                for (other, tally) in tallies.iter_mut().enumerate() {
                    if other != s {
                        *tally = Tally::new(&specs[other], &per_node[other], &planner.nodes);
                    }
                }
            }
        }
    }
}
