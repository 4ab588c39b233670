//! Durable Raft storage on sled: the log ([`LogStore`]) and the state machine
//! ([`StateMachineStore`]) of one member, both in ONE sled database at
//! `<data_dir>/raft`, opened by [`open`].
//!
//! # Layout on disk
//!
//! Three trees in the one database:
//!
//! | tree       | key                                | value                                    |
//! |------------|------------------------------------|------------------------------------------|
//! | `logs`     | log index, big-endian `u64` bytes  | `LogEntry` (raft.proto), via [`convert::encode_entry`] |
//! | `meta`     | `vote`                             | `RaftVote`                               |
//! |            | `committed`                        | `LogId` (absent = nothing committed yet) |
//! |            | `last_purged`                      | `LogId` (absent = nothing purged yet)    |
//! | `snapshot` | `meta`                             | `SnapshotMetaPb` (raft.proto)            |
//! |            | `data`                             | `StateSnapshot` (state.proto)            |
//!
//! Big-endian keys make sled's byte order the index order, so ranges and `last()` are
//! index ranges and the last entry. Everything is protobuf, so a store written by one
//! release is read by the next.
//!
//! The persisted state machine is only the latest snapshot: at [`open`] the in-memory
//! [`State`] is rebuilt from it, [`RaftStateMachine::applied_state`] reports the
//! snapshot's last log id and membership, and openraft re-applies the committed log
//! after it (the log is never purged beyond the stored snapshot, and the committed log
//! id is kept in `meta`). The snapshot's `meta` and `data` are written in one sled batch,
//! so they always belong together. The bytes a snapshot carries over the wire
//! ([`openraft::Snapshot::snapshot`]) are exactly the `data` value.
//!
//! # Durability
//!
//! Nothing is acknowledged before it is on disk: `save_vote`, `truncate` and `purge`
//! flush before returning, `append` reports completion to openraft's callback only
//! after the flush has completed, and a built or installed snapshot is flushed
//! before it is returned or reported installed. A purge records the last purged log id
//! durably and deletes the entries up to it in the background (see `purge`): the log
//! reads as starting after that id at once, and never shows a hole. Only
//! `save_committed` is not flushed on its own (sled flushes within half a second, and
//! any later flush covers it): losing it just means re-applying a little less on
//! restart, which openraft tolerates.

// openraft's `StorageError` is the error type of every storage trait method; the
// helpers return it too rather than boxing it only to unbox it at the trait boundary.
#![allow(clippy::result_large_err)]

use super::convert;
use super::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};
use crate::Error;
use crate::state::{DEFAULT_HISTORY_CAPACITY, State};
use constellation_proto::v1::{self as pb, CommandResult, StateSnapshot};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, StorageIOError,
};
use prost::Message;
use std::fmt::{Debug, Display};
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{RwLock, watch};

#[cfg(test)]
mod tests;

mod growth;
mod recent;
pub use growth::LogGrowth;
use recent::RecentEntries;

/// sled's page cache for the raft database. The log and snapshots are read mostly
/// right after being written, so a modest cache is enough.
pub const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Tree of log entries, keyed by big-endian index.
pub const LOGS_TREE: &str = "logs";
/// Tree of the vote, committed and last purged log ids.
pub const META_TREE: &str = "meta";
/// Tree of the current snapshot (its meta and data).
pub const SNAPSHOT_TREE: &str = "snapshot";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

/// The member's shared, in-memory state machine. The gRPC read path takes read locks;
/// only [`StateMachineStore`] (driven by openraft) takes the write lock.
pub type SharedState = Arc<RwLock<State>>;

/// Opens (creating if needed) the Raft database at `path` (the member's
/// `data_dir/raft`) and returns its log store and state machine, the state rebuilt
/// from the stored snapshot if there is one and retaining the default event history.
pub fn open(path: &Path) -> Result<(LogStore, StateMachineStore), Error> {
    open_with_history(path, DEFAULT_HISTORY_CAPACITY)
}

