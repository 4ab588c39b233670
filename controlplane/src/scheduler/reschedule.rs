//! Rescheduling: when the replacement of a failed or lost allocation is placed, and
//! whether there is one at all, from the service's `reschedule` policy (Nomad's
//! reschedule block), as a pure function of the allocation, the spec and the time.
//!
//! An allocation is *rescheduled* when it is FAILED (it cannot run: bad image, bad
//! config) or LOST (its node went down) while the control plane still wants it
//! running, or STOPPED while it should run (the state keeps FAILED or LOST, and the
//! message, when the agent reports such an allocation STOPPED after cleaning up). Its
//! slot's replacement carries `previous_allocation_id` and `reschedule_attempts` (its
//! own attempt number), and the allocation it replaces is removed in the same plan.
//!
//! * **Attempts within the interval.** Each replacement's `reschedule_attempts` is the
//!   previous one's plus one, so the count follows the chain of replacements of a slot.
//!   An allocation that ran for longer than `interval` before it failed starts the
//!   count afresh (its replacement is attempt 1): a service that fails now and then is
//!   never given up on, one that fails as soon as it starts is. When the count has
//!   reached `attempts` (and `unlimited` is false), the slot is not replaced: the
//!   failed allocation stays, and its `desired_description` says why. Applying a
//!   changed spec (a new version, say with a fixed image) ends that: allocations of an
//!   older version are replaced at once, their count starting at 1.
//! * **Delay.** Attempt n + 1 waits `delay` (constant) or `delay × 2^n` (exponential,
//!   capped at `max_delay`), counted from when the allocation failed or was lost. While
//!   it waits, the slot stays empty (no other slot takes its place), the allocation's
//!   `desired_description` gives the time, and the planner reports that time so the
//!   leader plans again then ([`super::Planned::wake_at`]).
//! * **Without a policy** LOST allocations are replaced at once, without limit (fast
//!   failover is the point of the product), and FAILED ones after 5 s doubling up to
//!   5 min, without limit: a broken service costs one placement per backoff step
//!   rather than a storm of allocations.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationState, DelayFunction, ServiceSpec,
};
use pbjson_types::{Duration, Timestamp};

use super::Planner;
use crate::state::time::{duration_nanos, from_nanos, timestamp_nanos};

/// The first delay before replacing a FAILED allocation when the service has no policy.
pub const DEFAULT_FAILED_DELAY: Duration = Duration {
    seconds: 5,
    nanos: 0,
};

/// The longest exponential delay when the policy does not say (nor the service has
/// one).
pub const DEFAULT_MAX_DELAY: Duration = Duration {
    seconds: 300,
    nanos: 0,
};

/// A reschedule policy with its defaults filled in; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Attempts allowed within `interval`; `None` is unlimited.
    pub attempts: Option<u32>,
    /// `None`: every attempt of the chain counts.
    pub interval: Option<i128>,
    pub delay: i128,
    pub exponential: bool,
    pub max_delay: i128,
}

/// A duration in nanoseconds; negative ones count as zero.
fn non_negative(d: &Duration) -> i128 {
    duration_nanos(d).max(0)
}

/// The policy that governs replacing `lost` (else FAILED) allocations of `spec`.
pub fn policy(spec: &ServiceSpec, lost: bool) -> Policy {
    let Some(p) = &spec.reschedule else {
        return Policy {
            attempts: None,
            interval: None,
            delay: if lost {
                0
            } else {
                non_negative(&DEFAULT_FAILED_DELAY)
            },
            exponential: true,
            max_delay: non_negative(&DEFAULT_MAX_DELAY),
        };
    };
    Policy {
        attempts: (!p.unlimited).then_some(p.attempts),
        interval: p.interval.as_ref().map(non_negative).filter(|i| *i > 0),
        delay: p.delay.as_ref().map_or(0, non_negative),
        exponential: p.delay_function() != DelayFunction::Constant,
        max_delay: p
            .max_delay
            .as_ref()
            .map_or(non_negative(&DEFAULT_MAX_DELAY), non_negative),
    }
}

/// The delay before the attempt that follows `prior` attempts: `delay`, or for the
/// exponential function `delay × 2^prior` capped at `max_delay` (never below `delay`).
pub fn delay(policy: &Policy, prior: u32) -> i128 {
    if !policy.exponential {
        return policy.delay;
    }
    let cap = policy.max_delay.max(policy.delay);
    let factor = 1i128.checked_shl(prior.min(100)).unwrap_or(i128::MAX);
    policy.delay.saturating_mul(factor).min(cap)
}

/// What becomes of the empty slot of a rescheduled allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Place the replacement now; it is attempt `attempt`.
    Now { attempt: u32 },
    /// Place it once `at` has come; it will be attempt `attempt`.
    Wait { at: Timestamp, attempt: u32 },
    /// No replacement: `used` attempts within the interval used up the policy's.
    Exhausted { used: u32 },
}

/// Whether the control plane replaces `alloc` under the reschedule policy: FAILED,
/// LOST or STOPPED while its desired state is still RUN (nothing the control plane
/// does stops an allocation that should run).
pub fn is_rescheduled(alloc: &Allocation) -> bool {
    alloc.desired_state() != AllocationDesiredState::Stop
        && alloc.status.as_ref().is_some_and(|s| {
            matches!(
                s.state(),
                AllocationState::Failed | AllocationState::Lost | AllocationState::Stopped
            )
        })
}

