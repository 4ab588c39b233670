//! The event log: the event index and the bounded history of retained events that
//! `Watch` replays from, plus the topic of each event.
//!
//! Invariant: the retained events are contiguous and, when there are any, the newest
//! one carries the current index. Only a restore consumes an index without an event,
//! and it clears the history, so the invariant holds across it too.

use std::collections::VecDeque;
use std::sync::Arc;

use constellation_proto::v1::{Event, Topic, event::Payload};
use pbjson_types::Timestamp;

/// The requested position is older than the retained history: some event after it is
/// gone, so the client must re-list and watch from the index the list returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "events after the requested index were compacted; oldest retained index is {oldest_retained}"
)]
pub struct Compacted {
    /// Index of the oldest event still retained (the next index when none is).
    pub oldest_retained: u64,
}

/// The topic a Watch subscribes to for this event (`TOPIC_UNSPECIFIED` without payload).
pub fn event_topic(event: &Event) -> Topic {
    match &event.payload {
        Some(Payload::Node(_)) => Topic::Node,
        Some(Payload::Service(_)) => Topic::Service,
        Some(Payload::Allocation(_)) => Topic::Allocation,
        Some(Payload::Health(_)) => Topic::Health,
        Some(Payload::Leadership(_)) => Topic::Leadership,
        Some(Payload::Lease(_)) => Topic::Lease,
        Some(Payload::Migration(_)) => Topic::Migration,
        None => Topic::Unspecified,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventLog {
    /// Index of the last event applied (or the index a restore jumped to).
    index: u64,
    /// Shared, so a snapshot takes the history without copying it under the state's
    /// lock (events never change once recorded).
    history: VecDeque<Arc<Event>>,
    capacity: usize,
}

impl EventLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            index: 0,
            history: VecDeque::new(),
            capacity,
        }
    }

    /// Rebuilds a log from a snapshot's index and (already validated, contiguous)
    /// events, keeping the newest `capacity` of them.
    pub(super) fn restored(index: u64, events: Vec<Event>, capacity: usize) -> Self {
        let mut log = Self {
            index,
            history: events.into_iter().map(Arc::new).collect(),
            capacity,
        };
        log.trim();
        log
    }

    pub(super) fn index(&self) -> u64 {
        self.index
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.trim();
    }

    pub(super) fn retained(&self) -> impl ExactSizeIterator<Item = &Event> {
        self.history.iter().map(|e| &**e)
    }

    /// The retained events, shared rather than copied.
    pub(super) fn retained_shared(&self) -> Vec<Arc<Event>> {
        self.history.iter().cloned().collect()
    }

    /// Appends an event with the next index.
    pub(super) fn push(&mut self, time: Timestamp, payload: Payload) {
        self.index = self.index.saturating_add(1);
        self.history.push_back(Arc::new(Event {
            index: self.index,
            time: Some(time),
            payload: Some(payload),
        }));
        self.trim();
    }

    /// The log after a restore: the index moved forward to `max(index, floor) + 1`
    /// without an event, and no history.
    pub(super) fn jumped_past(&self, floor: u64) -> Self {
        Self {
            index: self.index.max(floor).saturating_add(1),
            history: VecDeque::new(),
            capacity: self.capacity,
        }
    }

    /// Index of the oldest retained event, or the next index when none is retained.
    pub(super) fn oldest_retained(&self) -> u64 {
        self.history
            .front()
            .map_or(self.index.saturating_add(1), |e| e.index)
    }

    /// Every retained event after `from_index` whose topic is in `topics` (empty, or
    /// containing `TOPIC_UNSPECIFIED`, means every topic).
    pub(super) fn after(&self, from_index: u64, topics: &[Topic]) -> Result<Vec<Event>, Compacted> {
        if from_index >= self.index {
            return Ok(Vec::new());
        }
        let oldest = self.oldest_retained();
        if from_index < oldest.saturating_sub(1) {
            return Err(Compacted {
                oldest_retained: oldest,
            });
        }
        // Contiguous history: the first event after `from_index` sits at this offset.
        let skip = usize::try_from(from_index + 1 - oldest).unwrap_or(usize::MAX);
        let all_topics = topics.is_empty() || topics.contains(&Topic::Unspecified);
        Ok(self
            .history
            .iter()
            .skip(skip)
            .filter(|e| all_topics || topics.contains(&event_topic(e)))
            .map(|e| (**e).clone())
            .collect())
    }

    fn trim(&mut self) {
        while self.history.len() > self.capacity {
            self.history.pop_front();
        }
    }
}
