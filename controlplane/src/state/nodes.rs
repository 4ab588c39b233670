//! Nodes: registration, status (a node going DOWN loses its allocations),
//! availability (cordon, drain), and the derived `allocated` resources and drain
//! progress.

use constellation_proto::v1::{
    Allocation, AllocationState, ChangeKind, DrainStatus, Node, NodeAvailability, NodeEvent,
    NodeResources, NodeStatus, RegisterNodeCommand, SetNodeAvailabilityCommand,
    SetNodeStatusCommand, command_result::Outcome, event::Payload,
};
use pbjson_types::{Duration, Timestamp};

use super::allocations::{Touched, container_up, is_terminal};
use super::{OpResult, State, already_exists, invalid, not_found, outcome, time};

/// How long a drain may take when the command does not say.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration {
    seconds: 3600,
    nanos: 0,
};

/// Status message of allocations lost with their node.
const LOST_MESSAGE: &str = "node went down";

impl State {
    pub(super) fn register_node(&mut self, cmd: &RegisterNodeCommand, now: Timestamp) -> OpResult {
        let description = cmd
            .description
            .as_ref()
            .ok_or_else(|| invalid("description", "missing"))?;
        if cmd.node_id.is_empty() {
            return Err(invalid("node_id", "empty"));
        }
        if description.name.is_empty() {
            return Err(invalid("description.name", "empty"));
        }
        if let Some(owner) = self.node_names.get(&description.name)
            && *owner != cmd.node_id
        {
            return Err(already_exists(format!(
                "node name {:?} is registered to another node id",
                description.name
            )));
        }
        let existing = self.nodes.get(&cmd.node_id);
        let kind = if existing.is_some() {
            ChangeKind::Updated
        } else {
            ChangeKind::Created
        };
        let mut node = existing.cloned().unwrap_or_else(|| Node {
            id: cmd.node_id.clone(),
            availability: NodeAvailability::Active as i32,
            registered_at: Some(now),
            ..Default::default()
        });
        node.description = Some(description.clone());
        node.set_status(NodeStatus::Ready);
        node.status_message.clear();
        node.last_seen = Some(now);
        let node = self.with_derived(node);
        self.put_node(node.clone(), kind, now);
        Ok(outcome(Outcome::Node(node)))
    }

    pub(super) fn set_node_status(
        &mut self,
        cmd: &SetNodeStatusCommand,
        now: Timestamp,
    ) -> OpResult {
        if !self.nodes.contains_key(&cmd.node_id) {
            return Err(not_found("node", &cmd.node_id));
        }
        let status = match NodeStatus::try_from(cmd.status) {
            Ok(NodeStatus::Unspecified) => NodeStatus::Unknown,
            Ok(status) => status,
            Err(_) => return Err(invalid("status", "unknown value")),
        };
        let touched = match status {
            NodeStatus::Down => self.lose_allocations(&cmd.node_id, now),
            _ => Touched::default(),
        };
        let mut node = self.nodes.get(&cmd.node_id).cloned().unwrap_or_default();
        node.set_status(status);
        node.status_message.clone_from(&cmd.message);
        if cmd.last_seen.is_some() {
            node.last_seen = cmd.last_seen;
        }
        let node = self.with_derived(node);
        self.put_node(node.clone(), ChangeKind::Updated, now);
        self.settle(touched, now);
        Ok(outcome(Outcome::Node(node)))
    }

    /// Marks the node's non-terminal allocations LOST (the scheduler replaces them),
    /// and those told to stop whose container was still up (no report of their stop
    /// will come, and a drain waits for them); the caller settles the returned nodes
    /// and services.
    fn lose_allocations(&mut self, node_id: &str, now: Timestamp) -> Touched {
        let mut touched = Touched::default();
        for id in self.allocation_ids_of_node(node_id) {
            let lost = |a: &&Allocation| !is_terminal(a) || container_up(a);
            let Some(alloc) = self.allocations.get(&id).filter(lost) else {
                continue;
            };
            let mut alloc = alloc.clone();
            let status = alloc.status.get_or_insert_with(Default::default);
            status.set_state(AllocationState::Lost);
            status.message = LOST_MESSAGE.to_owned();
            status.updated_at = Some(now);
            self.put_allocation(alloc, now, &mut touched);
        }
        touched
    }