/// When the allocation failed or was lost: its last status change.
fn failed_at(alloc: &Allocation) -> i128 {
    alloc
        .status
        .as_ref()
        .and_then(|s| s.updated_at.as_ref())
        .or(alloc.created_at.as_ref())
        .map_or(0, timestamp_nanos)
}

/// What to do about the slot of `alloc` (see [`is_rescheduled`]) of the service at
/// `version` with `spec`, at `now`.
pub fn decide(alloc: &Allocation, spec: &ServiceSpec, version: u64, now: &Timestamp) -> Decision {
    if alloc.service_version != version {
        return Decision::Now { attempt: 1 };
    }
    let lost = alloc
        .status
        .as_ref()
        .is_some_and(|s| s.state() == AllocationState::Lost);
    let policy = policy(spec, lost);
    let failed = failed_at(alloc);
    let started = alloc.created_at.as_ref().map_or(failed, timestamp_nanos);
    let prior = match policy.interval {
        Some(interval) if failed.saturating_sub(started) > interval => 0,
        _ => alloc.reschedule_attempts,
    };
    if policy.attempts.is_some_and(|attempts| prior >= attempts) {
        return Decision::Exhausted { used: prior };
    }
    let attempt = prior.saturating_add(1);
    let due = failed.saturating_add(delay(&policy, prior));
    if due > timestamp_nanos(now) {
        Decision::Wait {
            at: from_nanos(due),
            attempt,
        }
    } else {
        Decision::Now { attempt }
    }
}

fn rfc3339(at: &Timestamp) -> String {
    let since_epoch = StdDuration::new(at.seconds.max(0) as u64, at.nanos.max(0) as u32);
    humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch).to_string()
}

fn human(nanos: i128) -> String {
    let nanos = u64::try_from(nanos.max(0)).unwrap_or(u64::MAX);
    // Whole milliseconds: "1m 30s 500ms", not nanosecond noise.
    let millis = StdDuration::from_millis(nanos / 1_000_000);
    humantime::format_duration(millis).to_string()
}

/// The `desired_description` of an allocation whose slot waits or is given up, or
/// `None` when its replacement is placed now.
pub fn description(decision: &Decision, spec: &ServiceSpec, lost: bool) -> Option<String> {
    match decision {
        Decision::Now { .. } => None,
        Decision::Wait { at, attempt } => Some(format!(
            "reschedule attempt {attempt} due at {}",
            rfc3339(at)
        )),
        Decision::Exhausted { used } => {
            let policy = policy(spec, lost);
            let within = policy
                .interval
                .map(|i| format!(" within {}", human(i)))
                .unwrap_or_default();
            Some(match policy.attempts {
                Some(0) => "not rescheduled: the service's reschedule policy allows no attempts; \
                     apply a changed spec to try again"
                    .to_owned(),
                _ => format!(
                    "not rescheduled: reschedule attempts used up ({used}{within}); \
                     apply a changed spec to try again"
                ),
            })
        }
    }
}

/// Whether `at` has come at wall-clock time `now`.
pub fn is_due(at: &Timestamp, now: &Timestamp) -> bool {
    timestamp_nanos(at) <= timestamp_nanos(now)
}

impl<'a> Planner<'a> {
    /// The latest rescheduled allocation ([`is_rescheduled`]) of each slot of the
    /// service, by creation time then id; those released by this plan left out.
    pub(super) fn rescheduled_by_slot(&self, service: &str) -> BTreeMap<u32, &'a Allocation> {
        let mut latest: BTreeMap<u32, &'a Allocation> = BTreeMap::new();
        let key = |a: &Allocation| (a.created_at.as_ref().map(timestamp_nanos), a.id.clone());
        for alloc in self.allocs.of_service(service) {
            if !is_rescheduled(alloc) || self.released.contains(&alloc.id) {
                continue;
            }
            match latest.get(&alloc.slot) {
                Some(seen) if key(seen) >= key(alloc) => {}
                _ => {
                    latest.insert(alloc.slot, alloc);
                }
            }
        }
        latest
    }

    /// Keeps the slot of `alloc` empty for now: says why on the allocation (unless it
    /// says so already) and, for a delay, remembers when to plan again.
    pub(super) fn hold_slot(
        &mut self,
        alloc: &Allocation,
        decision: &Decision,
        spec: &ServiceSpec,
    ) {
        if let Decision::Wait { at, .. } = decision
            && self
                .wake_at
                .is_none_or(|w| timestamp_nanos(at) < timestamp_nanos(&w))
        {
            self.wake_at = Some(*at);
        }
        let lost = alloc
            .status
            .as_ref()
            .is_some_and(|s| s.state() == AllocationState::Lost);
        let Some(text) = description(decision, spec, lost) else {
            return;
        };
        if alloc.desired_description != text {
            let mut noted = alloc.clone();
            noted.desired_description = text;
            self.upserts.push(noted);
        }
    }
}

#[cfg(test)]
mod tests;
