//! The scheduler: turns the desired state (services and their replica counts) and the
//! observed state (nodes, allocations) into a [`PlanCommand`].
//!
//! [`plan`] is a pure function of the state (ids are injected), so the same state
//! always gives the same plan and tests can drive it without a cluster. The leader
//! calls [`schedule_once`] on every tick; it reads the state, plans, and commits the
//! plan when there is one.
//!
//! # What one plan does
//!
//! 1. **Releases.** Allocations of deleted services are removed once the agent no
//!    longer runs them (status not RUNNING/STARTING), and asked to stop (desired STOP)
//!    while it still does. Services with more live allocations than replicas stop the
//!    extras, highest slots first. Released reservations are free for step 2 of the
//!    same plan (as the state counts them once the plan applies).
//! 2. **Placements.** Services with fewer live allocations than replicas get new ones
//!    in the lowest free slots, each on the best eligible node (see [`plan`]). A slot
//!    whose last allocation FAILED or was LOST is replaced under the service's
//!    reschedule policy ([`reschedule`]): perhaps later, perhaps never; the replacement
//!    names it in `previous_allocation_id`, and it is removed in the same plan.
//!
//! A live allocation is never moved: the only change a plan makes to one is desired
//! STOP. Applying a plan and planning again gives `None` (the plan is a fixpoint).
//!
//! Between the two, draining nodes move their allocations away ([`drain`]) and rolling
//! updates replace allocations of older versions ([`update`]): both place
//! *replacements* next to live allocations, which the replica count leaves out until
//! the allocation they replace is stopped ([`replace`]).
//!
//! Later work (reporting unplaceable replicas) adds steps to the private `Planner`
//! without changing this shape.

mod drain;
mod index;
mod replace;
pub mod reschedule;
#[cfg(test)]
mod tests;
mod update;

use std::collections::{BTreeMap, BTreeSet};

use constellation_proto::v1::{
    self as pb, Allocation, AllocationDesiredState, AllocationState, ConstraintOperator, Node,
    NodeAvailability, NodeResources, NodeStatus, PlanCommand, Service, ServiceSpec,
};

use crate::cluster::Cluster;
use crate::state::{State, is_terminal};
use crate::validate::{parse_cpus, parse_memory};
use pbjson_types::Timestamp;

/// Computes the next plan for `state`, or `None` when nothing needs to change.
///
/// `ids` generates the ids of new allocations, called once per placement in a
/// deterministic order (the leader passes uuid v4s; tests pass a counter).
///
/// A node is eligible for a new allocation of a service when it is READY and ACTIVE,
/// every placement constraint holds on it, it holds fewer than `max_per_node` live
/// allocations of the service (when set), and its free resources (capacity minus
/// `allocated` minus what this plan already placed, plus what it released) cover the
/// service's reservation. Among eligible nodes the best is, in order: the one whose
/// value of each `spreads` attribute holds the fewest allocations of the service, the
/// one with the fewest allocations of the service, the one with the fewest allocations
/// overall, the first by name.
///
/// `now` is the leader's wall clock; drains ([`drain`]) and rolling updates
/// ([`update`]) compare it with deadlines and health periods, reschedules
/// ([`reschedule`]) with their delays.
pub fn plan(
    state: &State,
    now: Timestamp,
    ids: &mut impl FnMut() -> String,
) -> Option<PlanCommand> {
    plan_with_wake(state, now, ids).plan
}

/// A plan, and when the same state needs planning again because time passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub plan: Option<PlanCommand>,
    /// The earliest time a delayed reschedule comes due ([`reschedule`]), or a drain or
    /// rolling update waits for ([`update::next_wake`]).
    pub wake_at: Option<Timestamp>,
}

/// [`plan`], with the time at which the state, unchanged, needs another plan.
pub fn plan_with_wake(state: &State, now: Timestamp, ids: &mut impl FnMut() -> String) -> Planned {
    let mut planner = Planner::new(state);
    planner.release_orphans();
    for service in state.services() {
        planner.scale_down(service);
    }
    planner.drain(&now, ids);
    for service in state.services() {
        planner.roll(service, &now, ids);
    }
    for service in state.services() {
        planner.scale_up(service, &now, ids);
    }
    let wake_at = [planner.wake_at, update::next_wake(state, &now)]
        .into_iter()
        .flatten()
        .min_by_key(|t| (t.seconds, t.nanos));
    Planned {
        plan: planner.finish(),
        wake_at,
    }
}