    pub(super) fn set_node_availability(
        &mut self,
        cmd: &SetNodeAvailabilityCommand,
        now: Timestamp,
    ) -> OpResult {
        let Some(id) = self.node_names.get(&cmd.name).cloned() else {
            return Err(not_found("node", &cmd.name));
        };
        let availability = match NodeAvailability::try_from(cmd.availability) {
            Ok(NodeAvailability::Unspecified) => NodeAvailability::Active,
            Ok(availability) => availability,
            Err(_) => return Err(invalid("availability", "unknown value")),
        };
        let deadline = cmd.drain_deadline.unwrap_or(DEFAULT_DRAIN_DEADLINE);
        if availability == NodeAvailability::Draining && !time::is_positive(&deadline) {
            return Err(invalid("drain_deadline", "must be positive"));
        }
        let mut node = self.nodes.get(&id).cloned().unwrap_or_default();
        node.set_availability(availability);
        node.drain = (availability == NodeAvailability::Draining).then(|| DrainStatus {
            // Draining again moves the deadline but keeps when the drain began.
            started_at: node.drain.and_then(|d| d.started_at).or(Some(now)),
            deadline: Some(time::add(now, &deadline)),
            batch_size: cmd.drain_batch_size.max(1),
            ..Default::default()
        });
        let node = self.with_derived(node);
        self.put_node(node.clone(), ChangeKind::Updated, now);
        Ok(outcome(Outcome::Node(node)))
    }

    /// Recomputes `allocated` (and drain progress while draining); emits `NodeEvent`
    /// UPDATED when it changed. No-op for an unknown node.
    pub(super) fn settle_node(&mut self, node_id: &str, now: Timestamp) {
        let Some(node) = self.nodes.get(node_id) else {
            return;
        };
        let node = self.with_derived(node.clone());
        self.put_node(node, ChangeKind::Updated, now);
    }

    /// The node with `allocated` and drain progress recomputed from its allocations.
    fn with_derived(&self, mut node: Node) -> Node {
        node.allocated = Some(self.reserved_on(&node.id));
        node.drain = node.drain.map(|d| self.drain_progress(&node.id, d));
        node
    }

    /// Sum of the resources reserved by the node's non-terminal allocations.
    fn reserved_on(&self, node_id: &str) -> NodeResources {
        let mut total = NodeResources::default();
        for alloc in self
            .allocations_of_node(node_id)
            .filter(|a| !is_terminal(a))
        {
            let reserved = alloc.reserved.unwrap_or_default();
            total.cpu_millis = total.cpu_millis.saturating_add(reserved.cpu_millis);
            total.memory_bytes = total.memory_bytes.saturating_add(reserved.memory_bytes);
        }
        total
    }

    /// `remaining` = the node's allocations that are still wanted there or whose
    /// container still runs (told to stop, not yet reported stopped); `completed` when
    /// none is left.
    fn drain_progress(&self, node_id: &str, mut drain: DrainStatus) -> DrainStatus {
        let remaining = self
            .allocations_of_node(node_id)
            .filter(|a| !is_terminal(a) || container_up(a))
            .count();
        drain.remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
        drain.completed = remaining == 0;
        drain
    }

    /// Stores the node (keeping the name index) and emits a `NodeEvent`, unless it is
    /// identical to the stored one.
    fn put_node(&mut self, node: Node, kind: ChangeKind, now: Timestamp) {
        let previous = self.nodes.get(&node.id);
        if previous == Some(&node) {
            return;
        }
        if let Some(old_name) = previous
            .and_then(|n| n.description.as_ref())
            .map(|d| d.name.clone())
        {
            self.node_names.remove(&old_name);
        }
        if let Some(description) = &node.description {
            self.node_names
                .insert(description.name.clone(), node.id.clone());
        }
        self.nodes.insert(node.id.clone(), node.clone());
        let event = NodeEvent {
            kind: kind as i32,
            node: Some(node),
        };
        self.emit(now, Payload::Node(event));
    }
}