/// [`open`], the state retaining at most `history_capacity` events for Watch replay
/// (a member-local setting, kept across installed snapshots).
pub fn open_with_history(
    path: &Path,
    history_capacity: usize,
) -> Result<(LogStore, StateMachineStore), Error> {
    let db = open_db(path)
        .map_err(|e| Error::Internal(format!("opening raft store at {}: {e}", path.display())))?;
    let tree = |name: &str| {
        db.open_tree(name).map_err(|e| {
            Error::Internal(format!(
                "opening raft store tree {name:?} at {}: {e}",
                path.display()
            ))
        })
    };
    let logs = tree(LOGS_TREE)?;
    let meta = tree(META_TREE)?;
    let snapshot = tree(SNAPSHOT_TREE)?;
    let growth = Arc::new(LogGrowth::default());
    let log_store = LogStore {
        logs,
        meta,
        snapshot: snapshot.clone(),
        recent: Arc::default(),
        growth: Arc::clone(&growth),
        first_readable: Arc::default(),
        deleting: Arc::default(),
    };
    let last_purged = log_store
        .read_log_id(KEY_LAST_PURGED, "last purged")
        .map_err(|e| Error::Internal(format!("reading raft store at {}: {e}", path.display())))?;
    log_store.first_readable.store(
        last_purged.map_or(0, |id| id.index.saturating_add(1)),
        Ordering::Release,
    );
    let sm = StateMachineStore::load(db, snapshot, history_capacity, Arc::clone(&growth)).map_err(
        |e| Error::Internal(format!("loading raft snapshot at {}: {e}", path.display())),
    )?;
    // What the log holds past the snapshot counts toward the next one. A read of at
    // most a limit's worth of log (64 MiB by default) normally, once per start.
    let covered = sm.last_applied().map_or(0, |id| id.index + 1);
    let (mut entries, mut bytes) = (0, 0);
    for value in log_store.logs.range(index_key(covered)..).values() {
        let value = value
            .map_err(|e| Error::Internal(format!("reading raft log at {}: {e}", path.display())))?;
        entries += 1;
        bytes += value.len() as u64;
    }
    growth.resume(entries, bytes);
    Ok((log_store, sm))
}

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its file lock: sled's
/// background threads of a just-dropped handle (or a process still exiting) release it
/// a moment after the handle is gone.
fn open_db(path: &Path) -> sled::Result<sled::Db> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_CAPACITY_BYTES);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            // sled reports a held lock as ErrorKind::Other with this message.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// How long [`open_db`] waits for another handle to release the database's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Errors and encodings

/// The error `e` with what was being done when it happened.
fn ctx<E: std::error::Error + 'static>(e: &E, doing: impl Display) -> AnyError {
    AnyError::new(e).add_context(|| doing)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, prost::DecodeError> {
    M::decode(bytes)
}

// ---------------------------------------------------------------------------------------
// Log

/// The Raft log, vote and log pointers. Cheap to clone (sled trees are shared handles);
/// a clone is the log reader openraft's replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    logs: sled::Tree,
    meta: sled::Tree,
    snapshot: sled::Tree,
    /// The newest entries, shared by every clone (see [`recent`]).
    recent: Arc<RecentEntries>,
    /// Entries and bytes appended since the last snapshot, shared with the state
    /// machine.
    growth: Arc<LogGrowth>,
    /// First index the log answers for: one past the last purged entry. Purged entries
    /// are deleted in the background, so some may still be in `logs` below it.
    first_readable: Arc<AtomicU64>,
    /// Held by the background deletion of purged entries, one at a time.
    deleting: Arc<Mutex<()>>,
}

impl LogStore {
    /// Whether this member has any Raft state yet: a vote, a log entry (or a purged
    /// one), or a snapshot. A member without state bootstraps or joins; one with state
    /// resumes.
    pub fn is_initialized(&self) -> Result<bool, Error> {
        let err = |e: sled::Error| Error::Internal(format!("checking raft store state: {e}"));
        Ok(self.meta.contains_key(KEY_VOTE).map_err(err)?
            || self.meta.contains_key(KEY_LAST_PURGED).map_err(err)?
            || !self.logs.is_empty()
            || self.snapshot.contains_key(KEY_SNAPSHOT_META).map_err(err)?)
    }

