//! to_snapshot / from_snapshot: round trip, determinism, validation.

use constellation_proto::v1::{
    AllocationState, ApplyServiceCommand, ConfigSpec, HealthState, LeadershipCommand,
    PutConfigCommand, PutSecretCommand, SecretSpec, StateSnapshot, command::Op,
};
use prost::Message;

use super::leases::acquire_op;
use super::*;
use crate::Error;
use crate::state::{AllocationFilter, SNAPSHOT_FORMAT_VERSION};

fn full_state() -> State {
    let mut state = State::new();
    for (i, name) in ["web", "db"].iter().enumerate() {
        let op = Op::ApplyService(ApplyServiceCommand {
            spec: Some(spec(name, "img")),
            expected_version: None,
        });
        apply(&mut state, i as i64, op);
    }
    register(&mut state, 3, "n2", "beta");
    register(&mut state, 3, "n1", "alpha");
    apply(
        &mut state,
        4,
        plan(vec![alloc("a2", "web", "n2"), alloc("a1", "db", "n1")], &[]),
    );
    apply(
        &mut state,
        5,
        report("n1", "a1", AllocationState::Running, HealthState::Healthy),
    );
    apply(&mut state, 6, acquire_op("l", "h", 10));
    apply(
        &mut state,
        7,
        Op::PutSecret(PutSecretCommand {
            secret: Some(SecretSpec {
                name: "s".into(),
                data: b"x".to_vec(),
                ..Default::default()
            }),
        }),
    );
    apply(
        &mut state,
        7,
        Op::PutConfig(PutConfigCommand {
            config: Some(ConfigSpec {
                name: "c".into(),
                ..Default::default()
            }),
        }),
    );
    apply(
        &mut state,
        8,
        Op::Leadership(LeadershipCommand {
            leader_id: 1,
            term: 1,
            leader_api_addr: "a:1".into(),
        }),
    );
    state
}

fn violations(result: Result<State, Error>) -> Vec<String> {
    match result {
        Err(Error::InvalidArgument(v)) => {
            v.0.iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect()
        }
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[test]
fn round_trip_is_exact() {
    let state = full_state();
    let snapshot = state.to_snapshot();
    assert_eq!(snapshot.format_version, SNAPSHOT_FORMAT_VERSION);
    assert_eq!(snapshot.event_index, state.event_index());
    let restored = State::from_snapshot(snapshot.clone()).expect("valid");
    assert_eq!(restored.to_snapshot(), snapshot);
    assert_eq!(restored, state);
    assert_eq!(
        restored.to_snapshot().encode_to_vec(),
        snapshot.encode_to_vec()
    );
    // Every collection, the lease tokens and the leadership are written in place too.
    assert_eq!(state.encode_snapshot(), snapshot.encode_to_vec());
}

#[test]
fn snapshot_is_sorted_by_key() {
    let snapshot = full_state().to_snapshot();
    let names: Vec<_> = snapshot
        .services
        .iter()
        .filter_map(|s| s.spec.as_ref().map(|s| s.name.as_str()))
        .collect();
    assert_eq!(names, ["db", "web"]);
    let ids: Vec<_> = snapshot.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n1", "n2"]);
    let ids: Vec<_> = snapshot.allocations.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(snapshot.lease_tokens.get("l"), Some(&1));
}

#[test]
fn indexes_are_rebuilt() {
    let restored = State::from_snapshot(full_state().to_snapshot()).expect("valid");
    assert_eq!(restored.node("alpha").map(|n| n.id.as_str()), Some("n1"));
    assert_eq!(restored.allocations_of_node("n2").count(), 1);
    let filter = AllocationFilter {
        service_name: "db".into(),
        ..Default::default()
    };
    assert_eq!(restored.allocations(&filter).len(), 1);
    assert_eq!(restored.secret_data("s"), Some(&b"x"[..]));
    let names: Vec<_> = restored
        .nodes()
        .filter_map(|n| n.description.as_ref())
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["alpha", "beta"], "nodes list by name");
}

#[test]
fn smaller_history_keeps_the_newest_events() {
    let state = full_state();
    let restored = State::from_snapshot_with_history(state.to_snapshot(), 2).expect("valid");
    let events = restored.to_snapshot().events;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].index, state.event_index());
}

#[test]
fn unknown_format_version_is_refused() {
    for version in [0, SNAPSHOT_FORMAT_VERSION + 1] {
        let snapshot = StateSnapshot {
            format_version: version,
            ..Default::default()
        };
        let v = violations(State::from_snapshot(snapshot));
        assert!(v[0].starts_with("format_version"), "{v:?}");
    }
}

#[test]
fn duplicate_and_missing_keys_are_refused() {
    let mut snapshot = full_state().to_snapshot();
    snapshot.services.push(snapshot.services[0].clone());
    snapshot.allocations.push(snapshot.allocations[1].clone());
    snapshot.secrets[0].spec = None;
    let mut twin = snapshot.nodes[0].clone();
    twin.id = "n9".into();
    snapshot.nodes.push(twin);
    let v = violations(State::from_snapshot(snapshot));
    assert_eq!(v.len(), 4, "{v:?}");
    assert!(
        v.iter()
            .any(|s| s.starts_with("services[2]") && s.contains("duplicate")),
        "{v:?}"
    );
    assert!(v.iter().any(|s| s.starts_with("allocations[2]")), "{v:?}");
    assert!(
        v.iter()
            .any(|s| s.starts_with("secrets[0]") && s.contains("missing")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|s| s.contains("duplicate node name \"alpha\"")),
        "{v:?}"
    );
}

#[test]
fn events_out_of_sequence_are_refused() {
    let good = full_state().to_snapshot();
    let mut gap = good.clone();
    gap.events.remove(2);
    let v = violations(State::from_snapshot(gap));
    assert!(v[0].contains("consecutive"), "{v:?}");

    let mut ahead = good.clone();
    ahead.event_index -= 1;
    let v = violations(State::from_snapshot(ahead));
    assert!(v[0].contains("event_index"), "{v:?}");

    let mut reversed = good;
    reversed.events.swap(0, 1);
    assert!(State::from_snapshot(reversed).is_err());
}

#[test]
fn lease_token_above_high_water_mark_is_refused() {
    let mut snapshot = full_state().to_snapshot();
    snapshot.lease_tokens.clear();
    let v = violations(State::from_snapshot(snapshot));
    assert!(v[0].starts_with("leases[0].fencing_token"), "{v:?}");
}

#[test]
fn empty_state_round_trips() {
    let snapshot = State::new().to_snapshot();
    assert_eq!(
        State::from_snapshot(snapshot.clone())
            .expect("valid")
            .to_snapshot(),
        snapshot
    );
}

#[test]
fn implausible_counters_are_refused() {
    let mut snapshot = State::new().to_snapshot();
    snapshot.event_index = u64::MAX;
    snapshot.lease_tokens.insert("l".into(), u64::MAX - 1);
    let v = violations(State::from_snapshot(snapshot));
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("event_index"), "{v:?}");
    assert!(v[1].starts_with("lease_tokens[\"l\"]"), "{v:?}");
}
