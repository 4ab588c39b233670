//! The event log: replay, topic filters, compaction, restore.

use constellation_proto::v1::{
    HealthState, LeadershipCommand, RestoreCommand, StateSnapshot, Topic, command::Op,
    command_result::Outcome,
};

use super::leases::acquire_op;
use super::*;
use crate::state::{Compacted, event_topic};

/// Three nodes, a plan with two allocations and a report: events of several topics.
fn busy_state(capacity: usize) -> State {
    let mut state = State::with_history(capacity);
    register(&mut state, 1, "n1", "N1");
    apply(&mut state, 2, plan(vec![alloc("a1", "web", "n1")], &[]));
    apply(
        &mut state,
        3,
        report(
            "n1",
            "a1",
            constellation_proto::v1::AllocationState::Running,
            HealthState::Healthy,
        ),
    );
    apply(&mut state, 4, acquire_op("l", "x", 10));
    state
}

#[test]
fn replay_after_index_is_exact() {
    let state = busy_state(100);
    let all = events_since(&state, 0);
    assert_eq!(all.len() as u64, state.event_index());
    assert_consecutive(&all, 1);
    for from in 0..=state.event_index() {
        let tail = state.events_after(from, &[]).expect("retained");
        assert_eq!(tail, all[from as usize..].to_vec(), "from {from}");
    }
    assert_eq!(
        state.events_after(state.event_index() + 5, &[]),
        Ok(vec![]),
        "client ahead"
    );
    assert!(all.iter().all(|e| e.time.is_some()));
}

#[test]
fn topic_filter() {
    let state = busy_state(100);
    let all = events_since(&state, 0);
    let health = state.events_after(0, &[Topic::Health]).expect("retained");
    assert_eq!(health.len(), 1);
    assert!(health.iter().all(|e| event_topic(e) == Topic::Health));
    let two = state
        .events_after(0, &[Topic::Lease, Topic::Node])
        .expect("retained");
    let expected: Vec<_> = all
        .iter()
        .filter(|e| matches!(event_topic(e), Topic::Lease | Topic::Node))
        .cloned()
        .collect();
    assert_eq!(two, expected);
    assert!(!two.is_empty());
    assert_eq!(
        state
            .events_after(0, &[Topic::Unspecified])
            .expect("retained"),
        all
    );
    assert_eq!(state.events_after(0, &[Topic::Migration]), Ok(vec![]));
}

#[test]
fn compacted_when_history_overflowed() {
    let state = busy_state(3);
    let index = state.event_index();
    assert!(index > 4);
    let oldest = index - 2;
    assert_eq!(state.oldest_retained_index(), oldest);
    assert_eq!(
        state.events_after(0, &[]),
        Err(Compacted {
            oldest_retained: oldest
        })
    );
    assert_eq!(state.to_snapshot().events.len(), 3);
}

#[test]
fn compaction_boundaries() {
    let state = busy_state(3);
    let index = state.event_index();
    let oldest = index - 2;
    // The event right after `oldest - 1` is retained: fine.
    let tail = state.events_after(oldest - 1, &[]).expect("retained");
    assert_consecutive(&tail, oldest);
    assert_eq!(tail.len(), 3);
    // One further back, event `oldest - 1` is gone.
    assert_eq!(
        state.events_after(oldest - 2, &[]),
        Err(Compacted {
            oldest_retained: oldest
        })
    );
    assert!(state.events_after(0, &[]).is_err());
    assert_eq!(state.events_after(index, &[]), Ok(vec![]));
}

#[test]
fn zero_capacity_retains_nothing() {
    let state = busy_state(0);
    let index = state.event_index();
    assert_eq!(state.events_after(index, &[]), Ok(vec![]));
    assert!(state.events_after(index - 1, &[]).is_err());
}

#[test]
fn shrinking_the_history() {
    let mut state = busy_state(100);
    let index = state.event_index();
    state.set_history_capacity(1);
    assert_eq!(state.history_capacity(), 1);
    assert_eq!(state.oldest_retained_index(), index);
    assert!(state.events_after(index - 2, &[]).is_err());
}

