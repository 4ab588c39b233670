//! Watch: the ordered event stream, replayed from the retained history and then live.
//!
//! A spawned task per watcher reads `State::events_after(from)` under the state's read
//! lock, sends what it found in batches of at most [`MAX_BATCH`] events, advances
//! `from`, and waits for the next applied batch (`Cluster::applied_events`) or the
//! heartbeat (`Tuning::watch_heartbeat`). It reads by index, not from a broadcast buffer, so a slow client that
//! lets the bounded channel fill up simply falls behind and catches up later, each
//! event delivered exactly once and in order; if it falls behind the retained history
//! it gets the compaction error. The task ends when the client goes away (a send fails
//! or the channel closes) or the member shuts down.

use std::collections::HashMap;

use constellation_proto::v1::{Event, Topic, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cluster::Cluster;
use crate::state::Compacted;
use crate::{FieldViolations, Result};

/// Most events in one `WatchResponse`.
pub const MAX_BATCH: usize = 1000;

/// Responses buffered per watcher before the task waits for the client.
const BUFFER: usize = 64;

/// `google.rpc.ErrorInfo` reason of a watch from a compacted index.
pub const INDEX_COMPACTED: &str = "INDEX_COMPACTED";

/// `google.rpc.ErrorInfo` domain of the API's errors.
pub const ERROR_DOMAIN: &str = "constellation.v1";

pub type WatchStream = ReceiverStream<std::result::Result<WatchResponse, Status>>;

/// Starts a watcher for `req` and returns its stream.
pub fn watch(cluster: Cluster, req: WatchRequest) -> Result<WatchStream> {
    let topics = topics(&req)?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(run(cluster, req.from_index, topics, tx));
    Ok(ReceiverStream::new(rx))
}

fn topics(req: &WatchRequest) -> Result<Vec<Topic>> {
    let mut v = FieldViolations::default();
    let topics = req
        .topics
        .iter()
        .enumerate()
        .filter_map(|(i, &t)| {
            let topic = Topic::try_from(t).ok();
            if topic.is_none() {
                v.push(format!("topics[{i}]"), format!("unknown topic {t}"));
            }
            topic
        })
        .collect();
    v.into_result().map(|()| topics)
}

type Sender = mpsc::Sender<std::result::Result<WatchResponse, Status>>;

async fn run(cluster: Cluster, mut from: u64, topics: Vec<Topic>, tx: Sender) {
    let mut applied = cluster.applied_events();
    let period = cluster.watch_heartbeat();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat_due = false;
    loop {
        // Marked seen before reading, so a batch applied after the read wakes us.
        applied.borrow_and_update();
        let (found, last) = {
            let state = cluster.state().read().await;
            if from == 0 {
                // 0 means "from the oldest retained event", whatever was compacted.
                from = state.oldest_retained_index().saturating_sub(1);
            }
            (state.events_after(from, &topics), state.event_index())
        };
        let events = match found {
            Ok(events) => events,
            Err(compacted) => {
                let _ = tx.send(Err(compacted_status(compacted))).await;
                return;
            }
        };
        // Every event up to `last` has been read (those of other topics skipped).
        let last = last.max(from);
        if !events.is_empty() || heartbeat_due {
            if send(&tx, events, last).await.is_err() {
                return;
            }
            heartbeat.reset();
            heartbeat_due = false;
        }
        from = last;
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return; // the member is shutting down
                }
            }
            _ = heartbeat.tick() => heartbeat_due = true,
            () = tx.closed() => return,
        }
    }
}

/// Sends `events` in batches (one empty heartbeat when there are none); the last batch
/// carries `last`, earlier ones the index of their own last event.
async fn send(tx: &Sender, events: Vec<Event>, last: u64) -> Result<(), ()> {
    if events.is_empty() {
        let beat = WatchResponse {
            events,
            last_index: last,
        };
        return tx.send(Ok(beat)).await.map_err(drop);
    }
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<_> = events.by_ref().take(MAX_BATCH).collect();
        let last_index = match events.peek() {
            Some(_) => batch.last().map_or(last, |e| e.index),
            None => last,
        };
        let response = WatchResponse {
            events: batch,
            last_index,
        };
        tx.send(Ok(response)).await.map_err(drop)?;
    }
    Ok(())
}

/// OUT_OF_RANGE with a `google.rpc.ErrorInfo` telling the client to re-list.
fn compacted_status(compacted: Compacted) -> Status {
    let oldest = compacted.oldest_retained.to_string();
    let metadata = HashMap::from([("oldest_retained".to_string(), oldest)]);
    let details = ErrorDetails::with_error_info(INDEX_COMPACTED, ERROR_DOMAIN, metadata);
    Status::with_error_details(
        Code::OutOfRange,
        format!("{compacted}: re-list (List* calls return an index) and watch from that index"),
        details,
    )
}
