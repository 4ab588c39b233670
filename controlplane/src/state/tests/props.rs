//! Property tests over random command sequences drawn from a small alphabet (a few
//! services, nodes, allocations, leases and holders, so that ops collide often):
//! determinism, consecutive event indexes, exact snapshot round trips, and fencing
//! token monotonicity.

use std::collections::BTreeMap;

use constellation_proto::v1::{
    AcquireLeaseCommand, AllocationDesiredState, AllocationReport, AllocationState,
    AllocationStatus, ApplyServiceCommand, ChangeKind, Command, ConfigSpec, DeleteConfigCommand,
    DeleteSecretCommand, DeleteServiceCommand, ExpireLeaseCommand, HealthState, LeadershipCommand,
    Migration, NodeAvailability, NodeStatus, PutConfigCommand, PutMigrationCommand,
    PutSecretCommand, ReleaseLeaseCommand, RenewLeaseCommand, ReportStatusCommand, RestoreCommand,
    SecretSpec, SetNodeAvailabilityCommand, SetNodeStatusCommand, StateSnapshot, command::Op,
    event::Payload,
};
use proptest::prelude::*;
use prost::Message;

use super::*;

const SERVICES: [&str; 2] = ["web", "db"];
const NODE_IDS: [&str; 3] = ["n1", "n2", "n3"];
const NODE_NAMES: [&str; 2] = ["alpha", "beta"];
const ALLOCS: [&str; 4] = ["a1", "a2", "a3", "a4"];
const LEASES: [&str; 2] = ["l1", "l2"];
const HOLDERS: [&str; 2] = ["h1", "h2"];

/// One step of a random run. Tokens of `None` mean "the lease's current token".
#[derive(Debug, Clone)]
enum Step {
    ApplyService(usize, u8, Option<u32>, Option<u64>),
    DeleteService(usize),
    Register(usize, usize),
    Status(usize, bool),
    Availability(usize, u8),
    Plan(Vec<(usize, usize, usize, bool)>, Vec<usize>),
    Report(usize, usize, u8, u8),
    Acquire(usize, usize, i64),
    Renew(usize, usize, Option<u64>),
    Release(usize, usize, Option<u64>),
    Expire(usize, Option<u64>),
    Migration(usize, usize, u8),
    PutSecret(usize, u8),
    DeleteSecret(usize),
    PutConfig(usize, u8),
    DeleteConfig(usize),
    Leadership(u64, u64),
    /// Remember the current snapshot as "the backup".
    Backup,
    /// Restore the backup (an empty state's snapshot when none was taken).
    Restore,
    RestoreInvalid,
    BadVersion,
}

fn step() -> impl Strategy<Value = Step> {
    let upsert = (
        0..ALLOCS.len(),
        0..SERVICES.len(),
        0..NODE_IDS.len(),
        any::<bool>(),
    );
    let apply_service = (
        0..2usize,
        0..3u8,
        prop::option::of(0..4u32),
        prop::option::of(0..3u64),
    );
    let plan = (
        prop::collection::vec(upsert, 0..3),
        prop::collection::vec(0..4usize, 0..2),
    );
    let token = || prop::option::of(0..4u64);
    prop_oneof![
        2 => apply_service.prop_map(|(s, i, r, e)| Step::ApplyService(s, i, r, e)),
        1 => (0..2usize).prop_map(Step::DeleteService),
        2 => (0..3usize, 0..2usize).prop_map(|(i, n)| Step::Register(i, n)),
        1 => (0..3usize, any::<bool>()).prop_map(|(i, d)| Step::Status(i, d)),
        1 => (0..2usize, 0..4u8).prop_map(|(n, a)| Step::Availability(n, a)),
        3 => plan.prop_map(|(u, r)| Step::Plan(u, r)),
        4 => (0..3usize, 0..4usize, 0..10u8, 0..5u8).prop_map(|(n, a, s, h)| Step::Report(n, a, s, h)),
        3 => (0..2usize, 0..2usize, 1..4i64).prop_map(|(l, h, t)| Step::Acquire(l, h, t)),
        2 => (0..2usize, 0..2usize, token()).prop_map(|(l, h, t)| Step::Renew(l, h, t)),
        2 => (0..2usize, 0..2usize, token()).prop_map(|(l, h, t)| Step::Release(l, h, t)),
        2 => (0..2usize, token()).prop_map(|(l, t)| Step::Expire(l, t)),
        1 => (0..2usize, 0..2usize, 0..10u8).prop_map(|(i, s, p)| Step::Migration(i, s, p)),
        1 => (0..2usize, 0..2u8).prop_map(|(n, d)| Step::PutSecret(n, d)),
        1 => (0..2usize).prop_map(Step::DeleteSecret),
        1 => (0..2usize, 0..2u8).prop_map(|(n, d)| Step::PutConfig(n, d)),
        1 => (0..2usize).prop_map(Step::DeleteConfig),
        1 => (0..2u64, 0..3u64).prop_map(|(l, t)| Step::Leadership(l, t)),
        1 => Just(Step::Backup),
        1 => Just(Step::Restore),
        1 => Just(Step::RestoreInvalid),
        1 => Just(Step::BadVersion),
    ]
}

