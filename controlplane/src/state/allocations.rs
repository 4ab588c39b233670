//! Allocations: scheduler `Plan`s, agents' `ReportStatus` batches, the by-node and
//! by-service indexes, and settling the derived counts (node `allocated`, drain
//! progress, service status) after allocations changed.
//!
//! Ownership of fields: a plan owns placement and intent (everything but `status` and
//! `created_at` of an existing allocation); status reports own `status`. A plan built
//! from a read that raced a report therefore never rolls the reported status back.

use std::collections::BTreeSet;

use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationEvent, AllocationReport, AllocationState,
    AllocationStatus, ChangeKind, HealthEvent, HealthState, PlanCommand, ReportStatusCommand,
    event::Payload,
};
use pbjson_types::Timestamp;

use super::{OpResult, State, done, invalid};

/// Terminal: desired STOP, or state LOST, STOPPED or FAILED. Terminal allocations
/// reserve no node resources, do not count as remaining on a draining node, and are
/// left out of listings unless `include_terminal` is asked for.
pub fn is_terminal(alloc: &Allocation) -> bool {
    alloc.desired_state() == AllocationDesiredState::Stop
        || alloc.status.as_ref().is_some_and(|s| {
            matches!(
                s.state(),
                AllocationState::Lost | AllocationState::Stopped | AllocationState::Failed
            )
        })
}

/// Healthy as the service status counts it (and drains and rolling updates wait for):
/// RUNNING, with its health check passing or none defined.
pub fn is_healthy(alloc: &Allocation) -> bool {
    alloc.status.as_ref().is_some_and(|s| {
        s.state() == AllocationState::Running
            && matches!(s.health(), HealthState::Healthy | HealthState::None)
    })
}

/// Whether the agent's last report says the allocation's container is up or coming
/// up. An allocation told to stop keeps its container until the agent reports it
/// STOPPED; one that never got past PENDING has none.
pub fn container_up(alloc: &Allocation) -> bool {
    alloc.status.as_ref().is_some_and(|s| {
        matches!(
            s.state(),
            AllocationState::Preparing
                | AllocationState::Starting
                | AllocationState::Running
                | AllocationState::Restarting
                | AllocationState::Exited
        )
    })
}

/// Nodes and services whose derived counts must be recomputed.
#[derive(Debug, Default)]
pub(super) struct Touched {
    pub(super) nodes: BTreeSet<String>,
    pub(super) services: BTreeSet<String>,
}

impl Touched {
    fn add(&mut self, alloc: &Allocation) {
        self.nodes.insert(alloc.node_id.clone());
        self.services.insert(alloc.service_name.clone());
    }
}

impl State {
    pub(super) fn plan(&mut self, cmd: &PlanCommand, now: Timestamp) -> OpResult {
        validate_plan(cmd)?;
        let mut touched = Touched::default();
        for upsert in &cmd.upserts {
            let alloc = self.planned(upsert, now);
            self.put_allocation(alloc, now, &mut touched);
        }
        for id in &cmd.removals {
            self.remove_allocation(id, now, &mut touched);
        }
        self.settle(touched, now);
        self.apply_update_decisions(&cmd.service_updates, now);
        Ok(done())
    }

    /// The allocation a plan's upsert makes: the plan's fields, but an existing
    /// allocation keeps its status and creation time.
    fn planned(&self, upsert: &Allocation, now: Timestamp) -> Allocation {
        let mut alloc = upsert.clone();
        match self.allocations.get(&upsert.id) {
            Some(existing) => {
                alloc.status.clone_from(&existing.status);
                alloc.created_at = existing.created_at;
            }
            None => {
                alloc.created_at.get_or_insert(now);
                alloc.status.get_or_insert_with(|| AllocationStatus {
                    state: AllocationState::Pending as i32,
                    updated_at: Some(now),
                    ..Default::default()
                });
            }
        }
        alloc
    }

    pub(super) fn report_status(&mut self, cmd: &ReportStatusCommand, now: Timestamp) -> OpResult {
        let mut touched = Touched::default();
        for report in &cmd.reports {
            self.apply_report(&cmd.node_id, report, now, &mut touched);
        }
        self.settle(touched, now);
        Ok(done())
    }

    /// Applies one report if its allocation exists on `node_id` and its status differs
    /// (ignoring `updated_at`); otherwise does nothing.
    fn apply_report(
        &mut self,
        node_id: &str,
        report: &AllocationReport,
        now: Timestamp,
        touched: &mut Touched,
    ) {
        let Some(reported) = &report.status else {
            return;
        };
        let Some(existing) = self.allocations.get(&report.allocation_id) else {
            return;
        };
        if existing.node_id != node_id {
            return;
        }
        let previous = existing.status.clone().unwrap_or_default();
        let mut status = reported.clone();
        // An agent reports a failed or lost allocation STOPPED once it has removed the
        // container; the failure is what explains the allocation, so it stays.
        if matches!(
            previous.state(),
            AllocationState::Failed | AllocationState::Lost
        ) && status.state() == AllocationState::Stopped
        {
            status.state = previous.state;
            if !previous.message.is_empty() {
                status.message.clone_from(&previous.message);
            }
        }
        status.updated_at = previous.updated_at;
        if status == previous {
            return;
        }
        status.updated_at = Some(now);
        let mut alloc = existing.clone();
        alloc.status = Some(status);
        // Once the control plane has given an allocation up (stopped, lost, failed) its
        // slot and resources may already be someone else's: a late report cannot bring
        // it back to life.
        if super::is_terminal(existing) && !super::is_terminal(&alloc) {
            return;
        }
        let health = HealthEvent {
            allocation_id: alloc.id.clone(),
            service_name: alloc.service_name.clone(),
            node_name: alloc.node_name.clone(),
            previous: previous.health,
            current: reported.health,
        };
        self.put_allocation(alloc, now, touched);
        if health.previous != health.current {
            self.emit(now, Payload::Health(health));
        }
    }

