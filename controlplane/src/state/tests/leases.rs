//! Leases and fencing tokens.

use constellation_proto::v1::{
    AcquireLeaseCommand, ChangeKind, CommandErrorCode, ExpireLeaseCommand, Lease,
    ReleaseLeaseCommand, RenewLeaseCommand, command::Op, command_result::Outcome, event::Payload,
};

use super::*;

pub(super) fn acquire_op(name: &str, holder: &str, ttl: i64) -> Op {
    Op::AcquireLease(AcquireLeaseCommand {
        name: name.into(),
        holder: holder.into(),
        ttl: Some(secs(ttl)),
    })
}

pub(super) fn renew_op(name: &str, holder: &str, token: u64, ttl: Option<i64>) -> Op {
    Op::RenewLease(RenewLeaseCommand {
        name: name.into(),
        holder: holder.into(),
        fencing_token: token,
        ttl: ttl.map(secs),
    })
}

pub(super) fn release_op(name: &str, holder: &str, token: u64) -> Op {
    Op::ReleaseLease(ReleaseLeaseCommand {
        name: name.into(),
        holder: holder.into(),
        fencing_token: token,
    })
}

pub(super) fn expire_op(name: &str, token: u64) -> Op {
    Op::ExpireLease(ExpireLeaseCommand {
        name: name.into(),
        fencing_token: token,
    })
}