/// What the leader does after one [`schedule_once`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scheduled {
    /// Plan again on the next tick.
    Again,
    /// Plan again when the state changes, or once `wake_at` (wall clock) has come.
    Settled { wake_at: Option<Timestamp> },
}

/// Plans against the leader's state and commits the plan, if any. Settled when the
/// state needed nothing or the plan was committed, with the plan's wake time
/// ([`Planned::wake_at`]); errors are logged and answer `Again`, so the leader plans
/// again on its next tick.
pub async fn schedule_once(cluster: &Cluster) -> Scheduled {
    let now = crate::cluster::now();
    let planned = cluster
        .read(pb::ReadConsistency::Stale, |s| {
            plan_with_wake(s, now, &mut || uuid::Uuid::new_v4().to_string())
        })
        .await;
    let Planned { plan, wake_at } = match planned {
        Ok(planned) => planned,
        Err(e) => {
            tracing::warn!(error = %e, "scheduler: read state");
            return Scheduled::Again;
        }
    };
    let settled = Scheduled::Settled { wake_at };
    let plan = match plan {
        Some(plan) => plan,
        None => return settled,
    };
    let (upserts, removals) = (plan.upserts.len(), plan.removals.len());
    let command = pb::Command {
        op: Some(pb::command::Op::Plan(plan)),
        ..Default::default()
    };
    match cluster.write(command).await {
        Ok(_) => {
            tracing::debug!(upserts, removals, "scheduler: plan committed");
            settled
        }
        Err(e) => {
            tracing::warn!(error = %e, "scheduler: could not commit plan");
            Scheduled::Again
        }
    }
}

/// Replicas the spec asks for: absent means 1.
fn desired_replicas(spec: &ServiceSpec) -> usize {
    spec.replicas.unwrap_or(1) as usize
}

/// What one replica of the service reserves on its node: the reservation, else the
/// limit, else nothing. Unparseable quantities (validation refuses them) reserve 0.
pub fn reservation(spec: &ServiceSpec) -> NodeResources {
    let Some(resources) = &spec.resources else {
        return NodeResources::default();
    };
    let pick = |reservation: &str, limit: &str| {
        if reservation.is_empty() {
            limit.to_owned()
        } else {
            reservation.to_owned()
        }
    };
    let cpus = pick(&resources.cpu_reservation, &resources.cpus);
    let memory = pick(&resources.memory_reservation, &resources.memory_limit);
    let parse = |s: &str, f: fn(&str) -> Result<u64, String>| {
        if s.is_empty() {
            return 0;
        }
        f(s).unwrap_or_else(|e| {
            tracing::debug!(service = %spec.name, error = %e, "scheduler: bad resource quantity");
            0
        })
    };
    NodeResources {
        cpu_millis: parse(&cpus, parse_cpus),
        memory_bytes: parse(&memory, parse_memory),
    }
}

/// The value of a constraint or spread attribute on a node: `node.name`, `node.id`,
/// `node.labels.<key>`. `None` when the node has no such attribute.
fn attribute<'a>(node: &'a Node, attribute: &str) -> Option<&'a str> {
    let description = node.description.as_ref();
    match attribute {
        "node.name" => description.map(|d| d.name.as_str()),
        "node.id" => Some(node.id.as_str()),
        _ => {
            let key = attribute.strip_prefix("node.labels.")?;
            description?.labels.get(key).map(String::as_str)
        }
    }
}

/// Whether every placement constraint of `spec` holds on `node`.
fn constraints_hold(spec: &ServiceSpec, node: &Node) -> bool {
    let Some(placement) = &spec.placement else {
        return true;
    };
    placement.constraints.iter().all(|c| {
        let value = attribute(node, &c.attribute);
        let in_set = || value.is_some_and(|v| c.value.split(',').any(|item| item.trim() == v));
        match c.operator() {
            ConstraintOperator::Unspecified | ConstraintOperator::Equal => {
                value == Some(c.value.as_str())
            }
            ConstraintOperator::NotEqual => value != Some(c.value.as_str()),
            ConstraintOperator::In => in_set(),
            ConstraintOperator::NotIn => !in_set(),
            ConstraintOperator::Exists => value.is_some(),
            ConstraintOperator::NotExists => value.is_none(),
        }
    })
}

/// Whether new allocations may go to the node at all (READY and ACTIVE).
fn accepts_new(node: &Node) -> bool {
    node.status() == NodeStatus::Ready
        && matches!(
            node.availability(),
            NodeAvailability::Active | NodeAvailability::Unspecified
        )
}

