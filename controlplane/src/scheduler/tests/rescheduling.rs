//! The reschedule policy as the planner applies it: delays, attempts, descriptions and
//! the time the leader must plan again.

use constellation_proto::v1::{DelayFunction, ReschedulePolicy};

use super::*;
use crate::scheduler::reschedule::{self, is_rescheduled};

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// The tests' command time (see `apply`).
const T0: i64 = 1_700_000_000;

fn apply_at(state: &mut State, seconds: i64, op: Op) {
    let command = Command {
        version: COMMAND_VERSION,
        proposed_at: Some(at(seconds)),
        op: Some(op),
    };
    let result = state.apply(&command);
    assert!(
        !matches!(result.outcome, Some(Outcome::Error(_))),
        "{result:?}"
    );
}

fn report_at(state: &mut State, seconds: i64, alloc: &Allocation, status: AllocationState) {
    let op = Op::ReportStatus(ReportStatusCommand {
        node_id: alloc.node_id.clone(),
        reports: vec![AllocationReport {
            allocation_id: alloc.id.clone(),
            status: Some(AllocationStatus {
                state: status as i32,
                ..Default::default()
            }),
            spec_hash: String::new(),
        }],
    });
    apply_at(state, seconds, op);
}

/// Plans at `now`, applies the plan at `now`; returns what was planned.
fn step_at(state: &mut State, now: i64) -> Planned {
    let planned = plan_with_wake(state, at(now), &mut counter(&fresh("t")));
    if let Some(p) = &planned.plan {
        apply_at(state, now, Op::Plan(p.clone()));
    }
    planned
}

fn only_live(state: &State, service: &str) -> Allocation {
    let live = live(state, service);
    let [one] = live.as_slice() else {
        panic!("{live:?}")
    };
    one.clone()
}

fn with_policy(mut spec: ServiceSpec, policy: ReschedulePolicy) -> ServiceSpec {
    spec.reschedule = Some(policy);
    spec
}

fn secs(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

#[test]
fn a_failed_allocation_is_replaced_after_its_delay_doubling_each_time() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(&mut state, service("web", 1));
    converge(&mut state);
    let mut now = T0;
    let mut current = only_live(&state, "web");
    for (attempt, wait) in [(1u32, 5i64), (2, 10), (3, 20), (4, 40)] {
        report_at(&mut state, now, &current, AllocationState::Failed);
        // Held: the failed allocation says when, the planner says when to come back.
        let held = step_at(&mut state, now);
        assert_eq!(held.wake_at, Some(at(now + wait)));
        let p = held.plan.expect("a description");
        let [noted] = p.upserts.as_slice() else {
            panic!("{p:?}")
        };
        assert_eq!(noted.id, current.id);
        assert!(
            noted
                .desired_description
                .starts_with(&format!("reschedule attempt {attempt} due at")),
            "{noted:?}"
        );
        assert!(p.removals.is_empty());
        // Nothing more until the time comes.
        let quiet = plan_with_wake(&state, at(now + wait - 1), &mut counter("q"));
        assert_eq!(quiet.plan, None);
        assert_eq!(quiet.wake_at, Some(at(now + wait)));
        now += wait;
        let replaced = step_at(&mut state, now);
        assert_eq!(replaced.wake_at, None);
        let p = replaced.plan.expect("a replacement");
        assert_eq!(p.removals, vec![current.id.clone()]);
        let next = only_live(&state, "web");
        assert_eq!(next.previous_allocation_id, current.id);
        assert_eq!(next.reschedule_attempts, attempt);
        assert_eq!(next.slot, current.slot);
        current = next;
    }
}

#[test]
fn a_failed_allocation_the_agent_cleaned_up_after_is_still_rescheduled() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(&mut state, service("web", 1));
    converge(&mut state);
    let failed = only_live(&state, "web");
    report_at(&mut state, T0, &failed, AllocationState::Failed);
    assert_eq!(step_at(&mut state, T0).wake_at, Some(at(T0 + 5)));
    // No longer assigned, the agent removes what is left and reports it STOPPED: the
    // allocation stays FAILED and its delay still counts from the failure.
    report_at(&mut state, T0 + 1, &failed, AllocationState::Stopped);
    let state_of = |state: &State| {
        state
            .allocation(&failed.id)
            .and_then(|a| a.status.clone())
            .map(|s| s.state())
    };
    assert_eq!(state_of(&state), Some(AllocationState::Failed));
    let held = step_at(&mut state, T0 + 1);
    assert_eq!(held.wake_at, Some(at(T0 + 5)));
    assert!(live(&state, "web").is_empty());
    step_at(&mut state, T0 + 5);
    let replacement = only_live(&state, "web");
    assert_eq!(replacement.previous_allocation_id, failed.id);
    assert_eq!(replacement.reschedule_attempts, 1);
    assert!(state.allocation(&failed.id).is_none());
}