/// Turns steps into commands against the states they will be applied to (both runs
/// see the same state, so resolving "current token" or "the backup" is deterministic).
#[derive(Default)]
struct Driver {
    backup: Option<StateSnapshot>,
    time: i64,
}

impl Driver {
    fn command(&mut self, state: &State, step: &Step) -> Command {
        self.time += 1;
        let mut cmd = command(self.time, self.op(state, step));
        if matches!(step, Step::BadVersion) {
            cmd.version = 2;
        }
        cmd
    }

    fn op(&mut self, state: &State, step: &Step) -> Op {
        let token = |l: usize, t: Option<u64>| {
            t.unwrap_or_else(|| state.lease(LEASES[l]).map_or(0, |l| l.fencing_token))
        };
        match step.clone() {
            Step::ApplyService(s, image, replicas, expected) => {
                let mut spec = spec(SERVICES[s], &format!("img:{image}"));
                spec.replicas = replicas;
                Op::ApplyService(ApplyServiceCommand {
                    spec: Some(spec),
                    expected_version: expected,
                })
            }
            Step::DeleteService(s) => Op::DeleteService(DeleteServiceCommand {
                name: SERVICES[s].into(),
            }),
            Step::Register(i, n) => {
                Op::RegisterNode(constellation_proto::v1::RegisterNodeCommand {
                    node_id: NODE_IDS[i].into(),
                    description: Some(describe(NODE_NAMES[n])),
                })
            }
            Step::Status(i, down) => Op::SetNodeStatus(SetNodeStatusCommand {
                node_id: NODE_IDS[i].into(),
                status: if down {
                    NodeStatus::Down
                } else {
                    NodeStatus::Ready
                } as i32,
                message: String::new(),
                last_seen: Some(at(self.time)),
            }),
            Step::Availability(n, a) => Op::SetNodeAvailability(SetNodeAvailabilityCommand {
                name: NODE_NAMES[n].into(),
                availability: NodeAvailability::try_from(i32::from(a)).map_or(0, |a| a as i32),
                drain_deadline: None,
                drain_batch_size: 1,
            }),
            Step::Plan(upserts, removals) => self.plan_op(&upserts, &removals),
            Step::Report(n, a, s, h) => Op::ReportStatus(ReportStatusCommand {
                node_id: NODE_IDS[n].into(),
                reports: vec![AllocationReport {
                    allocation_id: ALLOCS[a].into(),
                    status: Some(AllocationStatus {
                        state: i32::from(s),
                        health: i32::from(h),
                        ..Default::default()
                    }),
                    spec_hash: String::new(),
                }],
            }),
            Step::Acquire(l, h, ttl) => Op::AcquireLease(AcquireLeaseCommand {
                name: LEASES[l].into(),
                holder: HOLDERS[h].into(),
                ttl: Some(secs(ttl)),
            }),
            Step::Renew(l, h, t) => Op::RenewLease(RenewLeaseCommand {
                name: LEASES[l].into(),
                holder: HOLDERS[h].into(),
                fencing_token: token(l, t),
                ttl: None,
            }),
            Step::Release(l, h, t) => Op::ReleaseLease(ReleaseLeaseCommand {
                name: LEASES[l].into(),
                holder: HOLDERS[h].into(),
                fencing_token: token(l, t),
            }),
            Step::Expire(l, t) => Op::ExpireLease(ExpireLeaseCommand {
                name: LEASES[l].into(),
                fencing_token: token(l, t),
            }),
            Step::Migration(i, s, phase) => Op::PutMigration(PutMigrationCommand {
                migration: Some(Migration {
                    id: format!("m{i}"),
                    service_name: SERVICES[s].into(),
                    phase: i32::from(phase),
                    started_at: Some(at(self.time)),
                    ..Default::default()
                }),
            }),
            Step::PutSecret(n, d) => Op::PutSecret(PutSecretCommand {
                secret: Some(SecretSpec {
                    name: format!("s{n}"),
                    data: vec![d],
                    ..Default::default()
                }),
            }),
            Step::DeleteSecret(n) => Op::DeleteSecret(DeleteSecretCommand {
                name: format!("s{n}"),
            }),
            Step::PutConfig(n, d) => Op::PutConfig(PutConfigCommand {
                config: Some(ConfigSpec {
                    name: format!("c{n}"),
                    data: vec![d],
                    ..Default::default()
                }),
            }),
            Step::DeleteConfig(n) => Op::DeleteConfig(DeleteConfigCommand {
                name: format!("c{n}"),
            }),
            Step::Leadership(leader_id, term) => Op::Leadership(LeadershipCommand {
                leader_id,
                term,
                leader_api_addr: format!("10.0.0.{leader_id}:7443"),
            }),
            Step::Backup => {
                self.backup = Some(state.to_snapshot());
                Op::Leadership(state.leadership().cloned().unwrap_or_default())
            }
            Step::Restore => Op::Restore(RestoreCommand {
                state: Some(
                    self.backup
                        .clone()
                        .unwrap_or_else(|| State::new().to_snapshot()),
                ),
            }),
            Step::RestoreInvalid => Op::Restore(RestoreCommand {
                state: Some(StateSnapshot::default()),
            }),
            Step::BadVersion => Op::DeleteService(DeleteServiceCommand { name: "web".into() }),
        }
    }