/// Live: not terminal (so desired RUN) and on a known node that is not DOWN. Live
/// allocations count towards the service's replicas and are never moved.
fn is_live(state: &State, alloc: &Allocation) -> bool {
    !is_terminal(alloc)
        && state
            .node_by_id(&alloc.node_id)
            .is_some_and(|n| n.status() != NodeStatus::Down)
}

fn is_running(alloc: &Allocation) -> bool {
    alloc.status.as_ref().is_some_and(|s| {
        matches!(
            s.state(),
            AllocationState::Running | AllocationState::Starting
        )
    })
}

/// A node as this plan sees it: what the state says plus what the plan changed.
#[derive(Debug)]
struct NodeUsage<'a> {
    node: &'a Node,
    /// Resources reserved by non-terminal allocations, after this plan.
    used: NodeResources,
    /// Non-terminal allocations (of every service), after this plan.
    allocations: usize,
}

impl NodeUsage<'_> {
    fn fits(&self, need: &NodeResources) -> bool {
        let capacity = self
            .node
            .description
            .as_ref()
            .and_then(|d| d.capacity)
            .unwrap_or_default();
        self.used.cpu_millis.saturating_add(need.cpu_millis) <= capacity.cpu_millis
            && self.used.memory_bytes.saturating_add(need.memory_bytes) <= capacity.memory_bytes
    }

    fn name(&self) -> &str {
        self.node
            .description
            .as_ref()
            .map_or("", |d| d.name.as_str())
    }
}

/// One planning pass: the state, the plan so far, and the node usage it implies.
struct Planner<'a> {
    state: &'a State,
    /// By node id, with the indexes placements search.
    nodes: index::Nodes<'a>,
    /// The state's allocations per service, read once.
    allocs: index::Allocations<'a>,
    upserts: Vec<Allocation>,
    removals: Vec<String>,
    /// Rolling update status changes and rollbacks ([`update`]).
    service_updates: Vec<pb::ServiceUpdateDecision>,
    /// Ids of allocations this plan stopped or removed.
    released: BTreeSet<String>,
    /// The earliest time a reschedule this plan held back comes due.
    wake_at: Option<Timestamp>,
}

impl<'a> Planner<'a> {
    fn new(state: &'a State) -> Self {
        let allocs = index::Allocations::new(state);
        let nodes = index::Nodes::new(state.nodes().map(|node| NodeUsage {
            node,
            used: node.allocated.unwrap_or_default(),
            allocations: allocs.on_node(&node.id),
        }));
        Self {
            state,
            nodes,
            allocs,
            upserts: Vec::new(),
            removals: Vec::new(),
            service_updates: Vec::new(),
            released: BTreeSet::new(),
            wake_at: None,
        }
    }

    fn finish(self) -> Option<PlanCommand> {
        let empty =
            self.upserts.is_empty() && self.removals.is_empty() && self.service_updates.is_empty();
        (!empty).then_some(PlanCommand {
            upserts: self.upserts,
            removals: self.removals,
            service_updates: self.service_updates,
        })
    }

    /// Gives back the node resources of an allocation this plan stops or removes.
    fn release(&mut self, alloc: &Allocation) {
        self.released.insert(alloc.id.clone());
        if is_terminal(alloc) {
            return;
        }
        let reserved = alloc.reserved.unwrap_or_default();
        self.nodes.give_back(&alloc.node_id, &reserved);
    }

    fn stop(&mut self, alloc: &Allocation) {
        self.release(alloc);
        let mut stopped = alloc.clone();
        stopped.set_desired_state(AllocationDesiredState::Stop);
        self.upserts.push(stopped);
    }

    fn remove(&mut self, alloc: &Allocation) {
        self.release(alloc);
        self.removals.push(alloc.id.clone());
    }

    /// Allocations of services that no longer exist: removed once the agent stopped
    /// them, told to stop while it has not.
    fn release_orphans(&mut self) {
        for alloc in self.allocs.orphans(self.state) {
            if !is_running(alloc) {
                self.remove(alloc);
            } else if alloc.desired_state() != AllocationDesiredState::Stop {
                self.stop(alloc);
            }
        }
    }

