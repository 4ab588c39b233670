//! What drains and rolling updates share: replacements in flight, health as the
//! planner judges it, time arithmetic, and placing a replacement.
//!
//! A *replacement in flight* is a live allocation whose `previous_allocation_id` names
//! another live allocation (of the same service, in the same slot) that this plan has
//! not released. The old one still counts as the slot's replica; the replacement is a
//! temporary extra, left out of the replica count until the old one is stopped. So a
//! service runs at most `replicas` + (replacements in flight) allocations, and never
//! fewer than `replicas` because of a start-first replacement.

use std::collections::{BTreeMap, BTreeSet};

use constellation_proto::v1::{Allocation, AllocationDesiredState, Service};
use pbjson_types::Timestamp;

use super::{Planner, is_live, reservation};
pub(super) use crate::state::is_healthy;
use crate::state::time::timestamp_nanos;
use crate::state::{container_up, is_terminal};

/// Whether `period` has passed since `since` at `now`; never when `since` is unknown.
pub(super) fn elapsed(since: Option<&Timestamp>, period: i128, now: &Timestamp) -> bool {
    since.is_some_and(|since| timestamp_nanos(since).saturating_add(period) <= timestamp_nanos(now))
}

/// Healthy, and its last status change (to healthy) at least `period` ago.
pub(super) fn healthy_for(alloc: &Allocation, period: i128, now: &Timestamp) -> bool {
    is_healthy(alloc)
        && elapsed(
            alloc.status.as_ref().and_then(|s| s.updated_at.as_ref()),
            period,
            now,
        )
}

impl Planner<'_> {
    /// Whether `alloc` is a replacement in flight (see the module header).
    pub(super) fn is_replacement_in_flight(&self, alloc: &Allocation) -> bool {
        if alloc.previous_allocation_id.is_empty() || is_terminal(alloc) {
            return false;
        }
        self.state
            .allocation(&alloc.previous_allocation_id)
            .is_some_and(|old| {
                old.service_name == alloc.service_name
                    && is_live(self.state, old)
                    && !self.released.contains(&old.id)
            })
    }

    /// Live replacements of the service's allocations, by the id they replace; this
    /// plan's new ones included, released ones left out.
    pub(super) fn replacements(&self, service: &str) -> BTreeMap<String, Allocation> {
        let planned = self.upserts.iter().filter(|u| {
            u.service_name == service
                && self.state.allocation(&u.id).is_none()
                && !u.previous_allocation_id.is_empty()
                && !is_terminal(u)
                && !self.released.contains(&u.previous_allocation_id)
        });
        self.state
            .allocations_of_service(service)
            .filter(|a| !self.released.contains(&a.id) && self.is_replacement_in_flight(a))
            .chain(planned)
            .map(|a| (a.previous_allocation_id.clone(), a.clone()))
            .collect()
    }

    /// Slots of the service held by an allocation told to stop (before or by this plan)
    /// whose container is still up: no new allocation takes such a slot until the
    /// agent reports it stopped, so a stop-first update never runs the old and the new
    /// container side by side (they may share a node and its published ports) and the
    /// replica count is not exceeded meanwhile. Empty when nothing is `missing`.
    pub(super) fn stopping_slots(&self, service: &str, missing: usize) -> BTreeSet<u32> {
        if missing == 0 {
            return BTreeSet::new();
        }
        self.state
            .allocations_of_service(service)
            .filter(|a| {
                let stopped = a.desired_state() == AllocationDesiredState::Stop
                    || self.released.contains(&a.id);
                stopped && container_up(a)
            })
            .map(|a| a.slot)
            .collect()
    }

    /// Places a replacement for live `old` in its slot on the best eligible node (which
    /// is never a draining, cordoned or down one), at the service's current version.
    /// False when no node fits; nothing changes then.
    pub(super) fn place_replacement(
        &mut self,
        service: &Service,
        old: &Allocation,
        ids: &mut impl FnMut() -> String,
    ) -> bool {
        let Some(spec) = &service.spec else {
            return false;
        };
        let need = reservation(spec);
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        let state = self.state;
        let existing = state
            .allocations_of_service(&spec.name)
            .filter(|a| is_live(state, a) && !self.released.contains(&a.id));
        let planned = self
            .upserts
            .iter()
            .filter(|u| u.service_name == spec.name && !is_terminal(u));
        for alloc in existing.chain(planned) {
            *per_node.entry(alloc.node_id.clone()).or_default() += 1;
        }
        let Some(node_id) = self.best_node(spec, &need, &per_node) else {
            tracing::debug!(service = %spec.name, slot = old.slot, "scheduler: no node for a replacement");
            return false;
        };
        self.nodes.take(node_id, &need);
        let Some(usage) = self.nodes.get(node_id) else {
            return false;
        };
        let alloc = Allocation {
            id: ids(),
            service_name: spec.name.clone(),
            service_version: service.version,
            node_id: node_id.to_owned(),
            node_name: usage.name().to_owned(),
            slot: old.slot,
            desired_state: AllocationDesiredState::Run as i32,
            previous_allocation_id: old.id.clone(),
            reserved: Some(need),
            ..Default::default()
        };
        self.upserts.push(alloc);
        true
    }
}
