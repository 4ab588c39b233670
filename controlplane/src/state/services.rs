//! Services: `ApplyService` and `DeleteService`, the spec hash, and the service status
//! counts derived from the service's allocations.

use constellation_proto::v1::{
    AllocationState, ApplyServiceCommand, ChangeKind, DeleteServiceCommand, Service, ServiceEvent,
    ServiceSpec, ServiceStatus, command_result::Outcome, event::Payload,
};
use pbjson_types::Timestamp;
use prost::Message;
use sha2::{Digest, Sha256};

use super::{OpResult, State, failed_precondition, invalid, not_found, outcome};

/// Hex SHA-256 of the spec's protobuf encoding (maps are `BTreeMap`s, so the encoding
/// is canonical for equal specs).
pub fn spec_hash(spec: &ServiceSpec) -> String {
    hex_sha256(&spec.encode_to_vec())
}

/// Lower-case hex SHA-256 of `data`.
pub(super) fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Replicas the spec asks for: absent means 1.
fn desired_replicas(spec: &ServiceSpec) -> u32 {
    spec.replicas.unwrap_or(1)
}

impl State {
    pub(super) fn apply_service(&mut self, cmd: &ApplyServiceCommand, now: Timestamp) -> OpResult {
        let spec = cmd
            .spec
            .as_ref()
            .ok_or_else(|| invalid("spec", "missing"))?;
        if spec.name.is_empty() {
            return Err(invalid("spec.name", "empty"));
        }
        let current = self.services.get(&spec.name);
        check_expected_version(&spec.name, current, cmd.expected_version)?;
        if let Some(service) = current
            && service.spec.as_ref() == Some(spec)
        {
            return Ok(outcome(Outcome::Service(service.clone())));
        }
        let kind = if current.is_some() {
            ChangeKind::Updated
        } else {
            ChangeKind::Created
        };
        // `current` stays borrowed until the insert: the new service is built from it
        // without copying the old one first.
        let mut service = self.next_service(spec, current, now);
        self.retain_previous(&mut service, current);
        let update = self.update_after_change(current, &service, now);
        service
            .status
            .get_or_insert_with(ServiceStatus::default)
            .update = update;
        self.services.insert(spec.name.clone(), service.clone());
        self.emit_service(now, kind, service.clone());
        let mut result = outcome(Outcome::Service(service));
        result.changed = true;
        Ok(result)
    }

    /// The service after `spec` is applied over `current` (or created). Copies only
    /// what carries over: the old spec becomes the previous one, the old previous spec
    /// is dropped.
    pub(super) fn next_service(
        &self,
        spec: &ServiceSpec,
        current: Option<&Service>,
        now: Timestamp,
    ) -> Service {
        let mut service = match current {
            Some(current) => Service {
                spec: None,
                previous_spec: current.spec.clone(),
                spec_hash: String::new(),
                version: current.version,
                created_at: current.created_at,
                updated_at: None,
                status: current.status.clone(),
                retained_versions: current.retained_versions.clone(),
            },
            None => Service {
                created_at: Some(now),
                ..Default::default()
            },
        };
        service.spec_hash = spec_hash(spec);
        service.updated_at = Some(now);
        service.spec = Some(spec.clone());
        service.version = service.version.saturating_add(1);
        let (running, healthy) = self.running_and_healthy(&spec.name);
        let status = service.status.get_or_insert_with(ServiceStatus::default);
        status.desired = desired_replicas(spec);
        status.running = running;
        status.healthy = healthy;
        service
    }

    pub(super) fn delete_service(
        &mut self,
        cmd: &DeleteServiceCommand,
        now: Timestamp,
    ) -> OpResult {
        let Some(service) = self.services.remove(&cmd.name) else {
            return Err(not_found("service", &cmd.name));
        };
        let ids = self.allocation_ids_of_service(&cmd.name);
        let touched = self.stop_allocations(&ids, now);
        self.settle(touched, now);
        self.emit_service(now, ChangeKind::Deleted, service);
        Ok(super::done())
    }

    /// Recomputes the service's running/healthy counts from its allocations and drops
    /// retained versions no allocation runs; emits `ServiceEvent` UPDATED when that
    /// changed anything. No-op for an unknown service.
    pub(super) fn settle_service(&mut self, name: &str, now: Timestamp) {
        let Some(service) = self.services.get(name) else {
            return;
        };
        let mut settled = service.clone();
        let (running, healthy) = self.running_and_healthy(name);
        let status = settled.status.get_or_insert_with(ServiceStatus::default);
        status.running = running;
        status.healthy = healthy;
        self.prune_versions(&mut settled);
        if self.services.get(name) == Some(&settled) {
            return;
        }
        self.services.insert(name.to_owned(), settled.clone());
        self.emit_service(now, ChangeKind::Updated, settled);
    }

    /// Running = state RUNNING; healthy = RUNNING and health HEALTHY or NONE.
    fn running_and_healthy(&self, name: &str) -> (u32, u32) {
        let (mut running, mut healthy) = (0u32, 0u32);
        for alloc in self.allocations_of_service(name) {
            let Some(status) = &alloc.status else {
                continue;
            };
            if status.state() != AllocationState::Running {
                continue;
            }
            running = running.saturating_add(1);
            if super::is_healthy(alloc) {
                healthy = healthy.saturating_add(1);
            }
        }
        (running, healthy)
    }

    pub(super) fn emit_service(&mut self, now: Timestamp, kind: ChangeKind, service: Service) {
        let event = ServiceEvent {
            kind: kind as i32,
            service: Some(service),
        };
        self.emit(now, Payload::Service(event));
    }
}

/// `Some(0)`: the service must not exist; `Some(n)`: it must be at version `n`.
fn check_expected_version(
    name: &str,
    current: Option<&Service>,
    expected: Option<u64>,
) -> Result<(), constellation_proto::v1::CommandError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = current.map_or(0, |s| s.version);
    if actual == expected {
        return Ok(());
    }
    Err(failed_precondition(match (expected, current) {
        (0, _) => format!("service {name:?} already exists"),
        (_, None) => format!("service {name:?} does not exist (expected version {expected})"),
        _ => format!("service {name:?} is at version {actual}, not {expected}"),
    }))
}