    fn plan_op(&self, upserts: &[(usize, usize, usize, bool)], removals: &[usize]) -> Op {
        let mut seen = std::collections::BTreeSet::new();
        let upserts = upserts
            .iter()
            .filter(|(a, ..)| seen.insert(*a))
            .map(|&(a, s, n, stop)| {
                let mut alloc = alloc(ALLOCS[a], SERVICES[s], NODE_IDS[n]);
                if stop {
                    alloc.set_desired_state(AllocationDesiredState::Stop);
                }
                alloc
            })
            .collect();
        let removals: Vec<&str> = removals.iter().map(|&r| ALLOCS[r]).collect();
        plan(upserts, &removals)
    }
}

/// Applies every step, checking the event-index contract after each; returns the
/// state and every event emitted, in order.
fn run(steps: &[Step]) -> (State, Vec<CommandResult>, Vec<Event>) {
    let mut state = State::new();
    let mut driver = Driver::default();
    let mut results = Vec::new();
    let mut emitted = Vec::new();
    for step in steps {
        let before = state.event_index();
        let cmd = driver.command(&state, step);
        let result = state.apply(&cmd);
        assert_eq!(result.index, state.event_index());
        assert!(result.index >= before, "the index never goes back");
        match state.events_after(before, &[]) {
            Ok(events) => {
                assert_eq!(
                    events.len() as u64,
                    result.index - before,
                    "one index per event"
                );
                assert_consecutive(&events, before + 1);
                assert!(events.iter().all(|e| e.time == cmd.proposed_at));
                emitted.extend(events);
            }
            Err(_) => {
                assert!(
                    matches!(cmd.op, Some(Op::Restore(_))),
                    "only a restore compacts here"
                );
                assert_eq!(result.index, before.max(restored_floor(&cmd)) + 1);
            }
        }
        results.push(result);
    }
    (state, results, emitted)
}

