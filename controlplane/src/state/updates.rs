//! Rolling updates as the state sees them: the update status a spec change starts,
//! the specs of older versions kept while allocations still run them, and the
//! scheduler's update decisions (status changes, rollbacks) that a `Plan` carries, and
//! the operator's `RollbackService`.
//!
//! The state only records; when to replace which allocation, and when an update has
//! failed, is the scheduler's pure decision (`scheduler::update`).

use constellation_proto::v1::{
    ChangeKind, RollbackServiceCommand, Service, ServiceSpec, ServiceUpdateDecision,
    ServiceVersion, UpdateState, UpdateStatus, command_result::Outcome,
};
use pbjson_types::Timestamp;

use super::allocations::is_terminal;
use super::services::spec_hash;
use super::{OpResult, State, failed_precondition, not_found, outcome};

/// Hash of what makes up a container: the spec without `replicas` and `update`.
/// Allocations whose version has another runtime hash than the current spec are
/// replaced by a rolling update; scaling or changing the update policy replaces none.
pub fn runtime_hash(spec: &ServiceSpec) -> String {
    spec_hash(&runtime_part(spec))
}

/// Whether containers of `a` and of `b` differ: [`runtime_hash`]'s comparison, made
/// without encoding and hashing both (applying a spec compares a few of them).
pub fn runtime_differs(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    !std::ptr::eq(a, b) && runtime_part(a) != runtime_part(b)
}

/// `spec` without what changes no container: the replica count and the update policy.
fn runtime_part(spec: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        replicas: None,
        update: None,
        ..spec.clone()
    }
}

/// The spec and spec hash that allocations of `version` run: the current spec for the
/// current version, a retained one for an older version; `None` when not retained.
pub fn spec_of_version(service: &Service, version: u64) -> Option<(&ServiceSpec, &str)> {
    if version == service.version {
        return service
            .spec
            .as_ref()
            .map(|s| (s, service.spec_hash.as_str()));
    }
    service
        .retained_versions
        .iter()
        .find(|v| v.version == version)
        .and_then(|v| Some((v.spec.as_ref()?, v.spec_hash.as_str())))
}

/// Whether an update is moving allocations (not paused, not finished).
pub fn update_in_progress(service: &Service) -> bool {
    matches!(
        update_state(service),
        UpdateState::Updating | UpdateState::RollingBack
    )
}

/// The service's update state (UNSPECIFIED when no update has run).
pub fn update_state(service: &Service) -> UpdateState {
    service
        .status
        .as_ref()
        .and_then(|s| s.update.as_ref())
        .map_or(UpdateState::Unspecified, UpdateStatus::state)
}

impl State {
    /// Keeps the spec `before` ran (at `before.version`) among `service`'s retained
    /// versions, then drops the ones no live allocation runs any more.
    pub(super) fn retain_previous(&self, service: &mut Service, before: Option<&Service>) {
        if let Some(before) = before
            && let Some(spec) = &before.spec
            && before.version != service.version
            && !service
                .retained_versions
                .iter()
                .any(|v| v.version == before.version)
        {
            service.retained_versions.push(ServiceVersion {
                version: before.version,
                spec: Some(spec.clone()),
                spec_hash: before.spec_hash.clone(),
            });
        }
        self.prune_versions(service);
    }

    /// Drops retained versions that no non-terminal allocation of the service runs.
    pub(super) fn prune_versions(&self, service: &mut Service) {
        let Some(name) = service.spec.as_ref().map(|s| s.name.clone()) else {
            return;
        };
        let current = service.version;
        let used: std::collections::BTreeSet<u64> = self
            .allocations_of_service(&name)
            .filter(|a| !is_terminal(a))
            .map(|a| a.service_version)
            .collect();
        service
            .retained_versions
            .retain(|v| v.version != current && used.contains(&v.version));
    }