    /// The log's growth since the last snapshot, for the size-triggered snapshots.
    pub fn growth(&self) -> Arc<LogGrowth> {
        Arc::clone(&self.growth)
    }

    fn read_log_id(&self, key: &[u8], what: &str) -> Result<Option<LogId>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| {
            StorageIOError::read_logs(ctx(&e, format_args!("reading {what} log id")))
        })?
        else {
            return Ok(None);
        };
        let id: pb::LogId = decode(&bytes).map_err(|e| {
            StorageIOError::read_logs(ctx(&e, format_args!("decoding {what} log id")))
        })?;
        Ok(Some(convert::log_id_from_pb(&id)))
    }

    fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, StorageError> {
        let index = key_index(key).ok_or_else(|| {
            StorageIOError::read_logs(AnyError::error(format!(
                "log key of {} bytes, want 8",
                key.len()
            )))
        })?;
        convert::decode_entry(value).map_err(|e| {
            StorageIOError::read_log_at_index(index, ctx(&e, "decoding log entry")).into()
        })
    }

    /// Makes every write so far durable. sled flushes the whole database (all trees
    /// share one write-ahead log), so this covers `meta` as well as `logs`.
    ///
    /// The flush runs on the calling task's thread, which blocks for one disk sync
    /// (about 0.1-0.3 ms here). `flush_async` would hand it to sled's thread pool,
    /// whose every job wakes all seven of its idle threads (`notify_all`): with it, a
    /// lone client's writes cost the members about 15% more CPU and ran 2-6% slower
    /// (interleaved A/B runs, 2026-12-03). The pool still writes the buffer itself.
    async fn flush(&self) -> Result<(), sled::Error> {
        self.logs.flush().map(|_| ())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        // Purged entries not yet deleted are not part of the log.
        let start = start.max(self.first_readable.load(Ordering::Acquire));
        // Exclusive end; `None` is "to the end of the log".
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = self.recent.get(start, end) {
            return Ok(entries);
        }
        let iter = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.logs.range(index_key(start)..index_key(end)),
            None => self.logs.range(index_key(start)..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|e| {
                StorageIOError::read_logs(ctx(&e, format_args!("reading log entries {range:?}")))
            })?;
            entries.push(Self::decode_entry(&key, &value)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.read_log_id(KEY_LAST_PURGED, "last purged")?;
        let last = self
            .logs
            .last()
            .map_err(|e| StorageIOError::read_logs(ctx(&e, "reading the last log entry")))?;
        let last_entry = match last {
            Some((key, value)) => Some(Self::decode_entry(&key, &value)?.log_id),
            None => None,
        };
        // An entry at or below the purged id is one not yet deleted (see `purge`): then
        // everything is purged.
        let last_log_id = last_entry
            .filter(|id| last_purged_log_id.is_none_or(|p| id.index > p.index))
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta
            .insert(KEY_VOTE, convert::vote_to_pb(vote).encode_to_vec())
            .map_err(|e| StorageIOError::write_vote(ctx(&e, "writing vote")))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(ctx(&e, "flushing vote")))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let Some(bytes) = self
            .meta
            .get(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(ctx(&e, "reading vote")))?
        else {
            return Ok(None);
        };
        let vote: pb::RaftVote =
            decode(&bytes).map_err(|e| StorageIOError::read_vote(ctx(&e, "decoding vote")))?;
        Ok(Some(convert::vote_from_pb(&vote)))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let result = match committed {
            Some(id) => self
                .meta
                .insert(KEY_COMMITTED, convert::log_id_to_pb(&id).encode_to_vec()),
            None => self.meta.remove(KEY_COMMITTED),
        };
        result.map_err(|e| StorageIOError::write(ctx(&e, "writing committed log id")))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_log_id(KEY_COMMITTED, "committed")
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut last = None;
        let mut appended = Vec::new();
        let mut total = 0;
        for entry in entries {
            let bytes = convert::encode_entry(&entry);
            let size = bytes.len();
            total += size as u64;
            batch.insert(&index_key(entry.log_id.index), bytes);
            last = Some(entry.log_id);
            appended.push((entry, size));
        }
        self.logs.apply_batch(batch).map_err(|e| match last {
            Some(id) => {
                StorageIOError::write_log_entry(id, ctx(&e, "writing log entries, the last being"))
            }
            None => StorageIOError::write_logs(ctx(&e, "writing log entries")),
        })?;
        self.growth.appended(appended.len() as u64, total);
        self.recent.appended(appended);
        // The entries are readable now; acknowledge them only once they are on disk.
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(ctx(&e, "flushing appended log entries"));
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let write_err = |e: &sled::Error, doing: &str| {
            StorageIOError::write_logs(ctx(e, format_args!("{doing} log entries from {log_id} on")))
        };
        let mut batch = sled::Batch::default();
        for key in self.logs.range(index_key(log_id.index)..).keys() {
            batch.remove(key.map_err(|e| write_err(&e, "listing"))?);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| write_err(&e, "truncating"))?;
        self.recent.truncated(log_id.index);
        self.flush()
            .await
            .map_err(|e| write_err(&e, "flushing truncated"))?;
        Ok(())
    }

    /// Records `log_id` as the last purged entry (durably) and returns; the entries up
    /// to it are deleted in the background. openraft 0.9 awaits a purge inside its core,
    /// so deleting hundreds of large entries here stalled appends and replication (a
    /// 256-client round's p99 reached 1.19 s). The log reads as starting after `log_id`
    /// at once, and since only its front is deleted it never shows a hole; entries a
    /// crash leaves behind are deleted by the next purge.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let write_err = |e: &dyn Display, doing: &str| {
            StorageIOError::write_logs(AnyError::error(format!(
                "{doing} log entries up to {log_id}: {e}"
            )))
        };
        let purged = convert::log_id_to_pb(&log_id).encode_to_vec();
        self.meta
            .insert(KEY_LAST_PURGED, purged)
            .map_err(|e| write_err(&e, "recording purged"))?;
        self.flush()
            .await
            .map_err(|e| write_err(&e, "flushing purged"))?;
        self.first_readable
            .fetch_max(log_id.index.saturating_add(1), Ordering::AcqRel);
        self.recent.purged(log_id.index);
        // On a blocking thread at once (not a task that waits for a turn), so the
        // deletion never outlives the store by more than its own run.
        let logs = self.logs.clone();
        let deleting = Arc::clone(&self.deleting);
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = deleting.lock().unwrap_or_else(PoisonError::into_inner);
            match delete_upto(&logs, log_id.index) {
                Ok(n) => {
                    tracing::debug!(%log_id, entries = n, "raft store: deleted purged entries");
                }
                Err(e) => tracing::warn!(
                    %log_id,
                    error = %e,
                    "raft store: deleting purged entries failed; the next purge retries"
                ),
            }
        });
        Ok(())
    }
}

