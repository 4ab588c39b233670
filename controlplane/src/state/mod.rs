//! The replicated state machine, as a pure value: applying the same commands in the
//! same order gives the same state, the same results and the same events on every
//! member.
//!
//! # Determinism
//!
//! [`State::apply`] does no I/O and reads no clock and no randomness. Every time comes
//! from `Command.proposed_at` (the proposing leader's wall clock, "now" for the
//! command) and every generated id (node ids, allocation ids, migration ids) comes
//! inside the command. Collections are `BTreeMap`s, so iteration order, event order
//! and snapshot bytes depend only on the contents. The state never acts on its own:
//! leases expire only when the leader proposes `ExpireLease`, lost allocations are
//! replaced only by a scheduler `Plan`.
//!
//! A refused command (a precondition, a stale fencing token, an unsupported version)
//! is an ordinary deterministic outcome: a `CommandError` in the result and no change
//! at all, on every member.
//!
//! # The event index
//!
//! Every change to the state produces one [`Event`] carrying the next event index:
//!
//! * gapless: each event gets exactly the previous index + 1, one index per event;
//! * never reused: the index never goes backwards, not even across a restore;
//! * a command that changes nothing emits nothing and leaves the index unchanged;
//! * `CommandResult.index` is the event index after the command applied (unchanged
//!   for errors and no-ops), so a client can watch from it and miss nothing;
//! * a `Restore` jumps the index forward (to `max(current, snapshot) + 1`) without an
//!   event and clears the retained history, so every watcher's index is older than the
//!   history and [`State::events_after`] answers [`Compacted`]: the watcher re-lists.
//!
//! The history is bounded (a member-local setting, not replicated state); events that
//! fall out of it are compacted the same way.

mod allocations;
mod events;
mod leases;
mod nodes;
mod objects;
mod queries;
mod services;
mod snapshot;
pub(crate) mod time;
mod updates;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use constellation_proto::v1::{
    Allocation, Command, CommandBatch, CommandError, CommandErrorCode, CommandResult, Config,
    LeadershipCommand, Lease, Migration, Node, SecretRecord, Service, command::Op,
    command_result::Outcome, event::Payload,
};
use pbjson_types::Timestamp;

pub use allocations::{container_up, is_healthy, is_terminal};
pub use events::{Compacted, event_topic};
pub use nodes::DEFAULT_DRAIN_DEADLINE;
pub use queries::AllocationFilter;
pub use services::spec_hash;
pub use snapshot::SnapshotWriter;
pub use updates::{runtime_hash, spec_of_version, update_in_progress, update_state};

use events::EventLog;

/// The newest `Command.version` this code applies; newer (and 0) are refused.
pub const COMMAND_VERSION: u32 = 1;

/// The `StateSnapshot.format_version` this code writes and the only one it reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Events retained for `Watch` replay unless configured otherwise.
pub const DEFAULT_HISTORY_CAPACITY: usize = 10_000;

/// The control plane's whole replicated state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    services: BTreeMap<String, Service>,
    /// By node id.
    nodes: BTreeMap<String, Node>,
    /// Node name → node id.
    node_names: BTreeMap<String, String>,
    allocations: BTreeMap<String, Allocation>,
    /// Node id → ids of the allocations placed on it.
    allocs_by_node: BTreeMap<String, BTreeSet<String>>,
    /// Service name → ids of its allocations.
    allocs_by_service: BTreeMap<String, BTreeSet<String>>,
    leases: BTreeMap<String, Lease>,
    /// Highest fencing token ever issued per lease name; never decreases.
    lease_tokens: BTreeMap<String, u64>,
    migrations: BTreeMap<String, Migration>,
    secrets: BTreeMap<String, SecretRecord>,
    configs: BTreeMap<String, Config>,
    leadership: Option<LeadershipCommand>,
    events: EventLog,
}

impl Default for State {
    fn default() -> Self {
        Self::with_history(DEFAULT_HISTORY_CAPACITY)
    }
}

/// What one op produced before the event index is filled in.
type OpResult = Result<CommandResult, CommandError>;

impl State {
    /// An empty state retaining [`DEFAULT_HISTORY_CAPACITY`] events.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state retaining at most `capacity` events for replay.
    pub fn with_history(capacity: usize) -> Self {
        Self {
            services: BTreeMap::new(),
            nodes: BTreeMap::new(),
            node_names: BTreeMap::new(),
            allocations: BTreeMap::new(),
            allocs_by_node: BTreeMap::new(),
            allocs_by_service: BTreeMap::new(),
            leases: BTreeMap::new(),
            lease_tokens: BTreeMap::new(),
            migrations: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
            leadership: None,
            events: EventLog::new(capacity),
        }
    }