#[test]
fn lost_allocations_are_replaced_at_once_by_default_and_count_attempts() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    register(&mut state, "n3", 4000, 8 * GIB);
    put_service(&mut state, service("web", 1));
    converge(&mut state);
    let first = only_live(&state, "web");
    set_status(&mut state, &first.node_name, NodeStatus::Down);
    let p = step_at(&mut state, T0);
    assert_eq!(p.wake_at, None);
    let second = only_live(&state, "web");
    assert_eq!(second.previous_allocation_id, first.id);
    assert_eq!(second.reschedule_attempts, 1);
    set_status(&mut state, &second.node_name, NodeStatus::Down);
    step_at(&mut state, T0);
    let third = only_live(&state, "web");
    assert_eq!(third.previous_allocation_id, second.id);
    assert_eq!(third.reschedule_attempts, 2);
}

#[test]
fn a_policy_delays_failover_of_lost_allocations() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    let policy = ReschedulePolicy {
        delay: secs(30),
        delay_function: DelayFunction::Constant as i32,
        unlimited: true,
        ..Default::default()
    };
    put_service(&mut state, with_policy(service("web", 1), policy));
    converge(&mut state);
    let first = only_live(&state, "web");
    set_status(&mut state, &first.node_name, NodeStatus::Down);
    assert_eq!(step_at(&mut state, T0).wake_at, Some(at(T0 + 30)));
    assert!(live(&state, "web").is_empty());
    step_at(&mut state, T0 + 30);
    assert_eq!(only_live(&state, "web").previous_allocation_id, first.id);
}

#[test]
fn used_up_attempts_leave_the_slot_empty_with_the_reason_until_the_spec_changes() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    let policy = ReschedulePolicy {
        attempts: 2,
        interval: secs(3600),
        unlimited: false,
        ..Default::default()
    };
    let spec = with_policy(service("web", 1), policy);
    put_service(&mut state, spec.clone());
    converge(&mut state);
    // No delay: each failure is replaced at once, twice.
    for attempt in 1..=2 {
        let failing = only_live(&state, "web");
        report_at(&mut state, T0, &failing, AllocationState::Failed);
        step_at(&mut state, T0);
        assert_eq!(only_live(&state, "web").reschedule_attempts, attempt);
    }
    let last = only_live(&state, "web");
    report_at(&mut state, T0, &last, AllocationState::Failed);
    let given_up = step_at(&mut state, T0);
    assert_eq!(given_up.wake_at, None);
    assert!(live(&state, "web").is_empty());
    let kept = state
        .allocation(&last.id)
        .expect("the failed allocation stays");
    assert_eq!(
        kept.desired_description,
        "not rescheduled: reschedule attempts used up (2 within 1h); \
         apply a changed spec to try again"
    );
    // Stable: nothing more, however late.
    assert_eq!(plan(&state, at(T0 + 86_400), &mut counter("z")), None);
    // Applying a changed spec (a fixed image, say) gives the slot a fresh start.
    let mut fixed = spec;
    fixed.image = "nginx:fixed".into();
    put_service(&mut state, fixed);
    step_at(&mut state, T0 + 10);
    let fresh_start = only_live(&state, "web");
    assert_eq!(fresh_start.previous_allocation_id, last.id);
    assert_eq!(fresh_start.reschedule_attempts, 1);
    assert!(state.allocation(&last.id).is_none());
}

