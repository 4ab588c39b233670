//! Rolling updates: replacing the allocations of older versions in batches, gated on
//! health, and rolling back, pausing or going on when the new version fails.
//!
//! An allocation is *outdated* when its version's spec (kept in the service's
//! `retained_versions`) has another [`runtime_hash`] than the current spec; scaling or
//! changing the update policy outdates nothing. One plan, per service:
//!
//! 1. **Failures**, while the update status is UPDATING or ROLLING_BACK. A *new*
//!    allocation (current spec, created since the update started) has failed when it
//!    is FAILED, EXITED or RESTARTING, RUNNING with its health check failing, or not
//!    healthy `healthy_deadline` after it was created. When failed / replicas exceeds
//!    `max_failure_ratio`: ROLLBACK (the default) asks the state to apply the previous
//!    spec as a new version with status ROLLING_BACK; PAUSE sets PAUSED; CONTINUE goes
//!    on. A rollback that fails pauses.
//! 2. **Pairs.** A replacement in flight that is itself outdated (the spec changed
//!    again, or rolled back) is stopped. A current replacement of an outdated
//!    allocation that is healthy, or has failed while the update goes on (failures
//!    the ratio tolerates), ends the pair: the old one is stopped (start-first). While
//!    paused, a failed replacement is stopped instead and the old one stays.
//! 3. **The next batch.** Current allocations not yet healthy for `monitor` + `delay`
//!    (and not failed), plus replicas missing from the count, are in flight. While
//!    fewer than `parallelism` are, the lowest outdated slots are replaced: stop-first
//!    stops the old allocation (the replica step places the new one in the slot it
//!    freed once the agent reports the old container stopped); start-first places a
//!    replacement next to it.
//! 4. **Completion.** No outdated allocation left and nothing in flight: the status
//!    becomes COMPLETED (ROLLED_BACK after a rollback).
//!
//! So stop-first never leaves fewer than `replicas` − `parallelism` allocations
//! placed, and start-first never stops a healthy allocation before its replacement is
//! healthy. A PAUSED update moves nothing until a new spec is applied.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationState, FailureAction, HealthState, Service,
    ServiceSpec, ServiceUpdateDecision, UpdateOrder, UpdatePolicy, UpdateState, UpdateStatus,
};
use pbjson_types::{Duration, Timestamp};

use super::replace::{elapsed, healthy_for, is_healthy};
use super::{Planner, desired_replicas, is_live};
use crate::state::time::{duration_nanos, from_nanos, timestamp_nanos};
use crate::state::{State, runtime_hash, update_in_progress, update_state};

/// How long a new replica must stay healthy before the next batch when unset.
pub const DEFAULT_MONITOR: Duration = Duration {
    seconds: 5,
    nanos: 0,
};

/// How long a new replica may take to turn healthy when unset.
pub const DEFAULT_HEALTHY_DEADLINE: Duration = Duration {
    seconds: 120,
    nanos: 0,
};

/// Replacements of one service in flight at a time: the update policy's
/// `parallelism`, 1 when unset.
pub(super) fn parallelism(service: &Service) -> usize {
    let configured = service
        .spec
        .as_ref()
        .and_then(|s| s.update.as_ref())
        .map_or(0, |u| u.parallelism);
    configured.max(1) as usize
}

/// Why a new allocation counts as failed, or `None` while it has not failed.
pub(super) fn failure(
    alloc: &Allocation,
    healthy_deadline: i128,
    now: &Timestamp,
) -> Option<String> {
    let status = alloc.status.clone().unwrap_or_default();
    match status.state() {
        AllocationState::Failed | AllocationState::Exited | AllocationState::Restarting => {
            let mut why = format!("{:?}", status.state()).to_lowercase();
            if !status.message.is_empty() {
                why = format!("{why}: {}", status.message);
            }
            return Some(why);
        }
        AllocationState::Running if status.health() == HealthState::Unhealthy => {
            return Some("health check failing".into());
        }
        _ => {}
    }
    let waiting = !is_healthy(alloc) && alloc.desired_state() != AllocationDesiredState::Stop;
    (waiting && elapsed(alloc.created_at.as_ref(), healthy_deadline, now))
        .then(|| "not healthy within the healthy deadline".into())
}

/// The service's update policy with defaults filled in, as nanoseconds.
pub(super) struct Timing {
    monitor: i128,
    delay: i128,
    pub(super) healthy_deadline: i128,
}

