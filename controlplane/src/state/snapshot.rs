//! Snapshots: writing the state as a `StateSnapshot` (every collection sorted by key,
//! so equal states give equal bytes), reading one back with validation and index
//! rebuilding, and the `Restore` command.

use std::collections::BTreeMap;
use std::sync::Arc;

use constellation_proto::v1::{CommandError, Event, RestoreCommand, StateSnapshot};

use super::events::EventLog;
use super::{DEFAULT_HISTORY_CAPACITY, OpResult, SNAPSHOT_FORMAT_VERSION, State, done, invalid};
use crate::{Error, FieldViolations};

/// The largest event index or fencing token a snapshot may carry (2^62).
const MAX_COUNTER: u64 = 1 << 62;

impl State {
    /// The whole state, for snapshots and operator backups. Deterministic: equal
    /// states give equal snapshots (and equal encodings).
    pub fn to_snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            event_index: self.events.index(),
            services: self.services.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
            allocations: self.allocations.values().cloned().collect(),
            leases: self.leases.values().cloned().collect(),
            migrations: self.migrations.values().cloned().collect(),
            secrets: self.secrets.values().cloned().collect(),
            configs: self.configs.values().cloned().collect(),
            events: self.events.retained().cloned().collect(),
            lease_tokens: self.lease_tokens.clone(),
            leadership: self.leadership.clone(),
        }
    }

    /// [`Self::to_snapshot`] encoded: [`Self::begin_snapshot`] then
    /// [`SnapshotWriter::finish`].
    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.begin_snapshot().finish()
    }

    /// Starts encoding [`Self::to_snapshot`]: the objects are written out at once,
    /// straight from the state (no copy first), and the event history is taken shared.
    /// Raft snapshots are built under the state's read lock, which holds up apply;
    /// the history (10,000 whole objects by default, most of a snapshot) is encoded by
    /// [`SnapshotWriter::finish`] after the lock is released. A test checks the bytes
    /// equal `to_snapshot().encode_to_vec()`.
    pub fn begin_snapshot(&self) -> SnapshotWriter {
        use prost::encoding::{btree_map, message, string, uint32, uint64};
        // Field numbers of `StateSnapshot` (state.proto), in prost's order (by number);
        // proto3 leaves zero scalars and absent messages out.
        let mut head = Vec::new();
        if SNAPSHOT_FORMAT_VERSION != 0 {
            uint32::encode(1, &SNAPSHOT_FORMAT_VERSION, &mut head);
        }
        let index = self.events.index();
        if index != 0 {
            uint64::encode(2, &index, &mut head);
        }
        encode_each(3, self.services.values(), &mut head);
        encode_each(4, self.nodes.values(), &mut head);
        encode_each(5, self.allocations.values(), &mut head);
        encode_each(6, self.leases.values(), &mut head);
        encode_each(7, self.migrations.values(), &mut head);
        encode_each(8, self.secrets.values(), &mut head);
        encode_each(9, self.configs.values(), &mut head);
        // Field 10 is the events; 11 and 12 follow them.
        let mut tail = Vec::new();
        btree_map::encode(
            string::encode,
            string::encoded_len,
            uint64::encode,
            uint64::encoded_len,
            11,
            &self.lease_tokens,
            &mut tail,
        );
        if let Some(leadership) = &self.leadership {
            message::encode(12, leadership, &mut tail);
        }
        SnapshotWriter {
            head,
            events: self.events.retained_shared(),
            tail,
        }
    }

    /// Rebuilds the state a snapshot recorded, retaining the default history.
    pub fn from_snapshot(snapshot: StateSnapshot) -> Result<Self, Error> {
        Self::from_snapshot_with_history(snapshot, DEFAULT_HISTORY_CAPACITY)
    }

    /// Rebuilds the state a snapshot recorded, retaining at most `capacity` of its
    /// events. Refuses other format versions and inconsistent contents (missing or
    /// duplicate keys, events out of sequence, fencing tokens above the recorded
    /// high-water mark) with `Error::InvalidArgument` naming every problem.
    pub fn from_snapshot_with_history(
        snapshot: StateSnapshot,
        capacity: usize,
    ) -> Result<Self, Error> {
        let mut v = FieldViolations::default();
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            v.push(
                "format_version",
                format!(
                    "unsupported snapshot format version {} (this member reads {SNAPSHOT_FORMAT_VERSION})",
                    snapshot.format_version
                ),
            );
            return Err(Error::InvalidArgument(v));
        }
        check_events(&snapshot.events, snapshot.event_index, &mut v);
        check_counters(&snapshot, &mut v);
        let mut state = Self::with_history(capacity);
        state.services = keyed(snapshot.services, "services", &mut v, |s| {
            s.spec.as_ref().map(|spec| spec.name.as_str())
        });
        state.nodes = keyed(snapshot.nodes, "nodes", &mut v, |n| Some(n.id.as_str()));
        state.allocations = keyed(snapshot.allocations, "allocations", &mut v, |a| {
            Some(a.id.as_str())
        });
        state.leases = keyed(snapshot.leases, "leases", &mut v, |l| Some(l.name.as_str()));
        state.migrations = keyed(snapshot.migrations, "migrations", &mut v, |m| {
            Some(m.id.as_str())
        });
        state.secrets = keyed(snapshot.secrets, "secrets", &mut v, |s| {
            s.spec.as_ref().map(|spec| spec.name.as_str())
        });
        state.configs = keyed(snapshot.configs, "configs", &mut v, |c| {
            c.spec.as_ref().map(|spec| spec.name.as_str())
        });
        state.lease_tokens = snapshot.lease_tokens;
        state.leadership = snapshot.leadership;
        state.check_lease_tokens(&mut v);
        state.rebuild_indexes(&mut v);
        v.into_result()?;
        state.events = EventLog::restored(snapshot.event_index, snapshot.events, capacity);
        Ok(state)
    }

    /// Every lease's token is at most the highest token recorded for its name.
    fn check_lease_tokens(&self, v: &mut FieldViolations) {
        for (i, lease) in self.leases.values().enumerate() {
            let issued = self.lease_tokens.get(&lease.name).copied().unwrap_or(0);
            if lease.fencing_token > issued {
                v.push(
                    format!("leases[{i}].fencing_token"),
                    format!(
                        "lease {:?} carries token {} above the highest issued ({issued})",
                        lease.name, lease.fencing_token
                    ),
                );
            }
        }
    }

    /// Rebuilds the node-name and allocation indexes; node names must be unique.
    fn rebuild_indexes(&mut self, v: &mut FieldViolations) {
        for (i, node) in self.nodes.values().enumerate() {
            let name = node.description.as_ref().map_or("", |d| d.name.as_str());
            if name.is_empty() {
                v.push(format!("nodes[{i}].description.name"), "empty");
            } else if self
                .node_names
                .insert(name.to_owned(), node.id.clone())
                .is_some()
            {
                v.push(
                    format!("nodes[{i}].description.name"),
                    format!("duplicate node name {name:?}"),
                );
            }
        }
        let allocations: Vec<_> = self.allocations.values().cloned().collect();
        for alloc in &allocations {
            self.index(alloc);
        }
    }

    /// Replaces the whole state with the snapshot's. The event index jumps past both
    /// the current and the snapshot's index and the history is cleared, so every
    /// watcher re-lists; fencing tokens keep the higher of both high-water marks, so
    /// no token is ever issued twice, and a restored lease whose token was superseded
    /// since the backup is dropped (its holder is fenced off anyway). The recorded
    /// leadership is the cluster's current one, not the backup's: it is kept.
    pub(super) fn restore(&mut self, cmd: &RestoreCommand) -> OpResult {
        let snapshot = cmd
            .state
            .clone()
            .ok_or_else(|| invalid("state", "missing"))?;
        let floor = snapshot.event_index;
        let mut restored = Self::from_snapshot_with_history(snapshot, self.history_capacity())
            .map_err(restore_error)?;
        for (name, &token) in &self.lease_tokens {
            let restored_token = restored.lease_tokens.entry(name.clone()).or_default();
            *restored_token = (*restored_token).max(token);
        }
        // A lease whose token was superseded after the backup was taken is gone.
        let tokens = &restored.lease_tokens;
        restored
            .leases
            .retain(|name, lease| tokens.get(name).is_none_or(|&t| lease.fencing_token >= t));
        if self.leadership.is_some() {
            restored.leadership = self.leadership.take();
        }
        restored.events = self.events.jumped_past(floor);
        *self = restored;
        Ok(done())
    }
}