/// Deletes the entries of `logs` up to `index`, inclusive; how many there were. One
/// key at a time, front first: a batch of a thousand large entries takes sled's
/// exclusive write lock for tens of milliseconds, and appends wait for it.
fn delete_upto(logs: &sled::Tree, index: u64) -> sled::Result<usize> {
    let mut n = 0;
    while let Some((key, _)) = logs.first()? {
        if key_index(&key).is_none_or(|i| i > index) {
            break;
        }
        logs.remove(key)?;
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------
// State machine

/// How far the state machine has applied the log.
#[derive(Debug, Clone, Default)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Machine {
    db: sled::Db,
    snapshot: sled::Tree,
    state: SharedState,
    /// Changed only while `state`'s write lock is held, so whoever holds the state
    /// (read or write) sees the matching `Applied`.
    applied: Mutex<Applied>,
    applied_tx: watch::Sender<u64>,
    /// Serialises snapshot writes, so an older snapshot never replaces a newer one.
    snapshot_write: tokio::sync::Mutex<()>,
    /// Reset whenever the state is captured for a snapshot or replaced by one.
    growth: Arc<LogGrowth>,
}

impl Machine {
    fn applied(&self) -> Applied {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records how far `state` has applied (the caller holds its write lock) and tells
    /// `subscribe_applied` receivers.
    fn set_applied_and_publish(&self, state: &State, applied: Applied) {
        let index = progress_index(state);
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner) = applied;
        self.applied_tx.send_if_modified(|current| {
            let changed = *current != index;
            *current = index;
            changed
        });
    }

    /// Stores `meta` and `data` as the current snapshot, durably, unless the stored one
    /// is newer.
    async fn write_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let _guard = self.snapshot_write.lock().await;
        if let Some(current) = read_snapshot_meta(&self.snapshot)?
            && current.last_log_id > meta.last_log_id
        {
            tracing::info!(%current, skipped = %meta, "raft store: keeping the newer stored snapshot");
            return Ok(());
        }
        let write_err = |e: &sled::Error, doing: &str| {
            StorageIOError::write_snapshot(Some(meta.signature()), ctx(e, doing))
        };
        let mut batch = sled::Batch::default();
        batch.insert(
            KEY_SNAPSHOT_META,
            convert::snapshot_meta_to_pb(meta).encode_to_vec(),
        );
        batch.insert(KEY_SNAPSHOT_DATA, data);
        self.snapshot
            .apply_batch(batch)
            .map_err(|e| write_err(&e, "writing snapshot"))?;
        self.snapshot
            .flush_async()
            .await
            .map_err(|e| write_err(&e, "flushing snapshot"))?;
        Ok(())
    }
}