    /// The service's live allocations not released by this plan, by id; replacements
    /// in flight are left out (the allocation they replace holds their slot).
    fn live_of(&self, service: &str) -> Vec<&'a Allocation> {
        self.allocs
            .live_of_service(service)
            .iter()
            .copied()
            .filter(|a| !self.released.contains(&a.id))
            .filter(|a| !self.is_replacement_in_flight(a))
            .collect()
    }

    /// Stops live allocations beyond the replica count, highest slots first.
    fn scale_down(&mut self, service: &Service) {
        let Some(spec) = &service.spec else {
            return;
        };
        let mut live = self.live_of(&spec.name);
        let desired = desired_replicas(spec);
        if live.len() <= desired {
            return;
        }
        live.sort_by(|a, b| (b.slot, &b.id).cmp(&(a.slot, &a.id)));
        let extra = live.len() - desired;
        for alloc in live.into_iter().take(extra) {
            self.stop(alloc);
        }
    }

    /// Places new allocations for the missing replicas, lowest free slots first, then
    /// removes the FAILED and LOST allocations whose slot is live again. A slot whose
    /// last allocation failed or was lost is replaced under the service's reschedule
    /// policy: now, later (the slot stays empty until then), or never ([`reschedule`]).
    fn scale_up(&mut self, service: &Service, now: &Timestamp, ids: &mut impl FnMut() -> String) {
        let Some(spec) = &service.spec else {
            return;
        };
        let live = self.live_of(&spec.name);
        // Node id → live allocations of this service.
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for alloc in &live {
            *per_node.entry(alloc.node_id.clone()).or_default() += 1;
        }
        let mut slots: BTreeSet<u32> = live.iter().map(|a| a.slot).collect();
        let missing = desired_replicas(spec).saturating_sub(live.len());
        let need = reservation(spec);
        let rescheduled = self.rescheduled_by_slot(&spec.name);
        let stopping = self.stopping_slots(&spec.name, missing);
        let mut tally = None;
        let mut slot = 0u32;
        for _ in 0..missing {
            while slots.contains(&slot) {
                slot += 1;
            }
            if stopping.contains(&slot) {
                slots.insert(slot);
                continue;
            }
            let previous = rescheduled.get(&slot).copied();
            let attempt = match previous {
                None => 0,
                Some(previous) => match reschedule::decide(previous, spec, service.version, now) {
                    reschedule::Decision::Now { attempt } => attempt,
                    held => {
                        self.hold_slot(previous, &held, spec);
                        slots.insert(slot);
                        continue;
                    }
                },
            };
            let tally =
                tally.get_or_insert_with(|| index::Tally::new(spec, &per_node, &self.nodes));
            let Some(node_id) = self.nodes.best(spec, &need, tally) else {
                // Nothing changed since, so no later slot fits either.
                tracing::debug!(service = %spec.name, slot, "scheduler: no node fits");
                break;
            };
            tally.place(node_id, &need, &mut self.nodes);
            let Some(usage) = self.nodes.get(node_id) else {
                break; // best only returns known nodes
            };
            let alloc = Allocation {
                id: ids(),
                service_name: spec.name.clone(),
                service_version: service.version,
                node_id: node_id.to_owned(),
                node_name: usage.name().to_owned(),
                slot,
                desired_state: AllocationDesiredState::Run as i32,
                // The state fills in PENDING, stamped with the command's time.
                status: None,
                created_at: None,
                previous_allocation_id: previous.map(|p| p.id.clone()).unwrap_or_default(),
                reschedule_attempts: attempt,
                reserved: Some(need),
                desired_description: String::new(),
            };
            self.upserts.push(alloc);
            slots.insert(slot);
        }
        if rescheduled.is_empty() {
            return;
        }
        let replaced: BTreeSet<u32> = live
            .iter()
            .map(|a| a.slot)
            .chain(
                self.upserts
                    .iter()
                    .filter(|u| u.service_name == spec.name && !is_terminal(u))
                    .map(|u| u.slot),
            )
            .collect();
        let gone: Vec<&Allocation> = self
            .allocs
            .of_service(&spec.name)
            .iter()
            .copied()
            .filter(|a| {
                reschedule::is_rescheduled(a)
                    && !self.released.contains(&a.id)
                    && replaced.contains(&a.slot)
            })
            .collect();
        for alloc in gone {
            self.remove(alloc);
        }
    }

    /// The best eligible node for one more allocation of `spec` (see [`plan`]), whose
    /// live allocations per node id are `per_node`.
    fn best_node(
        &mut self,
        spec: &ServiceSpec,
        need: &NodeResources,
        per_node: &BTreeMap<String, usize>,
    ) -> Option<&'a str> {
        let tally = index::Tally::new(spec, per_node, &self.nodes);
        self.nodes.best(spec, need, &tally)
    }
}