/// Collects items by key, recording missing, empty and duplicate keys.
fn keyed<T>(
    items: Vec<T>,
    field: &str,
    v: &mut FieldViolations,
    key: impl Fn(&T) -> Option<&str>,
) -> BTreeMap<String, T> {
    let mut map = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let k = match key(&item) {
            None => {
                v.push(format!("{field}[{i}]"), "missing its key");
                continue;
            }
            Some("") => {
                v.push(format!("{field}[{i}]"), "empty key");
                continue;
            }
            Some(k) => k.to_owned(),
        };
        if map.contains_key(&k) {
            v.push(format!("{field}[{i}]"), format!("duplicate key {k:?}"));
            continue;
        }
        map.insert(k, item);
    }
    map
}

/// Counters that could not count up much further are refused, so applying commands
/// after a restore can never overflow them.
fn check_counters(snapshot: &StateSnapshot, v: &mut FieldViolations) {
    if snapshot.event_index > MAX_COUNTER {
        v.push(
            "event_index",
            format!("{} is implausibly large", snapshot.event_index),
        );
    }
    for (name, &token) in &snapshot.lease_tokens {
        if token > MAX_COUNTER {
            v.push(
                format!("lease_tokens[{name:?}]"),
                format!("{token} is implausibly large"),
            );
        }
    }
}