/// How far the state has moved, as published to `subscribe_applied`: its event index.
fn progress_index(state: &State) -> u64 {
    state.event_index()
}

/// The meta of the snapshot stored in `tree`.
fn read_snapshot_meta(tree: &sled::Tree) -> Result<Option<SnapshotMeta>, StorageError> {
    let Some(meta) = tree
        .get(KEY_SNAPSHOT_META)
        .map_err(|e| StorageIOError::read_snapshot(None, ctx(&e, "reading snapshot meta")))?
    else {
        return Ok(None);
    };
    let meta: pb::SnapshotMetaPb = decode(&meta)
        .map_err(|e| StorageIOError::read_snapshot(None, ctx(&e, "decoding snapshot meta")))?;
    Ok(Some(convert::snapshot_meta_from_pb(&meta)))
}

/// The snapshot stored in `tree`: its meta and the encoded `StateSnapshot`.
fn read_snapshot(tree: &sled::Tree) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
    let Some(meta) = read_snapshot_meta(tree)? else {
        return Ok(None);
    };
    let data = tree.get(KEY_SNAPSHOT_DATA).map_err(|e| {
        StorageIOError::read_snapshot(Some(meta.signature()), ctx(&e, "reading snapshot data"))
    })?;
    let data = data.ok_or_else(|| {
        StorageIOError::read_snapshot(
            Some(meta.signature()),
            AnyError::error("snapshot meta without data"),
        )
    })?;
    Ok(Some((meta, data.to_vec())))
}

/// The state a snapshot's data (an encoded `StateSnapshot`) records, retaining at most
/// `history_capacity` events.
fn state_from_bytes(
    meta: &SnapshotMeta,
    data: &[u8],
    history_capacity: usize,
) -> Result<State, StorageError> {
    let snapshot: StateSnapshot = decode(data).map_err(|e| {
        StorageIOError::read_snapshot(Some(meta.signature()), ctx(&e, "decoding snapshot data"))
    })?;
    State::from_snapshot_with_history(snapshot, history_capacity).map_err(|e| {
        let e = ctx(&e, "restoring state from snapshot");
        StorageIOError::read_snapshot(Some(meta.signature()), e).into()
    })
}