fn restored_floor(cmd: &Command) -> u64 {
    match &cmd.op {
        Some(Op::Restore(r)) => r.state.as_ref().map_or(0, |s| s.event_index),
        _ => 0,
    }
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deterministic_and_gapless(steps in steps()) {
        let (a, results_a, events_a) = run(&steps);
        let (b, results_b, events_b) = run(&steps);
        prop_assert_eq!(a.to_snapshot(), b.to_snapshot());
        prop_assert_eq!(results_a, results_b);
        prop_assert_eq!(events_a, events_b);
        for pair in a.to_snapshot().events.windows(2) {
            prop_assert_eq!(pair[1].index, pair[0].index + 1);
        }
    }

    #[test]
    fn snapshot_round_trip(steps in steps()) {
        let mut state = State::new();
        let mut driver = Driver::default();
        for step in &steps {
            let cmd = driver.command(&state, step);
            state.apply(&cmd);
            let snapshot = state.to_snapshot();
            let restored = State::from_snapshot(snapshot.clone()).expect("own snapshot is valid");
            prop_assert_eq!(&restored.to_snapshot(), &snapshot);
            prop_assert_eq!(&restored, &state, "indexes rebuilt as maintained");
        }
    }

    #[test]
    fn snapshot_encoded_in_place_matches_the_copy(steps in steps()) {
        let (state, _, _) = run(&steps);
        prop_assert_eq!(state.encode_snapshot(), state.to_snapshot().encode_to_vec());
    }

    #[test]
    fn fencing_tokens_never_decrease(steps in steps()) {
        let (state, _, events) = run(&steps);
        let mut highest: BTreeMap<String, u64> = BTreeMap::new();
        for event in &events {
            let Some(Payload::Lease(e)) = &event.payload else { continue };
            let lease = e.lease.clone().unwrap_or_default();
            let seen = highest.entry(lease.name.clone()).or_default();
            if e.kind() == ChangeKind::Created {
                prop_assert!(lease.fencing_token > *seen, "{:?} after {}", lease, seen);
            } else {
                prop_assert!(lease.fencing_token >= *seen, "{:?} after {}", lease, seen);
            }
            *seen = lease.fencing_token;
        }
        for lease in state.leases() {
            prop_assert_eq!(lease.fencing_token, state.lease_token(&lease.name));
        }
    }
}

#[test]
fn alphabet_reaches_every_outcome() {
    // A fixed run through the alphabet so a broken generator shows up plainly.
    let steps = vec![
        Step::Register(0, 0),
        Step::ApplyService(0, 0, Some(2), None),
        Step::Plan(vec![(0, 0, 0, false), (1, 0, 0, false)], vec![]),
        Step::Report(
            0,
            0,
            AllocationState::Running as u8,
            HealthState::Healthy as u8,
        ),
        Step::Acquire(0, 0, 5),
        Step::Backup,
        Step::Release(0, 0, None),
        Step::Acquire(0, 1, 5),
        Step::Restore,
        Step::Acquire(0, 0, 5),
    ];
    let (state, results, _) = run(&steps);
    assert!(
        results.iter().all(|r| super::error_code(r).is_none()),
        "{results:#?}"
    );
    assert_eq!(
        state
            .lease("l1")
            .map(|l| (l.holder.as_str(), l.fencing_token)),
        Some(("h1", 3))
    );
}