fn lease_of(result: &CommandResult) -> Lease {
    match &result.outcome {
        Some(Outcome::Lease(l)) => l.clone(),
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn lease_kinds(events: &[Event]) -> Vec<(ChangeKind, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Lease(l)) => {
                Some((l.kind(), l.lease.as_ref().map_or(0, |l| l.fencing_token)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn acquire_free_lease() {
    let mut state = State::new();
    let r = apply(&mut state, 100, acquire_op("leader", "a", 10));
    assert!(r.acquired);
    let lease = lease_of(&r);
    assert_eq!(lease.fencing_token, 1);
    assert_eq!(lease.holder, "a");
    assert_eq!(lease.acquired_at, Some(at(100)));
    assert_eq!(lease.expires_at, Some(at(110)));
    assert_eq!(lease.ttl, Some(secs(10)));
    assert_eq!(state.lease("leader"), Some(&lease));
    assert_eq!(
        lease_kinds(&events_since(&state, 0)),
        [(ChangeKind::Created, 1)]
    );
}

#[test]
fn acquire_by_holder_renews_and_by_other_is_refused() {
    let mut state = State::new();
    apply(&mut state, 100, acquire_op("l", "a", 10));
    let r = apply(&mut state, 105, acquire_op("l", "a", 20));
    assert!(r.acquired);
    let lease = lease_of(&r);
    assert_eq!((lease.fencing_token, lease.acquired_at), (1, Some(at(100))));
    assert_eq!(
        (lease.expires_at, lease.ttl),
        (Some(at(125)), Some(secs(20)))
    );

    let index = state.event_index();
    let r = apply(&mut state, 106, acquire_op("l", "b", 10));
    assert!(!r.acquired);
    assert_eq!(lease_of(&r).holder, "a");
    assert_eq!(r.index, index, "refusal changes nothing");
    assert_eq!(
        lease_kinds(&events_since(&state, 0)),
        [(ChangeKind::Created, 1), (ChangeKind::Updated, 1)]
    );
}

#[test]
fn acquire_validation() {
    let mut state = State::new();
    assert_error(
        &apply(&mut state, 1, acquire_op("", "a", 1)),
        CommandErrorCode::InvalidArgument,
    );
    assert_error(
        &apply(&mut state, 1, acquire_op("l", "", 1)),
        CommandErrorCode::InvalidArgument,
    );
    assert_error(
        &apply(&mut state, 1, acquire_op("l", "a", 0)),
        CommandErrorCode::InvalidArgument,
    );
    let no_ttl = Op::AcquireLease(AcquireLeaseCommand {
        name: "l".into(),
        holder: "a".into(),
        ttl: None,
    });
    assert_error(
        &apply(&mut state, 1, no_ttl),
        CommandErrorCode::InvalidArgument,
    );
    assert_eq!(state.lease_token("l"), 0);
}

#[test]
fn renew() {
    let mut state = State::new();
    assert_error(
        &apply(&mut state, 1, renew_op("l", "a", 1, None)),
        CommandErrorCode::NotFound,
    );
    apply(&mut state, 100, acquire_op("l", "a", 10));
    let r = apply(&mut state, 105, renew_op("l", "a", 1, None));
    let lease = lease_of(&r);
    assert_eq!(
        (lease.expires_at, lease.ttl),
        (Some(at(115)), Some(secs(10)))
    );
    let r = apply(&mut state, 106, renew_op("l", "a", 1, Some(30)));
    assert_eq!(lease_of(&r).expires_at, Some(at(136)));
    let index = state.event_index();
    assert_error(
        &apply(&mut state, 107, renew_op("l", "b", 1, None)),
        CommandErrorCode::FailedPrecondition,
    );
    assert_error(
        &apply(&mut state, 107, renew_op("l", "a", 2, None)),
        CommandErrorCode::FailedPrecondition,
    );
    assert_error(
        &apply(&mut state, 107, renew_op("l", "a", 1, Some(-1))),
        CommandErrorCode::InvalidArgument,
    );
    assert_eq!(state.event_index(), index);
}

#[test]
fn renew_with_old_token_is_refused() {
    let mut state = State::new();
    apply(&mut state, 1, acquire_op("l", "a", 10));
    apply(&mut state, 2, release_op("l", "a", 1));
    apply(&mut state, 3, acquire_op("l", "a", 10));
    assert_eq!(state.lease("l").map(|l| l.fencing_token), Some(2));
    let r = apply(&mut state, 4, renew_op("l", "a", 1, None));
    assert_error(&r, CommandErrorCode::FailedPrecondition);
    let Some(Outcome::Error(e)) = &r.outcome else {
        panic!()
    };
    assert!(e.message.contains("stale fencing token"), "{e:?}");
}

#[test]
fn release() {
    let mut state = State::new();
    assert_error(
        &apply(&mut state, 1, release_op("l", "a", 1)),
        CommandErrorCode::NotFound,
    );
    apply(&mut state, 1, acquire_op("l", "a", 10));
    assert_error(
        &apply(&mut state, 2, release_op("l", "b", 1)),
        CommandErrorCode::FailedPrecondition,
    );
    assert_error(
        &apply(&mut state, 2, release_op("l", "a", 7)),
        CommandErrorCode::FailedPrecondition,
    );
    let r = apply(&mut state, 2, release_op("l", "a", 1));
    assert_eq!(r.outcome, Some(Outcome::Done(true)));
    assert!(state.lease("l").is_none());
    assert_eq!(
        state.lease_token("l"),
        1,
        "the high-water mark survives release"
    );
    assert_eq!(
        lease_kinds(&events_since(&state, 0)),
        [(ChangeKind::Created, 1), (ChangeKind::Deleted, 1)]
    );
}

#[test]
fn expire_applies_only_with_the_current_token() {
    let mut state = State::new();
    let r = apply(&mut state, 1, expire_op("l", 1));
    assert_eq!((r.outcome, r.index), (Some(Outcome::Done(true)), 0));
    apply(&mut state, 1, acquire_op("l", "a", 10));
    let index = state.event_index();
    let r = apply(&mut state, 20, expire_op("l", 0));
    assert_eq!((r.outcome, r.index), (Some(Outcome::Done(true)), index));
    assert!(state.lease("l").is_some(), "stale expiry is a no-op");
    apply(&mut state, 20, expire_op("l", 1));
    assert!(state.lease("l").is_none());
    assert_eq!(
        lease_kinds(&events_since(&state, index)),
        [(ChangeKind::Deleted, 1)]
    );
}

#[test]
fn tokens_strictly_increase_across_cycles() {
    let mut state = State::new();
    let mut tokens = Vec::new();
    for (i, holder) in ["a", "b", "a", "c"].iter().enumerate() {
        let t = i as i64 * 100;
        let r = apply(&mut state, t, acquire_op("l", holder, 10));
        let token = lease_of(&r).fencing_token;
        tokens.push(token);
        if i % 2 == 0 {
            apply(&mut state, t + 1, release_op("l", holder, token));
        } else {
            apply(&mut state, t + 50, expire_op("l", token));
        }
    }
    assert_eq!(tokens, [1, 2, 3, 4]);
    // Another lease name has its own sequence.
    let r = apply(&mut state, 1000, acquire_op("other", "a", 10));
    assert_eq!(lease_of(&r).fencing_token, 1);
    assert_eq!(state.leases().count(), 1);
}
