//! Group commit on the leader: the one way commands enter the Raft log.
//!
//! openraft 0.9 appends each `client_write` as its own log entry and waits for that
//! append to be flushed inside its core task before it replicates anything, so
//! concurrent writers would queue behind one fsync each on every member. The proposer
//! keeps at most [`MAX_IN_FLIGHT`] proposals open; the commands that arrive meanwhile
//! are gathered into one [`CommandBatch`](pb::CommandBatch) entry: one append, one
//! flush and one replication round for the whole batch. A lone writer never waits for
//! a batch to fill: with nothing in flight its command is proposed at once, unwrapped.

use crate::cluster::now;
use crate::raft::{LogCommand, Member, NodeId, Raft};
use crate::state::COMMAND_VERSION;
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Proposals open at once. One keeps batches largest; two lets the next batch's
/// leader append overlap the previous batch's replication.
pub const MAX_IN_FLIGHT: usize = 2;

/// Most commands in one batch entry.
pub const MAX_BATCH_COMMANDS: usize = 1024;

/// A batch stops growing past this many encoded bytes, so an entry stays far below
/// the peer transport's message limit (a lone larger command, such as a restore, is
/// proposed on its own).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Commands waiting for a proposal slot; writers beyond it wait to enqueue.
const QUEUE: usize = 8192;

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, Member>>;

struct Pending {
    command: pb::Command,
    reply: oneshot::Sender<Result<pb::CommandResult>>,
}

/// Handle on the proposer task of one member. Cheap to clone; the task ends when the
/// last handle is dropped and its open proposals have finished.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    pub fn spawn(raft: Raft) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, Gatherer { rx, carry: None }));
        Self { queue }
    }

    /// Commits `command` (on this member, which must lead) and returns what applying
    /// it produced.
    pub async fn propose(&self, command: pb::Command) -> Result<pb::CommandResult> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("raft is shutting down".into());
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut gatherer: Gatherer) {
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            // Finishing proposals first frees slots before new batches are cut.
            biased;
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            batch = gatherer.next(), if in_flight.len() < MAX_IN_FLIGHT => match batch {
                Some(batch) => {
                    in_flight.spawn(commit(raft.clone(), batch));
                }
                None => break,
            },
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// Cuts batches from the queue: everything waiting, up to the batch bounds.
struct Gatherer {
    rx: mpsc::Receiver<Pending>,
    /// The command that did not fit the previous batch; it opens the next one.
    carry: Option<Pending>,
}

impl Gatherer {
    async fn next(&mut self) -> Option<Vec<Pending>> {
        let first = match self.carry.take() {
            Some(first) => first,
            None => self.rx.recv().await?,
        };
        let mut bytes = first.command.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            let Ok(next) = self.rx.try_recv() else { break };
            let len = next.command.encoded_len();
            if bytes + len > MAX_BATCH_BYTES {
                self.carry = Some(next);
                break;
            }
            bytes += len;
            batch.push(next);
        }
        Some(batch)
    }
}

async fn commit(raft: Raft, mut batch: Vec<Pending>) {
    tracing::trace!(commands = batch.len(), "proposing");
    if batch.len() == 1 {
        let Pending { command, reply } = batch.remove(0);
        let result = raft
            .client_write(LogCommand::shared(command))
            .await
            .map(|response| response.data)
            .map_err(|e| client_write_error(&e));
        let _ = reply.send(result);
        return;
    }
    let (commands, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.command, pending.reply))
        .unzip();
    let envelope = pb::Command {
        version: COMMAND_VERSION,
        proposed_at: Some(now()),
        op: Some(pb::command::Op::Batch(pb::CommandBatch { commands })),
    };
    match raft.client_write(LogCommand::shared(envelope)).await {
        Ok(response) if response.data.batch.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(response.data.batch) {
                let _ = reply.send(Ok(result));
            }
        }
        // The envelope itself was refused (a version this member does not apply):
        // every command in it shares that outcome.
        Ok(response) => {
            for reply in replies {
                let _ = reply.send(Ok(response.data.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(client_write_error(&e)));
            }
        }
    }
}

/// A failed `client_write` (or membership change) as the error callers see.
pub fn client_write_error(e: &WriteError) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Error::FailedPrecondition(format!("leadership moved to {:?}", f.leader_id))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::FailedPrecondition(e.to_string())
        }
        RaftError::Fatal(e) => Error::Unavailable(format!("raft stopped: {e}")),
    }
}
