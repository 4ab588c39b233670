//! Draining nodes: moving their allocations away in batches, each replacement started
//! elsewhere and healthy before the allocation it replaces is stopped.
//!
//! For every live allocation on a DRAINING node, one plan at a time:
//!
//! * past the drain's deadline, it is stopped, whatever else is going on;
//! * with a replacement in flight that is healthy (RUNNING, its health check passing or
//!   none defined), it is stopped: the replacement now holds the slot;
//! * with a replacement in flight that has failed (as a rolling update judges new
//!   allocations, with the service's `healthy_deadline`), the replacement is stopped
//!   and another one is tried;
//! * with a replacement in flight that is not healthy yet, it keeps running;
//! * not healthy itself, it is stopped: nothing would be lost, and the replica step
//!   places its slot on another node;
//! * otherwise a replacement is placed on another eligible node (same slot,
//!   `previous_allocation_id` naming it), while the node has fewer than its drain
//!   `batch_size` replacements in flight and the service fewer than its update
//!   `parallelism`. When no node fits it stays until one does or the deadline passes.

use std::collections::BTreeMap;

use constellation_proto::v1::{Allocation, Node, NodeAvailability};
use pbjson_types::Timestamp;

use super::replace::is_healthy;
use super::update::{failure, parallelism, timing};
use super::{Planner, is_live};
use crate::state::time::timestamp_nanos;

/// Whether the service's `healthy_deadline` judges the replacement failed.
fn failed(state: &crate::state::State, new: &Allocation, now: &Timestamp) -> bool {
    let policy = state
        .service(&new.service_name)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.update)
        .unwrap_or_default();
    failure(new, timing(&policy).healthy_deadline, now).is_some()
}

/// Whether the node is draining and still holds allocations.
pub(super) fn drain_pending(node: &Node) -> bool {
    node.availability() == NodeAvailability::Draining && !node.drain.is_some_and(|d| d.completed)
}

impl Planner<'_> {
    /// Moves allocations off every draining node (see the module header).
    pub(super) fn drain(&mut self, now: &Timestamp, ids: &mut impl FnMut() -> String) {
        let state = self.state;
        for node in state
            .nodes()
            .filter(|n| n.availability() == NodeAvailability::Draining)
        {
            self.drain_node(node, now, ids);
        }
    }

    fn drain_node(&mut self, node: &Node, now: &Timestamp, ids: &mut impl FnMut() -> String) {
        let state = self.state;
        let drain = node.drain.unwrap_or_default();
        let expired = drain
            .deadline
            .as_ref()
            .is_some_and(|deadline| timestamp_nanos(deadline) <= timestamp_nanos(now));
        let batch = drain.batch_size.max(1) as usize;
        let on_node: Vec<&Allocation> = state
            .allocations_of_node(&node.id)
            .filter(|a| is_live(state, a) && !self.released.contains(&a.id))
            .collect();
        let mut in_flight = 0usize;
        let mut waiting = Vec::new();
        // The services' replacements, computed once per service: a replacement of an
        // allocation on this node is another allocation's only while both live.
        let mut replacements: BTreeMap<String, BTreeMap<String, Allocation>> = BTreeMap::new();
        for old in on_node {
            if expired {
                self.stop(old);
                continue;
            }
            let of_service = replacements
                .entry(old.service_name.clone())
                .or_insert_with(|| self.replacements(&old.service_name));
            match of_service.get(&old.id) {
                Some(new) if is_healthy(new) => self.stop(old),
                Some(new) if failed(state, new, now) => {
                    // Given up; the next plan tries another replacement.
                    if state.allocation(&new.id).is_some() {
                        self.stop(new);
                    }
                }
                Some(_) => in_flight += 1,
                None => waiting.push(old),
            }
        }
        // Replacements this step placed, by service (not in `replacements`).
        let mut placed_here: BTreeMap<&str, usize> = BTreeMap::new();
        for old in waiting {
            let Some(service) = state.service(&old.service_name) else {
                continue;
            };
            if !is_healthy(old) {
                self.stop(old);
                continue;
            }
            let of_service = replacements
                .entry(old.service_name.clone())
                .or_insert_with(|| self.replacements(&old.service_name))
                .len();
            let placed = placed_here.entry(old.service_name.as_str()).or_insert(0);
            if in_flight >= batch || of_service + *placed >= parallelism(service) {
                continue;
            }
            if self.place_replacement(service, old, ids) {
                in_flight += 1;
                *placed += 1;
            }
        }
    }
}
