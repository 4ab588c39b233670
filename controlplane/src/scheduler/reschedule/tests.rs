use constellation_proto::v1::{AllocationStatus, ReschedulePolicy};
use proptest::prelude::*;

use super::*;

const SECOND: i128 = 1_000_000_000;

fn secs(seconds: i64) -> Option<Duration> {
    Some(Duration { seconds, nanos: 0 })
}

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn spec_with(policy: Option<ReschedulePolicy>) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        reschedule: policy,
        ..Default::default()
    }
}

/// An allocation of version 1 placed at `created`, in `state` since `failed`.
fn alloc(state: AllocationState, created: i64, failed: i64, attempts: u32) -> Allocation {
    Allocation {
        id: "a".into(),
        service_version: 1,
        created_at: Some(at(created)),
        reschedule_attempts: attempts,
        status: Some(AllocationStatus {
            state: state as i32,
            updated_at: Some(at(failed)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn without_a_policy_lost_is_replaced_at_once_and_failed_backs_off() {
    let spec = spec_with(None);
    let lost = policy(&spec, true);
    assert_eq!(lost.attempts, None);
    assert_eq!(delay(&lost, 0), 0);
    assert_eq!(delay(&lost, 10), 0);
    let failed = policy(&spec, false);
    assert_eq!(failed.attempts, None);
    let delays: Vec<i128> = (0..8).map(|n| delay(&failed, n) / SECOND).collect();
    assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300]);
}

#[test]
fn a_policy_applies_to_lost_and_failed_alike() {
    let spec = spec_with(Some(ReschedulePolicy {
        attempts: 3,
        interval: secs(3600),
        delay: secs(10),
        delay_function: DelayFunction::Constant as i32,
        max_delay: secs(60),
        unlimited: false,
    }));
    let expected = Policy {
        attempts: Some(3),
        interval: Some(3600 * SECOND),
        delay: 10 * SECOND,
        exponential: false,
        max_delay: 60 * SECOND,
    };
    assert_eq!(policy(&spec, true), expected);
    assert_eq!(policy(&spec, false), expected);
    assert_eq!(delay(&expected, 5), 10 * SECOND);
}

#[test]
fn policy_defaults_unspecified_function_is_exponential_and_unlimited_wins() {
    let spec = spec_with(Some(ReschedulePolicy {
        attempts: 2,
        delay: secs(1),
        unlimited: true,
        ..Default::default()
    }));
    let p = policy(&spec, false);
    assert_eq!(p.attempts, None);
    assert_eq!(p.interval, None);
    assert!(p.exponential);
    assert_eq!(p.max_delay, 300 * SECOND);
    assert_eq!(delay(&p, 3), 8 * SECOND);
    // A delay longer than the default cap is never shortened by it.
    let long = spec_with(Some(ReschedulePolicy {
        delay: secs(600),
        ..Default::default()
    }));
    assert_eq!(delay(&policy(&long, false), 4), 600 * SECOND);
}

#[test]
fn decide_waits_for_the_delay_counted_from_the_failure() {
    let spec = spec_with(None);
    let failed = alloc(AllocationState::Failed, 100, 110, 0);
    assert_eq!(
        decide(&failed, &spec, 1, &at(112)),
        Decision::Wait {
            at: at(115),
            attempt: 1
        }
    );
    assert_eq!(
        decide(&failed, &spec, 1, &at(115)),
        Decision::Now { attempt: 1 }
    );
    // The third attempt waits 5 s × 2².
    let again = alloc(AllocationState::Failed, 100, 110, 2);
    assert_eq!(
        decide(&again, &spec, 1, &at(129)),
        Decision::Wait {
            at: at(130),
            attempt: 3
        }
    );
    let lost = alloc(AllocationState::Lost, 100, 110, 7);
    assert_eq!(
        decide(&lost, &spec, 1, &at(110)),
        Decision::Now { attempt: 8 }
    );
}

#[test]
fn decide_counts_attempts_within_the_interval_and_gives_up() {
    let spec = spec_with(Some(ReschedulePolicy {
        attempts: 2,
        interval: secs(60),
        unlimited: false,
        ..Default::default()
    }));
    let quick = alloc(AllocationState::Failed, 100, 130, 2);
    assert_eq!(
        decide(&quick, &spec, 1, &at(200)),
        Decision::Exhausted { used: 2 }
    );
    // It ran for longer than the interval: the count starts again.
    let long_lived = alloc(AllocationState::Failed, 100, 161, 2);
    assert_eq!(
        decide(&long_lived, &spec, 1, &at(161)),
        Decision::Now { attempt: 1 }
    );
    // A new version of the service: replaced at once, whatever the count.
    assert_eq!(
        decide(&quick, &spec, 2, &at(130)),
        Decision::Now { attempt: 1 }
    );
    let never = spec_with(Some(ReschedulePolicy::default()));
    let lost = alloc(AllocationState::Lost, 100, 130, 0);
    assert_eq!(
        decide(&lost, &never, 1, &at(130)),
        Decision::Exhausted { used: 0 }
    );
}

#[test]
fn descriptions_say_when_and_why() {
    let spec = spec_with(Some(ReschedulePolicy {
        attempts: 3,
        interval: secs(3600),
        unlimited: false,
        ..Default::default()
    }));
    let wait = Decision::Wait {
        at: Timestamp {
            seconds: 1_700_000_005,
            nanos: 250_000_000,
        },
        attempt: 2,
    };
    assert_eq!(
        description(&wait, &spec, false).unwrap(),
        "reschedule attempt 2 due at 2023-11-14T22:13:25.250Z"
    );
    assert_eq!(
        description(&Decision::Exhausted { used: 3 }, &spec, false).unwrap(),
        "not rescheduled: reschedule attempts used up (3 within 1h); apply a changed spec to try again"
    );
    let never = spec_with(Some(ReschedulePolicy::default()));
    assert!(
        description(&Decision::Exhausted { used: 0 }, &never, true)
            .unwrap()
            .contains("allows no attempts")
    );
    assert_eq!(
        description(&Decision::Now { attempt: 1 }, &spec, true),
        None
    );
}

#[test]
fn only_failed_or_lost_allocations_the_control_plane_still_wants_are_rescheduled() {
    assert!(is_rescheduled(&alloc(AllocationState::Failed, 0, 0, 0)));
    assert!(is_rescheduled(&alloc(AllocationState::Lost, 0, 0, 0)));
    assert!(is_rescheduled(&alloc(AllocationState::Stopped, 0, 0, 0)));
    for state in [
        AllocationState::Running,
        AllocationState::Exited,
        AllocationState::Restarting,
        AllocationState::Pending,
    ] {
        assert!(!is_rescheduled(&alloc(state, 0, 0, 0)), "{state:?}");
    }
    let mut stopped = alloc(AllocationState::Failed, 0, 0, 0);
    stopped.set_desired_state(AllocationDesiredState::Stop);
    assert!(!is_rescheduled(&stopped));
}

fn policy_gen() -> impl Strategy<Value = Policy> {
    (
        0i128..10_000,
        0i128..1_000_000,
        any::<bool>(),
        proptest::option::of(0u32..5),
    )
        .prop_map(|(delay, extra, exponential, attempts)| Policy {
            attempts,
            interval: None,
            delay: delay * 1_000_000,
            exponential,
            max_delay: (delay + extra) * 1_000_000,
        })
}

proptest! {
    /// Constant delays never change; exponential ones start at `delay`, double at each
    /// attempt until the cap, never pass it, and never shrink.
    #[test]
    fn delay_function_doubles_up_to_the_cap(policy in policy_gen(), prior in 0u32..200) {
        let d = delay(&policy, prior);
        let next = delay(&policy, prior + 1);
        if !policy.exponential {
            prop_assert_eq!(d, policy.delay);
            prop_assert_eq!(next, policy.delay);
        } else {
            prop_assert_eq!(delay(&policy, 0), policy.delay);
            prop_assert!(policy.delay <= d && d <= policy.max_delay.max(policy.delay));
            prop_assert!(d <= next);
            prop_assert_eq!(next, (d * 2).min(policy.max_delay.max(policy.delay)));
        }
    }

    /// A replacement is never due before the failure plus the policy's delay, and is
    /// due from then on (while attempts remain).
    #[test]
    fn decide_is_due_exactly_after_the_delay(
        failed in 0i64..1_000_000,
        ran in 0i64..1_000,
        prior in 0u32..12,
        waited in 0i64..2_000,
    ) {
        let spec = spec_with(None);
        let a = alloc(AllocationState::Failed, failed - ran, failed, prior);
        let due = i128::from(failed) * SECOND + delay(&policy(&spec, false), prior);
        let now = at(failed + waited);
        match decide(&a, &spec, 1, &now) {
            Decision::Now { attempt } => {
                prop_assert_eq!(attempt, prior + 1);
                prop_assert!(i128::from(now.seconds) * SECOND >= due);
            }
            Decision::Wait { at, attempt } => {
                prop_assert_eq!(attempt, prior + 1);
                prop_assert_eq!(timestamp_nanos(&at), due);
                prop_assert!(i128::from(now.seconds) * SECOND < due);
            }
            Decision::Exhausted { .. } => prop_assert!(false, "unlimited by default"),
        }
    }
}