/// The replicated [`State`] in memory, how far it has applied the log, and the current
/// snapshot on disk. Cheap to clone (a shared handle); a clone is also the snapshot
/// builder.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Machine>,
}

impl StateMachineStore {
    /// The state machine of `db`, rebuilt from its stored snapshot (or empty).
    fn load(
        db: sled::Db,
        snapshot: sled::Tree,
        history_capacity: usize,
        growth: Arc<LogGrowth>,
    ) -> Result<Self, StorageError> {
        let (state, applied) = match read_snapshot(&snapshot)? {
            Some((meta, data)) => {
                let state = state_from_bytes(&meta, &data, history_capacity)?;
                let applied = Applied {
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership,
                };
                (state, applied)
            }
            None => (State::with_history(history_capacity), Applied::default()),
        };
        let (applied_tx, _) = watch::channel(progress_index(&state));
        let machine = Machine {
            db,
            snapshot,
            state: Arc::new(RwLock::new(state)),
            applied: Mutex::new(applied),
            applied_tx,
            snapshot_write: tokio::sync::Mutex::new(()),
            growth,
        };
        Ok(Self {
            inner: Arc::new(machine),
        })
    }

    /// The shared in-memory state, for reads. Hold read guards briefly: applying the
    /// log waits for them.
    pub fn state(&self) -> SharedState {
        Arc::clone(&self.inner.state)
    }

    /// The state's event index ([`State::event_index`]), republished whenever an
    /// applied batch or an installed snapshot moves it, so Watch streams wake up. The
    /// current value is there at once.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.inner.applied_tx.subscribe()
    }

    /// The id of the last log entry applied to the state, if any.
    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.applied().last_applied
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let started = std::time::Instant::now();
        // The state and how far it has applied, taken together under the read lock.
        let (writer, applied) = {
            let state = self.inner.state.read().await;
            self.inner.growth.snapshot_built();
            (state.begin_snapshot(), self.inner.applied())
        };
        let locked = started.elapsed();
        let data = writer.finish();
        let encoded = started.elapsed();
        // Unique across restarts (sled persists its id generator).
        let counter = self.inner.db.generate_id().map_err(|e| {
            StorageIOError::write_snapshot(None, ctx(&e, "generating a snapshot id"))
        })?;
        let snapshot_id = match &applied.last_applied {
            Some(id) => format!("{}-{}-{counter}", id.leader_id.term, id.index),
            None => format!("none-{counter}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
            snapshot_id,
        };
        self.inner.write_snapshot(&meta, &data).await?;
        tracing::info!(
            %meta,
            bytes = data.len(),
            locked_ms = locked.as_millis() as u64,
            encode_ms = (encoded - locked).as_millis() as u64,
            write_ms = (started.elapsed() - encoded).as_millis() as u64,
            "raft store: built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.inner.applied();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut results = Vec::with_capacity(entries.size_hint().0);
        let mut state = self.inner.state.write().await;
        let mut applied = self.inner.applied();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            // openraft wants one response per entry, whatever its kind.
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::default(),
                EntryPayload::Normal(command) => state.apply(&command),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::default()
                }
            };
            results.push(result);
        }
        self.inner.set_applied_and_publish(&state, applied);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // How much event history to retain is this member's setting, not the snapshot's.
        let history_capacity = self.inner.state.read().await.history_capacity();
        let new_state = state_from_bytes(meta, &data, history_capacity)?;
        // Durable before the state moves to it.
        self.inner.write_snapshot(meta, &data).await?;
        let applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let mut state = self.inner.state.write().await;
        *state = new_state;
        self.inner.growth.snapshot_installed();
        self.inner.set_applied_and_publish(&state, applied);
        drop(state);
        tracing::info!(%meta, bytes = data.len(), "raft store: installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let snapshot = read_snapshot(&self.inner.snapshot)?;
        Ok(snapshot.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