pub(super) fn timing(policy: &UpdatePolicy) -> Timing {
    let or = |d: Option<Duration>, default: Duration| {
        duration_nanos(&d.filter(|d| duration_nanos(d) > 0).unwrap_or(default))
    };
    Timing {
        monitor: or(policy.monitor, DEFAULT_MONITOR),
        delay: policy
            .delay
            .as_ref()
            .map_or(0, |d| duration_nanos(d).max(0)),
        healthy_deadline: or(policy.healthy_deadline, DEFAULT_HEALTHY_DEADLINE),
    }
}

/// The earliest time after `now` at which a drain or an update decision changes with
/// the state unchanged: a new replica's monitor (+ delay) period ending, a healthy
/// deadline, a drain deadline. `None` when nothing waits on time. Times may come early
/// (planning then changes nothing); none is late.
pub fn next_wake(state: &State, now: &Timestamp) -> Option<Timestamp> {
    let mut times: Vec<i128> = Vec::new();
    for service in state.services() {
        let Some(spec) = &service.spec else {
            continue;
        };
        let timing = timing(&spec.update.unwrap_or_default());
        let gate = timing.monitor.saturating_add(timing.delay);
        let in_progress = update_in_progress(service);
        let outdated = outdated_versions(service, spec);
        let live = state
            .allocations_of_service(&spec.name)
            .filter(|a| is_live(state, a) && !outdated.contains(&a.service_version));
        for alloc in live {
            let replacement = !alloc.previous_allocation_id.is_empty();
            if !in_progress && !replacement {
                continue;
            }
            if is_healthy(alloc) {
                let since = alloc.status.as_ref().and_then(|s| s.updated_at.as_ref());
                times.extend(since.map(|t| timestamp_nanos(t).saturating_add(gate)));
            } else {
                let placed = alloc.created_at.as_ref();
                times.extend(
                    placed.map(|t| timestamp_nanos(t).saturating_add(timing.healthy_deadline)),
                );
            }
        }
    }
    for node in state.nodes().filter(|n| super::drain::drain_pending(n)) {
        times.extend(
            node.drain
                .and_then(|d| d.deadline)
                .as_ref()
                .map(timestamp_nanos),
        );
    }
    let now = timestamp_nanos(now);
    times.into_iter().filter(|t| *t > now).min().map(from_nanos)
}

/// The retained versions whose spec has another runtime hash than `spec` (the
/// service's current one): their allocations are outdated.
fn outdated_versions(service: &Service, spec: &ServiceSpec) -> BTreeSet<u64> {
    if service.retained_versions.is_empty() {
        return BTreeSet::new();
    }
    let current = runtime_hash(spec);
    service
        .retained_versions
        .iter()
        .filter(|v| v.spec.as_ref().map(runtime_hash).as_ref() != Some(&current))
        .map(|v| v.version)
        .collect()
}