#[test]
fn restore_bumps_index_and_clears_history() {
    let mut state = busy_state(100);
    let backup = state.to_snapshot();
    apply(&mut state, 5, acquire_op("m", "x", 10));
    apply(&mut state, 6, acquire_op("l2", "x", 10));
    let before = state.event_index();
    let r = apply(
        &mut state,
        7,
        Op::Restore(RestoreCommand {
            state: Some(backup.clone()),
        }),
    );
    assert_eq!(r.outcome, Some(Outcome::Done(true)));
    assert_eq!(r.index, before + 1);
    assert_eq!(state.event_index(), before + 1);
    assert!(state.lease("m").is_none(), "contents come from the backup");
    assert!(state.lease("l").is_some());
    assert_eq!(
        state.lease_token("m"),
        1,
        "fencing high-water marks never go back"
    );
    // Every earlier index is compacted; the new index is current.
    for from in [0, backup.event_index, before] {
        assert_eq!(
            state.events_after(from, &[]),
            Err(Compacted {
                oldest_retained: before + 2
            })
        );
    }
    assert_eq!(state.events_after(before + 1, &[]), Ok(vec![]));
    // Life goes on from the new index.
    apply(&mut state, 8, acquire_op("z", "x", 10));
    assert_consecutive(&events_since(&state, before + 1), before + 2);
}

#[test]
fn restore_drops_leases_superseded_since_the_backup() {
    let mut state = State::new();
    apply(&mut state, 1, acquire_op("l", "a", 10));
    let backup = state.to_snapshot();
    apply(&mut state, 2, super::leases::release_op("l", "a", 1));
    apply(&mut state, 3, acquire_op("l", "b", 10));
    apply(
        &mut state,
        4,
        Op::Restore(RestoreCommand {
            state: Some(backup),
        }),
    );
    assert!(
        state.lease("l").is_none(),
        "token 1 was superseded by token 2"
    );
    assert_eq!(state.lease_token("l"), 2);
    let r = apply(&mut state, 5, acquire_op("l", "a", 10));
    let Some(Outcome::Lease(lease)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(lease.fencing_token, 3);
}

#[test]
fn restore_of_a_newer_snapshot_jumps_past_it() {
    let mut state = busy_state(100);
    let mut snapshot = State::new().to_snapshot();
    snapshot.event_index = 1000;
    apply(
        &mut state,
        9,
        Op::Restore(RestoreCommand {
            state: Some(snapshot),
        }),
    );
    assert_eq!(state.event_index(), 1001);
    assert!(state.services().next().is_none());
    assert_eq!(state.history_capacity(), 100, "member-local setting kept");
}

#[test]
fn restore_keeps_the_current_leadership() {
    let mut state = State::new();
    let old = LeadershipCommand {
        leader_id: 1,
        term: 1,
        leader_api_addr: "old:1".into(),
    };
    apply(&mut state, 1, Op::Leadership(old));
    let backup = state.to_snapshot();
    let current = LeadershipCommand {
        leader_id: 2,
        term: 7,
        leader_api_addr: "new:1".into(),
    };
    apply(&mut state, 2, Op::Leadership(current.clone()));
    apply(
        &mut state,
        3,
        Op::Restore(RestoreCommand {
            state: Some(backup),
        }),
    );
    assert_eq!(state.leadership(), Some(&current));
}

#[test]
fn bad_restore_changes_nothing() {
    let mut state = busy_state(100);
    let before = state.to_snapshot();
    let r = apply(
        &mut state,
        9,
        Op::Restore(RestoreCommand {
            state: Some(StateSnapshot::default()),
        }),
    );
    assert_error(
        &r,
        constellation_proto::v1::CommandErrorCode::InvalidArgument,
    );
    let Some(Outcome::Error(e)) = &r.outcome else {
        panic!()
    };
    assert_eq!(e.field, "state.format_version");
    let r = apply(&mut state, 9, Op::Restore(RestoreCommand { state: None }));
    assert_error(
        &r,
        constellation_proto::v1::CommandErrorCode::InvalidArgument,
    );
    assert_eq!(state.to_snapshot(), before);
}

#[test]
fn leadership_topic() {
    let mut state = State::new();
    apply(&mut state, 1, Op::Leadership(LeadershipCommand::default()));
    apply(
        &mut state,
        2,
        Op::Leadership(LeadershipCommand {
            leader_id: 1,
            ..Default::default()
        }),
    );
    let events = state
        .events_after(0, &[Topic::Leadership])
        .expect("retained");
    assert_eq!(events.len(), 2);
}
