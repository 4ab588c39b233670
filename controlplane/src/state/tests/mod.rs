//! Tests of the state machine: one file per area, shared builders here.

mod allocations;
mod batch;
mod events;
mod leases;
mod nodes;
mod objects;
mod props;
mod services;
mod snapshot;

use constellation_proto::v1::{
    Allocation, AllocationReport, AllocationState, AllocationStatus, Command, CommandErrorCode,
    CommandResult, Event, HealthState, NodeDescription, NodeResources, PlanCommand,
    RegisterNodeCommand, ReportStatusCommand, ServiceSpec, command::Op, command_result::Outcome,
};
use pbjson_types::{Duration, Timestamp};

use super::{COMMAND_VERSION, State};

pub(super) fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

pub(super) fn secs(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

pub(super) fn command(time: i64, op: Op) -> Command {
    Command {
        version: COMMAND_VERSION,
        proposed_at: Some(at(time)),
        op: Some(op),
    }
}

/// Applies `op` at `time` and checks the result's index is the state's.
pub(super) fn apply(state: &mut State, time: i64, op: Op) -> CommandResult {
    let result = state.apply(&command(time, op));
    assert_eq!(result.index, state.event_index());
    result
}

pub(super) fn error_code(result: &CommandResult) -> Option<CommandErrorCode> {
    match &result.outcome {
        Some(Outcome::Error(e)) => Some(e.code()),
        _ => None,
    }
}

pub(super) fn assert_error(result: &CommandResult, code: CommandErrorCode) {
    assert_eq!(error_code(result), Some(code), "{result:?}");
}

pub(super) fn assert_ok(result: &CommandResult) {
    assert_eq!(error_code(result), None, "{result:?}");
}

pub(super) fn spec(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: image.into(),
        ..Default::default()
    }
}

pub(super) fn describe(name: &str) -> NodeDescription {
    NodeDescription {
        name: name.into(),
        capacity: Some(NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        }),
        ..Default::default()
    }
}

pub(super) fn register(state: &mut State, time: i64, id: &str, name: &str) -> CommandResult {
    let op = Op::RegisterNode(RegisterNodeCommand {
        node_id: id.into(),
        description: Some(describe(name)),
    });
    apply(state, time, op)
}

/// An allocation of `service` on node `node_id` (named `node_id` too, upper-cased).
pub(super) fn alloc(id: &str, service: &str, node_id: &str) -> Allocation {
    Allocation {
        id: id.into(),
        service_name: service.into(),
        service_version: 1,
        node_id: node_id.into(),
        node_name: node_id.to_uppercase(),
        reserved: Some(NodeResources {
            cpu_millis: 100,
            memory_bytes: 1000,
        }),
        ..Default::default()
    }
}

pub(super) fn plan(upserts: Vec<Allocation>, removals: &[&str]) -> Op {
    Op::Plan(PlanCommand {
        upserts,
        removals: removals.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

pub(super) fn report(
    node_id: &str,
    alloc_id: &str,
    state: AllocationState,
    health: HealthState,
) -> Op {
    Op::ReportStatus(ReportStatusCommand {
        node_id: node_id.into(),
        reports: vec![AllocationReport {
            allocation_id: alloc_id.into(),
            status: Some(AllocationStatus {
                state: state as i32,
                health: health as i32,
                ..Default::default()
            }),
            spec_hash: String::new(),
        }],
    })
}

/// Every retained event after `from`.
pub(super) fn events_since(state: &State, from: u64) -> Vec<Event> {
    state.events_after(from, &[]).expect("history retained")
}

/// Event indexes run from `first` up by one.
pub(super) fn assert_consecutive(events: &[Event], first: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index, first + i as u64, "{events:#?}");
    }
}