impl<'a> Planner<'a> {
    /// One plan's step of the service's rolling update (see the module header).
    pub(super) fn roll(
        &mut self,
        service: &'a Service,
        now: &Timestamp,
        ids: &mut impl FnMut() -> String,
    ) {
        let Some(spec) = &service.spec else {
            return;
        };
        let in_progress = update_in_progress(service);
        if service.retained_versions.is_empty() && !in_progress {
            return;
        }
        let policy = spec.update.unwrap_or_default();
        let timing = timing(&policy);
        let outdated_versions = outdated_versions(service, spec);
        let outdated = |a: &Allocation| outdated_versions.contains(&a.service_version);
        // Runs the current spec for sure: its version's spec is known to be the same.
        let up_to_date = |a: &Allocation| {
            a.service_version == service.version
                || service.retained_versions.iter().any(|v| {
                    v.version == a.service_version && !outdated_versions.contains(&v.version)
                })
        };
        let name = spec.name.as_str();

        // 1. Failures.
        let status = service
            .status
            .as_ref()
            .and_then(|s| s.update.clone())
            .unwrap_or_default();
        let desired = desired_replicas(spec);
        if in_progress && self.act_on_failures(service, &status, &policy, &timing, now, &up_to_date)
        {
            return;
        }

        // 2. Pairs. A failed replacement is tolerated (its old allocation stops) while
        // the update runs: too many failures were acted on above. Otherwise (paused)
        // it is given up and the old allocation keeps its slot.
        let replacements = self.replacements(name);
        for (old_id, new) in &replacements {
            let Some(old) = self.state.allocation(old_id) else {
                continue;
            };
            if self.released.contains(&old.id) || self.released.contains(&new.id) {
                continue;
            }
            let failed = failure(new, timing.healthy_deadline, now).is_some();
            if outdated(new) || (failed && !in_progress) {
                if self.state.allocation(&new.id).is_some() {
                    self.stop(new);
                }
            } else if outdated(old) && (is_healthy(new) || failed) {
                self.stop(old);
            }
        }
        if update_state(service) == UpdateState::Paused {
            return;
        }

        // 3. The next batch.
        let state = self.state;
        let live: Vec<&Allocation> = state
            .allocations_of_service(name)
            .filter(|a| is_live(state, a) && !self.released.contains(&a.id))
            .collect();
        let gate = timing.monitor.saturating_add(timing.delay);
        let placed = live
            .iter()
            .filter(|a| !self.is_replacement_in_flight(a))
            .count();
        let missing = desired.saturating_sub(placed);
        let settling = live
            .iter()
            .filter(|a| {
                !outdated(a)
                    && !healthy_for(a, gate, now)
                    && failure(a, timing.healthy_deadline, now).is_none()
            })
            .count();
        let planned = self
            .upserts
            .iter()
            .filter(|u| u.service_name == name && state.allocation(&u.id).is_none())
            .count();
        let in_flight = settling + missing + planned;
        let replaced = self.replacements(name);
        let mut candidates: Vec<&Allocation> = live
            .iter()
            .copied()
            .filter(|a| outdated(a) && !replaced.contains_key(&a.id))
            .collect();
        candidates.sort_by(|a, b| (a.slot, &a.id).cmp(&(b.slot, &b.id)));
        let budget = parallelism(service).saturating_sub(in_flight);
        let start_first = policy.order() == UpdateOrder::StartFirst;
        for old in candidates.iter().take(budget) {
            if start_first {
                self.place_replacement(service, old, ids);
            } else {
                self.stop(old);
            }
        }

        // 4. Completion.
        let any_outdated = live.iter().any(|a| outdated(a));
        if in_progress && !any_outdated && in_flight == 0 {
            let mut done = status.clone();
            if status.state() == UpdateState::RollingBack {
                done.set_state(UpdateState::RolledBack);
                done.message = done.message.replacen("rolling back:", "rolled back:", 1);
            } else {
                done.set_state(UpdateState::Completed);
            }
            done.completed_at = Some(*now);
            self.decide(service, done, false);
        }
    }

    /// Applies the failure action when too many new allocations failed; true when the
    /// update stops here for this plan (rolled back or paused).
    fn act_on_failures(
        &mut self,
        service: &Service,
        status: &UpdateStatus,
        policy: &UpdatePolicy,
        timing: &Timing,
        now: &Timestamp,
        up_to_date: &impl Fn(&Allocation) -> bool,
    ) -> bool {
        let Some(spec) = &service.spec else {
            return false;
        };
        let started = status
            .started_at
            .as_ref()
            .map_or(i128::MIN, timestamp_nanos);
        let failed: Vec<(&Allocation, String)> = self
            .state
            .allocations_of_service(&spec.name)
            .filter(|a| {
                up_to_date(a)
                    && a.created_at
                        .as_ref()
                        .is_some_and(|c| timestamp_nanos(c) >= started)
            })
            .filter_map(|a| Some((a, failure(a, timing.healthy_deadline, now)?)))
            .collect();
        let replicas = desired_replicas(spec).max(1);
        let ratio = policy.max_failure_ratio.clamp(0.0, 1.0);
        let too_many = failed.len() as f64 / replicas as f64 > ratio;
        let Some((first, why)) = failed.first().filter(|_| too_many) else {
            return false;
        };
        let cause = format!(
            "{} of {} new replicas failed (allocation {} on {}: {why})",
            failed.len(),
            replicas,
            first.id,
            first.node_name
        );
        let rolling_back = status.state() == UpdateState::RollingBack;
        let action = policy.failure_action();
        if !rolling_back && action == FailureAction::Continue {
            return false;
        }
        let rollback = !rolling_back
            && matches!(action, FailureAction::Rollback | FailureAction::Unspecified)
            && service.previous_spec.is_some();
        let mut next = UpdateStatus {
            from_version: service.version,
            started_at: Some(*now),
            ..Default::default()
        };
        if rollback {
            next.set_state(UpdateState::RollingBack);
            next.message = format!("rolling back: {cause}");
        } else {
            next = status.clone();
            next.set_state(UpdateState::Paused);
            next.message = if rolling_back {
                format!("rollback paused: {cause}")
            } else {
                format!("paused: {cause}")
            };
        }
        self.decide(service, next, rollback);
        true
    }

    fn decide(&mut self, service: &Service, status: UpdateStatus, rollback: bool) {
        let Some(spec) = &service.spec else {
            return;
        };
        self.service_updates.push(ServiceUpdateDecision {
            service_name: spec.name.clone(),
            service_version: service.version,
            status: Some(status),
            rollback,
        });
    }
}