    /// How many events this member retains for replay.
    pub fn history_capacity(&self) -> usize {
        self.events.capacity()
    }

    /// Changes the retained history's bound, dropping the oldest events beyond it.
    pub fn set_history_capacity(&mut self, capacity: usize) {
        self.events.set_capacity(capacity);
    }

    /// Applies one committed command. Never panics on bad input: refusals come back
    /// as `Outcome::Error` and leave the state untouched.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let mut result = self
            .apply_op(command)
            .unwrap_or_else(|error| CommandResult {
                outcome: Some(Outcome::Error(error)),
                ..Default::default()
            });
        result.index = self.events.index();
        result
    }

    fn apply_op(&mut self, command: &Command) -> OpResult {
        if command.version == 0 || command.version > COMMAND_VERSION {
            return Err(CommandError {
                code: CommandErrorCode::UnsupportedVersion as i32,
                message: format!(
                    "command version {} is not supported (this member applies 1..={COMMAND_VERSION})",
                    command.version
                ),
                field: "version".into(),
            });
        }
        let now = command
            .proposed_at
            .ok_or_else(|| invalid("proposed_at", "missing"))?;
        let op = command
            .op
            .as_ref()
            .ok_or_else(|| invalid("op", "missing"))?;
        self.dispatch(op, now)
    }

    fn dispatch(&mut self, op: &Op, now: Timestamp) -> OpResult {
        match op {
            Op::ApplyService(c) => self.apply_service(c, now),
            Op::DeleteService(c) => self.delete_service(c, now),
            Op::RegisterNode(c) => self.register_node(c, now),
            Op::SetNodeStatus(c) => self.set_node_status(c, now),
            Op::SetNodeAvailability(c) => self.set_node_availability(c, now),
            Op::Plan(c) => self.plan(c, now),
            Op::ReportStatus(c) => self.report_status(c, now),
            Op::AcquireLease(c) => self.acquire_lease(c, now),
            Op::RenewLease(c) => self.renew_lease(c, now),
            Op::ReleaseLease(c) => self.release_lease(c, now),
            Op::ExpireLease(c) => self.expire_lease(c, now),
            Op::PutMigration(c) => self.put_migration(c, now),
            Op::PutSecret(c) => self.put_secret(c, now),
            Op::DeleteSecret(c) => self.delete_secret(c),
            Op::PutConfig(c) => self.put_config(c, now),
            Op::DeleteConfig(c) => self.delete_config(c),
            Op::Leadership(c) => self.set_leadership(c, now),
            Op::Restore(c) => self.restore(c),
            Op::Batch(c) => Ok(self.apply_batch(c)),
            Op::RollbackService(c) => self.rollback_service(c, now),
        }
    }

    /// Applies each command of a batch in order, as if each were its own log entry: a
    /// refused command leaves the others unaffected. A nested batch is refused.
    fn apply_batch(&mut self, batch: &CommandBatch) -> CommandResult {
        let results = batch
            .commands
            .iter()
            .enumerate()
            .map(|(i, command)| match command.op {
                Some(Op::Batch(_)) => CommandResult {
                    outcome: Some(Outcome::Error(invalid(
                        &format!("batch.commands[{i}]"),
                        "batches do not nest",
                    ))),
                    index: self.events.index(),
                    ..Default::default()
                },
                _ => self.apply(command),
            })
            .collect();
        CommandResult {
            batch: results,
            ..done()
        }
    }

    /// Appends one event with the next index.
    fn emit(&mut self, now: Timestamp, payload: Payload) {
        self.events.push(now, payload);
    }
}

/// A result carrying `outcome` (index filled in by `apply`).
fn outcome(outcome: Outcome) -> CommandResult {
    CommandResult {
        outcome: Some(outcome),
        ..Default::default()
    }
}

/// The result of an op that has nothing to return.
fn done() -> CommandResult {
    outcome(Outcome::Done(true))
}

fn command_error(code: CommandErrorCode, message: String, field: &str) -> CommandError {
    CommandError {
        code: code as i32,
        message,
        field: field.to_owned(),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    command_error(CommandErrorCode::InvalidArgument, message.into(), field)
}

fn not_found(kind: &str, name: &str) -> CommandError {
    command_error(
        CommandErrorCode::NotFound,
        format!("{kind} {name:?} not found"),
        "",
    )
}

fn failed_precondition(message: String) -> CommandError {
    command_error(CommandErrorCode::FailedPrecondition, message, "")
}

fn already_exists(message: String) -> CommandError {
    command_error(CommandErrorCode::AlreadyExists, message, "")
}