/// The retained events are contiguous and end at `event_index`.
fn check_events(events: &[Event], event_index: u64, v: &mut FieldViolations) {
    for (i, pair) in events.windows(2).enumerate() {
        if pair[1].index != pair[0].index.saturating_add(1) {
            v.push(
                format!("events[{}].index", i + 1),
                format!(
                    "{} does not follow {} (events must be consecutive)",
                    pair[1].index, pair[0].index
                ),
            );
        }
    }
    if let Some(last) = events.last()
        && last.index != event_index
    {
        v.push(
            format!("events[{}].index", events.len() - 1),
            format!(
                "the newest event has index {} but event_index is {event_index}",
                last.index
            ),
        );
    }
}

fn restore_error(error: Error) -> CommandError {
    match &error {
        Error::InvalidArgument(violations) => {
            let field = violations
                .0
                .first()
                .map_or(String::new(), |f| f.field.clone());
            invalid(
                &format!("state.{field}"),
                format!("invalid snapshot: {violations}"),
            )
        }
        _ => invalid("state", format!("invalid snapshot: {error}")),
    }
}

/// Appends each of `items` as field `tag` of a message (a repeated message field).
fn encode_each<'a, M: prost::Message + 'a>(
    tag: u32,
    items: impl IntoIterator<Item = &'a M>,
    buf: &mut Vec<u8>,
) {
    for item in items {
        prost::encoding::message::encode(tag, item, buf);
    }
}

/// A snapshot's encoding begun by [`State::begin_snapshot`]; independent of the state.
pub struct SnapshotWriter {
    /// Fields 1 to 9, encoded.
    head: Vec<u8>,
    /// Field 10, still to encode.
    events: Vec<Arc<Event>>,
    /// Fields 11 and 12, encoded.
    tail: Vec<u8>,
}

impl SnapshotWriter {
    /// The encoded `StateSnapshot`.
    pub fn finish(self) -> Vec<u8> {
        let events_len: usize = self
            .events
            .iter()
            .map(|e| prost::encoding::message::encoded_len(10, &**e))
            .sum();
        let mut buf = Vec::with_capacity(self.head.len() + events_len + self.tail.len());
        buf.extend_from_slice(&self.head);
        encode_each(10, self.events.iter().map(|e| &**e), &mut buf);
        buf.extend_from_slice(&self.tail);
        buf
    }
}