    /// The update status after `service` replaced `before`: UPDATING from the old to
    /// the new version when some live allocation runs another runtime spec (one whose
    /// version is not retained runs the current spec, as its assignment says); otherwise
    /// the old status, following the new version while an update is under way.
    pub(super) fn update_after_change(
        &self,
        before: Option<&Service>,
        service: &Service,
        now: Timestamp,
    ) -> Option<UpdateStatus> {
        let before = before?;
        let previous = before.status.as_ref().and_then(|s| s.update.clone());
        let spec = service.spec.as_ref()?;
        let runtime_changed = before
            .spec
            .as_ref()
            .is_none_or(|b| runtime_differs(b, spec));
        // Comparing every live allocation's spec is needed only when the runtime changed.
        let outdated = || {
            self.allocations_of_service(&spec.name)
                .filter(|a| !is_terminal(a))
                .any(|a| {
                    spec_of_version(service, a.service_version)
                        .is_some_and(|(s, _)| runtime_differs(s, spec))
                })
        };
        if runtime_changed && outdated() {
            let mut status = UpdateStatus {
                from_version: before.version,
                to_version: service.version,
                started_at: Some(now),
                ..Default::default()
            };
            status.set_state(UpdateState::Updating);
            return Some(status);
        }
        let mut status = previous?;
        if matches!(
            status.state(),
            UpdateState::Updating | UpdateState::RollingBack | UpdateState::Paused
        ) {
            status.to_version = service.version;
        }
        Some(status)
    }

    /// `before` with its previous spec applied as a new version (kept versions and
    /// counts as for any spec change); `None` without a previous spec.
    fn rolled_back(&self, before: &Service, now: Timestamp) -> Option<Service> {
        let previous = before.previous_spec.as_ref()?;
        let mut service = self.next_service(previous, Some(before), now);
        self.retain_previous(&mut service, Some(before));
        Some(service)
    }

    /// The operator's rollback: the previous spec as a new version, with update status
    /// ROLLING_BACK; the scheduler then replaces the replicas as for any update.
    pub(super) fn rollback_service(
        &mut self,
        cmd: &RollbackServiceCommand,
        now: Timestamp,
    ) -> OpResult {
        let Some(before) = self.services.get(&cmd.name).cloned() else {
            return Err(not_found("service", &cmd.name));
        };
        let Some(mut service) = self.rolled_back(&before, now) else {
            return Err(failed_precondition(format!(
                "service {:?} has no previous spec to roll back to",
                cmd.name
            )));
        };
        let mut status = UpdateStatus {
            from_version: before.version,
            to_version: service.version,
            message: "rolling back: requested".into(),
            started_at: Some(now),
            ..Default::default()
        };
        status.set_state(UpdateState::RollingBack);
        service.status.get_or_insert_with(Default::default).update = Some(status);
        self.services.insert(cmd.name.clone(), service.clone());
        self.emit_service(now, ChangeKind::Updated, service.clone());
        let mut result = outcome(Outcome::Service(service));
        result.changed = true;
        Ok(result)
    }

    /// Applies the scheduler's update decisions, each only while its service is still
    /// at the version it was decided for. A rollback applies the previous spec as a new
    /// version, with the decision's status (its `to_version` set to that version).
    pub(super) fn apply_update_decisions(
        &mut self,
        decisions: &[ServiceUpdateDecision],
        now: Timestamp,
    ) {
        for decision in decisions {
            let Some(before) = self.services.get(&decision.service_name) else {
                continue;
            };
            if before.version != decision.service_version {
                continue;
            }
            let mut status = decision.status.clone().unwrap_or_default();
            let mut service = if decision.rollback {
                let Some(service) = self.rolled_back(&before.clone(), now) else {
                    continue;
                };
                status.to_version = service.version;
                service
            } else {
                before.clone()
            };
            service.status.get_or_insert_with(Default::default).update = Some(status);
            if self.services.get(&decision.service_name) == Some(&service) {
                continue;
            }
            self.services
                .insert(decision.service_name.clone(), service.clone());
            self.emit_service(now, ChangeKind::Updated, service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::UpdatePolicy;
    use proptest::prelude::*;

    fn spec() -> impl Strategy<Value = ServiceSpec> {
        (
            0u8..2,
            proptest::option::of(0u32..3),
            0u8..2,
            proptest::option::of(1u32..3),
        )
            .prop_map(|(image, replicas, env, parallelism)| ServiceSpec {
                name: "web".into(),
                image: format!("web:{image}"),
                replicas,
                env: [("MODE".to_string(), env.to_string())].into(),
                update: parallelism.map(|parallelism| UpdatePolicy {
                    parallelism,
                    ..Default::default()
                }),
                ..Default::default()
            })
    }

    proptest! {
        /// The comparison without hashing agrees with the runtime hashes.
        #[test]
        fn runtime_differs_agrees_with_runtime_hash(a in spec(), b in spec()) {
            prop_assert_eq!(runtime_differs(&a, &b), runtime_hash(&a) != runtime_hash(&b));
        }
    }
}
