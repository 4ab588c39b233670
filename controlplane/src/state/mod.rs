//! The replicated state machine, as a pure value: applying the same commands in the
//! same order gives the same state and the same events on every member. No I/O, no
//! clock, no randomness: time and ids come inside the commands.

use constellation_proto::v1::{Command, CommandResult, StateSnapshot};

/// The control plane's whole replicated state.
#[derive(Debug, Clone, Default)]
pub struct State {}

impl State {
    /// Applies one committed command.
    pub fn apply(&mut self, _command: &Command) -> CommandResult {
        todo!("state machine")
    }

    /// The whole state, for snapshots and operator backups.
    pub fn to_snapshot(&self) -> StateSnapshot {
        todo!("state machine")
    }

    /// Rebuilds the state a snapshot recorded.
    pub fn from_snapshot(_snapshot: StateSnapshot) -> Result<Self, crate::Error> {
        todo!("state machine")
    }
}