#[test]
fn a_slot_waiting_for_its_replacement_is_not_taken_by_another() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    put_service(&mut state, service("web", 3));
    converge(&mut state);
    let slot1 = live(&state, "web")
        .into_iter()
        .find(|a| a.slot == 1)
        .unwrap();
    report_at(&mut state, T0, &slot1, AllocationState::Failed);
    let held = step_at(&mut state, T0);
    assert_eq!(held.wake_at, Some(at(T0 + 5)));
    let mut slots: Vec<u32> = live(&state, "web").iter().map(|a| a.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![0, 2]);
    step_at(&mut state, T0 + 5);
    let mut slots: Vec<u32> = live(&state, "web").iter().map(|a| a.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![0, 1, 2]);
}

#[test]
fn a_policy_without_attempts_never_reschedules() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    register(&mut state, "n2", 4000, 8 * GIB);
    put_service(
        &mut state,
        with_policy(service("web", 1), ReschedulePolicy::default()),
    );
    converge(&mut state);
    let first = only_live(&state, "web");
    set_status(&mut state, &first.node_name, NodeStatus::Down);
    step_at(&mut state, T0);
    assert!(live(&state, "web").is_empty());
    let kept = state.allocation(&first.id).unwrap();
    assert!(
        kept.desired_description.contains("allows no attempts"),
        "{kept:?}"
    );
}

#[test]
fn an_allocation_that_ran_longer_than_the_interval_starts_the_count_again() {
    let mut state = State::new();
    register(&mut state, "n1", 4000, 8 * GIB);
    let policy = ReschedulePolicy {
        attempts: 1,
        interval: secs(60),
        unlimited: false,
        ..Default::default()
    };
    put_service(&mut state, with_policy(service("web", 1), policy));
    converge(&mut state);
    let first = only_live(&state, "web");
    report_at(&mut state, T0, &first, AllocationState::Failed);
    step_at(&mut state, T0);
    let second = only_live(&state, "web");
    assert_eq!(second.reschedule_attempts, 1);
    // Placed at T0, fails 2 minutes later: a fresh count, so it is replaced.
    report_at(&mut state, T0 + 120, &second, AllocationState::Failed);
    step_at(&mut state, T0 + 120);
    let third = only_live(&state, "web");
    assert_eq!(third.previous_allocation_id, second.id);
    assert_eq!(third.reschedule_attempts, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A service whose every allocation fails as soon as it is placed, planned at
    /// random moments: consecutive placements of a slot are never closer than the
    /// policy's delay for that attempt, every replacement names the allocation it
    /// replaces, and the state never holds more than one failed allocation per slot.
    #[test]
    fn a_crash_looping_service_backs_off(
        replicas in 1u32..4,
        gaps in proptest::collection::vec(0i64..50, 1..60),
    ) {
        let mut state = State::new();
        register(&mut state, "n1", 64_000, 64 * GIB);
        put_service(&mut state, service("web", replicas));
        let mut now = T0;
        // Slot → (placed at, attempt).
        let mut placed: BTreeMap<u32, (i64, u32)> = BTreeMap::new();
        let failed_policy = reschedule::policy(&service("web", 1), false);
        for gap in gaps {
            now += gap;
            for alloc in live(&state, "web") {
                report_at(&mut state, now, &alloc, AllocationState::Failed);
            }
            let planned = step_at(&mut state, now);
            for new in planned.plan.iter().flat_map(|p| &p.upserts) {
                if !new.previous_allocation_id.is_empty() && new.desired_description.is_empty() {
                    let (previous_at, attempt) = placed[&new.slot];
                    prop_assert_eq!(new.reschedule_attempts, attempt + 1);
                    let min_gap = reschedule::delay(&failed_policy, attempt) / 1_000_000_000;
                    prop_assert!(now - previous_at >= min_gap as i64, "slot {} after {}s", new.slot, now - previous_at);
                }
                if new.desired_description.is_empty() {
                    placed.insert(new.slot, (now, new.reschedule_attempts));
                }
            }
            let all = AllocationFilter { include_terminal: true, ..Default::default() };
            let failed: Vec<u32> = state.allocations(&all).iter().filter(|a| is_rescheduled(a)).map(|a| a.slot).collect();
            let distinct: std::collections::BTreeSet<u32> = failed.iter().copied().collect();
            prop_assert_eq!(failed.len(), distinct.len());
            if let Some(wake) = planned.wake_at {
                prop_assert!(wake.seconds > now);
            }
        }
    }
}