    /// Sets desired STOP on the given allocations (those not already STOP).
    pub(super) fn stop_allocations(&mut self, ids: &[String], now: Timestamp) -> Touched {
        let mut touched = Touched::default();
        for id in ids {
            let Some(alloc) = self.allocations.get(id) else {
                continue;
            };
            let mut alloc = alloc.clone();
            alloc.set_desired_state(AllocationDesiredState::Stop);
            self.put_allocation(alloc, now, &mut touched);
        }
        touched
    }

    /// Inserts or replaces an allocation, keeping the indexes; emits `AllocationEvent`
    /// CREATED/UPDATED unless it is identical to the stored one.
    pub(super) fn put_allocation(
        &mut self,
        alloc: Allocation,
        now: Timestamp,
        touched: &mut Touched,
    ) {
        let previous = self.allocations.get(&alloc.id);
        if previous == Some(&alloc) {
            return;
        }
        let kind = match previous {
            Some(_) => ChangeKind::Updated,
            None => ChangeKind::Created,
        };
        if let Some(previous) = self.allocations.remove(&alloc.id) {
            self.unindex(&previous);
            touched.add(&previous);
        }
        self.index(&alloc);
        touched.add(&alloc);
        self.allocations.insert(alloc.id.clone(), alloc.clone());
        self.emit_allocation(now, kind, alloc);
    }

    /// Removes an allocation if present; emits `AllocationEvent` DELETED.
    fn remove_allocation(&mut self, id: &str, now: Timestamp, touched: &mut Touched) {
        let Some(alloc) = self.allocations.remove(id) else {
            return;
        };
        self.unindex(&alloc);
        touched.add(&alloc);
        self.emit_allocation(now, ChangeKind::Deleted, alloc);
    }

    pub(super) fn index(&mut self, alloc: &Allocation) {
        let by_node = self
            .allocs_by_node
            .entry(alloc.node_id.clone())
            .or_default();
        by_node.insert(alloc.id.clone());
        let by_service = self
            .allocs_by_service
            .entry(alloc.service_name.clone())
            .or_default();
        by_service.insert(alloc.id.clone());
    }

    fn unindex(&mut self, alloc: &Allocation) {
        remove_from(&mut self.allocs_by_node, &alloc.node_id, &alloc.id);
        remove_from(&mut self.allocs_by_service, &alloc.service_name, &alloc.id);
    }

    /// Recomputes the derived counts of every touched node, then every touched
    /// service (node events first, each group in key order).
    pub(super) fn settle(&mut self, touched: Touched, now: Timestamp) {
        for node_id in &touched.nodes {
            self.settle_node(node_id, now);
        }
        for service in &touched.services {
            self.settle_service(service, now);
        }
    }

    pub(super) fn allocation_ids_of_service(&self, service: &str) -> Vec<String> {
        self.allocs_by_service
            .get(service)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn allocation_ids_of_node(&self, node_id: &str) -> Vec<String> {
        self.allocs_by_node
            .get(node_id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn emit_allocation(&mut self, now: Timestamp, kind: ChangeKind, alloc: Allocation) {
        let event = AllocationEvent {
            kind: kind as i32,
            allocation: Some(alloc),
        };
        self.emit(now, Payload::Allocation(event));
    }
}

fn remove_from(
    index: &mut std::collections::BTreeMap<String, BTreeSet<String>>,
    key: &str,
    id: &str,
) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// Every upsert needs an id, a service and a node; an id appears at most once. Every
/// update decision names a service, at most once.
fn validate_plan(cmd: &PlanCommand) -> Result<(), constellation_proto::v1::CommandError> {
    let mut seen = BTreeSet::new();
    for (i, alloc) in cmd.upserts.iter().enumerate() {
        let missing = [
            ("id", alloc.id.is_empty()),
            ("service_name", alloc.service_name.is_empty()),
            ("node_id", alloc.node_id.is_empty()),
        ];
        if let Some((field, _)) = missing.iter().find(|(_, empty)| *empty) {
            return Err(invalid(&format!("upserts[{i}].{field}"), "empty"));
        }
        if !seen.insert(alloc.id.as_str()) {
            return Err(invalid(
                &format!("upserts[{i}].id"),
                format!("allocation {:?} appears twice in the plan", alloc.id),
            ));
        }
    }
    let mut services = BTreeSet::new();
    for (i, decision) in cmd.service_updates.iter().enumerate() {
        if decision.service_name.is_empty() {
            return Err(invalid(
                &format!("service_updates[{i}].service_name"),
                "empty",
            ));
        }
        if !services.insert(decision.service_name.as_str()) {
            return Err(invalid(
                &format!("service_updates[{i}].service_name"),
                format!(
                    "service {:?} appears twice in the plan",
                    decision.service_name
                ),
            ));
        }
    }
    Ok(())
}
