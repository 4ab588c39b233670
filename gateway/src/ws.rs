//! WebSocket at `/ws`: a snapshot of the view on connect, then typed events as the
//! view's feed applies them, each with its event index.
//!
//! - `?topic=node,service,...` filters (names as in `/api/v1/events`).
//! - `?index=N` resumes: no snapshot; the events after N are replayed from the control
//!   plane's history, then live ones follow without gap or repeat.
//! - Keep-alive: the server pings every [`PING_EVERY`]; a client silent for two
//!   intervals is closed. A text `ping` is answered with a text `pong` (predecessor).
//! - Slow clients: each connection has a bounded queue of messages
//!   (`--ws-client-queue`, [`DEFAULT_CLIENT_QUEUE`]) drained into its socket by its own
//!   writer; a client whose queue stays full for [`SEND_TIMEOUT`], whose socket takes
//!   no message for as long, or that falls [`crate::view::feed::EVENT_BUFFER`]
//!   responses behind the shared broadcast is closed with code 1008 and a reason saying how to
//!   resume, logged and counted (`constellation_gateway_websocket_slow_closes_total`),
//!   instead of slowing the others. A client that reads nothing at all never gets the
//!   close frame (it waits behind what its socket holds, [`CLOSE_TIMEOUT`] at most);
//!   its connection is dropped.
//! - A browser's `Origin` must equal one of the configured origins exactly; requests
//!   without an `Origin` (non-browser clients) are let in by their token alone.
//! - The token (a read token at least) comes in the `Authorization` header or, from a
//!   browser, as a subprotocol beside `constellation.v1` (see [`crate::auth`]); the
//!   answer names `constellation.v1` when the client offered it.
//!
//! The translation of events into messages ([`message`]) is a pure function.

use crate::api::{body, events::parse_topic, shapes};
use crate::http::AppState;
use crate::view::feed::STREAM_IDLE;
use crate::view::{View, allocation_healthy};
use crate::{Error, Result};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use constellation_proto::v1::{ChangeKind, Event, Topic, WatchRequest, event::Payload};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Server ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// Longest one message may take to reach a client before it counts as too slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one client before it counts as too slow, unless configured.
pub const DEFAULT_CLIENT_QUEUE: usize = 4096;
/// Longest the close frame may wait behind what a slow client's socket still holds.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A close frame's reason is at most 123 bytes; ours are ASCII.
const MAX_CLOSE_REASON: usize = 123;
/// Largest message accepted from a client (they only send `ping` and control frames).
const MAX_CLIENT_MESSAGE: usize = 4096;

/// Close code for a client that fell behind (policy violation).
pub const CLOSE_TOO_SLOW: u16 = 1008;

/// What a connection asked for in its query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    pub topics: Vec<Topic>,
    pub resume_from: Option<u64>,
}

impl Subscription {
    pub fn parse(query: Option<&str>) -> Result<Self> {
        let pairs = body::query_pairs(query)?;
        body::only_keys(&pairs, &["index", "topic"])?;
        let mut sub = Subscription::default();
        for (key, value) in &pairs {
            if key == "index" {
                sub.resume_from = Some(
                    value
                        .parse()
                        .map_err(|_| Error::bad_request("index", "must be an unsigned integer"))?,
                );
                continue;
            }
            for name in value.split(',').filter(|n| !n.is_empty()) {
                let topic = parse_topic(name).ok_or_else(|| {
                    Error::bad_request("topic", format!("unknown topic {name:?}"))
                })?;
                if !sub.topics.contains(&topic) {
                    sub.topics.push(topic);
                }
            }
        }
        if sub.topics.contains(&Topic::Unspecified) {
            sub.topics.clear();
        }
        Ok(sub)
    }

    pub fn wants(&self, event: &Event) -> bool {
        self.topics.is_empty() || self.topics.contains(&topic_of(event))
    }
}

fn topic_of(event: &Event) -> Topic {
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

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Created => "created",
        ChangeKind::Updated => "updated",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Unspecified => "unspecified",
    }
}

/// The message for one event: `{"type", "index", "time", ...}`. Types: `node_join`,
/// `node_update`, `node_leave`, `service_change`, `allocation_change`,
/// `service_health_change`, `leader_change`, `lease_change`, `migration_progress`.
pub fn message(event: &Event) -> Option<Value> {
    let payload = event.payload.as_ref()?;
    let mut m = match payload {
        Payload::Node(e) => {
            let node = e.node.as_ref()?;
            let kind = e.kind();
            let kind_type = match kind {
                ChangeKind::Created => "node_join",
                ChangeKind::Deleted => "node_leave",
                _ if node.status() == constellation_proto::v1::NodeStatus::Down => "node_leave",
                _ => "node_update",
            };
            json!({
                "type": kind_type,
                "node_name": node.description.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
                "node": shapes::node(node),
            })
        }
        Payload::Service(e) => {
            let service = e.service.as_ref()?;
            json!({
                "type": "service_change",
                "kind": kind_name(e.kind()),
                "service_name": service.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                "service": shapes::proto(service),
            })
        }
        Payload::Allocation(e) => {
            let alloc = e.allocation.as_ref()?;
            json!({
                "type": "allocation_change",
                "kind": kind_name(e.kind()),
                "service_name": alloc.service_name,
                "node_name": alloc.node_name,
                "healthy": allocation_healthy(alloc),
                "allocation": shapes::proto(alloc),
            })
        }
        Payload::Health(e) => json!({
            "type": "service_health_change",
            "service_name": e.service_name,
            "node_name": e.node_name,
            "allocation_id": e.allocation_id,
            "healthy": matches!(
                e.current(),
                constellation_proto::v1::HealthState::Healthy | constellation_proto::v1::HealthState::None
            ),
            "previous": shapes::proto(&e.previous()),
            "current": shapes::proto(&e.current()),
        }),
        Payload::Leadership(e) => json!({
            "type": "leader_change",
            "leader": e.leader_api_addr,
            "leader_id": e.leader_id,
            "term": e.term,
        }),
        Payload::Lease(e) => json!({
            "type": "lease_change",
            "kind": kind_name(e.kind()),
            "lease": e.lease.as_ref().map(shapes::proto),
        }),
        Payload::Migration(e) => json!({
            "type": "migration_progress",
            "kind": kind_name(e.kind()),
            "migration": e.migration.as_ref().map(shapes::migration),
        }),
    };
    m["index"] = json!(event.index);
    m["time"] = event.time.as_ref().map_or(Value::Null, shapes::proto);
    Some(m)
}

/// The first message of a connection without `index`: the whole view, in the
/// predecessor's `initial_state` shape plus what it lacked.
pub fn snapshot_message(view: &View, timestamp: &str) -> Value {
    let services: serde_json::Map<String, Value> = view
        .services()
        .iter()
        .map(|(name, s)| (name.clone(), shapes::service_summary(view, s)))
        .collect();
    json!({
        "type": "initial_state",
        "index": view.index(),
        "nodes": view.nodes().values().map(shapes::node).collect::<Vec<_>>(),
        "services": services,
        "allocations": view.allocations().values().filter(|a| !shapes::is_terminal(a)).map(shapes::proto).collect::<Vec<_>>(),
        "leases": view.leases().values().map(shapes::proto).collect::<Vec<_>>(),
        "migrations": shapes::migrations_in_order(view).into_iter().map(shapes::migration).collect::<Vec<_>>(),
        "raft": shapes::raft(view),
        "timestamp": timestamp,
    })
}

/// An exact match against the configured origins; no `Origin` header passes.
pub fn origin_allowed(origins: &[String], headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| origins.iter().any(|allowed| allowed == o)),
    }
}

pub async fn upgrade(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response> {
    if !origin_allowed(&state.origins, &headers) {
        return Err(Error::Forbidden(
            "origin not allowed (it must equal one of the configured origins)".into(),
        ));
    }
    let sub = Subscription::parse(query.as_deref())?;
    // A browser fails a handshake whose offered subprotocols get no answer: one that
    // sends its token as a subprotocol must offer ours too, which is the one answered.
    let offered = || crate::auth::offered_protocols(&headers);
    if offered().any(|p| p.starts_with(crate::auth::WS_TOKEN_PREFIX))
        && !offered().any(|p| p == crate::auth::WS_PROTOCOL)
    {
        return Err(Error::bad_request(
            "sec-websocket-protocol",
            format!(
                "a token subprotocol needs the {} subprotocol offered with it",
                crate::auth::WS_PROTOCOL
            ),
        ));
    }
    if !state.snapshot().synced {
        return Err(Error::Unavailable(
            "the gateway has not reached the control plane yet".into(),
        ));
    }
    Ok(ws
        .protocols([crate::auth::WS_PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, sub)))
}

/// Why a connection ended, as its close frame says.
struct Close {
    code: u16,
    reason: String,
}

/// One message waiting for its client, with the index of the event it carries (0 for
/// anything else).
struct Outgoing {
    message: Message,
    index: u64,
}

/// The sending side of a client's queue, and how far its writer got.
struct Queue<'a> {
    tx: mpsc::Sender<Outgoing>,
    capacity: usize,
    /// Index of the last event message the client's socket took.
    written: &'a AtomicU64,
}

impl Queue<'_> {
    /// Queues a message, waiting up to [`SEND_TIMEOUT`] for room: a burst larger than
    /// the queue is fine for a client that drains it, one whose queue stays full that
    /// long does not keep up. Meanwhile its cursor in the broadcast falls behind, which
    /// is bounded too.
    async fn push(&self, message: Message, index: u64) -> std::result::Result<(), Option<Close>> {
        match self
            .tx
            .send_timeout(Outgoing { message, index }, SEND_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Some(self.too_slow(format!(
                "{} messages waited more than {SEND_TIMEOUT:?}",
                self.capacity
            )))),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(None), // the writer ended
        }
    }

    /// Queues a ping or a pong unless the queue is full (then messages are flowing,
    /// which is what a ping would find out).
    fn push_control(&self, message: Message) -> std::result::Result<(), Option<Close>> {
        match self.tx.try_send(Outgoing { message, index: 0 }) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(None),
        }
    }

    async fn push_json(&self, value: &Value, index: u64) -> std::result::Result<(), Option<Close>> {
        self.push(Message::Text(Utf8Bytes::from(value.to_string())), index)
            .await
    }

    fn too_slow(&self, why: String) -> Close {
        too_slow(why, self.written.load(Ordering::Relaxed))
    }
}

/// The close of a client that does not keep up. The index is the last one its socket
/// took; the client may have received more, and resumes from the last it saw.
fn too_slow(why: String, written: u64) -> Close {
    Close {
        code: CLOSE_TOO_SLOW,
        reason: format!("too slow: {why}; resume with ?index=<last index received> (>= {written})")
            .chars()
            .take(MAX_CLOSE_REASON)
            .collect(),
    }
}

/// One connection: the controller ([`run`]) reads the client and the event broadcast
/// and queues messages; the writer ([`write`]) drains the queue into the socket. The
/// queue is bounded ([`AppState::ws_queue`] messages): a client whose queue stays full
/// is closed (code 1008, with the reason) and counted, while every other client reads
/// the broadcast at its own pace.
async fn serve(socket: WebSocket, state: AppState, sub: Subscription) {
    let metrics = &state.metrics;
    metrics.websocket_clients.fetch_add(1, Ordering::Relaxed);
    let (mut sink, stream) = socket.split();
    let capacity = state.ws_queue.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let written = AtomicU64::new(0);
    let queue = Queue {
        tx,
        capacity,
        written: &written,
    };
    let close = tokio::select! {
        close = run(stream, queue, &state, &sub) => close,
        close = write(&mut sink, rx, &written) => close,
    };
    metrics.websocket_clients.fetch_sub(1, Ordering::Relaxed);
    let Some(close) = close else {
        return;
    };
    if close.code == CLOSE_TOO_SLOW {
        metrics
            .websocket_slow_closes
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = %close.reason, "websocket client closed");
    } else {
        tracing::debug!(code = close.code, reason = %close.reason, "websocket client closed");
    }
    // Behind whatever the socket already holds; a client that reads nothing never sees it.
    let frame = CloseFrame {
        code: close.code,
        reason: Utf8Bytes::from(close.reason),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// Drains a client's queue into its socket until the client is gone (`None`) or one
/// message waited longer than [`SEND_TIMEOUT`] (too slow).
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    written: &AtomicU64,
) -> Option<Close> {
    while let Some(Outgoing { message, index }) = queue.recv().await {
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {
                if index != 0 {
                    written.store(index, Ordering::Relaxed);
                }
            }
            Ok(Err(_)) => return None, // the client is gone
            Err(_) => {
                return Some(too_slow(
                    format!("a message waited more than {SEND_TIMEOUT:?}"),
                    written.load(Ordering::Relaxed),
                ));
            }
        }
    }
    // Every sender gone: the controller ended and says why.
    std::future::pending().await
}

/// Queues the events of one batch the client wants that come after `sent`.
async fn forward(
    queue: &Queue<'_>,
    sub: &Subscription,
    events: &[Event],
    sent: &mut u64,
) -> std::result::Result<(), Option<Close>> {
    for event in events {
        if event.index <= *sent {
            continue;
        }
        *sent = event.index;
        if sub.wants(event)
            && let Some(m) = message(event)
        {
            queue.push_json(&m, event.index).await?;
        }
    }
    Ok(())
}

async fn run(
    mut stream: SplitStream<WebSocket>,
    queue: Queue<'_>,
    state: &AppState,
    sub: &Subscription,
) -> Option<Close> {
    // Subscribe before reading the view, so nothing between the two is missed.
    let mut live = state.channels.events.subscribe();
    let snapshot = state.snapshot();
    let mut sent = match sub.resume_from {
        None => {
            let m = snapshot_message(&snapshot.view, &crate::rfc3339_now());
            if let Err(close) = queue.push_json(&m, snapshot.view.index()).await {
                return close;
            }
            snapshot.view.index()
        }
        Some(from) => match replay(&queue, state, sub, from, snapshot.view.index()).await {
            Ok(sent) => sent,
            Err(close) => return close,
        },
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(response) => {
                    if let Err(close) = forward(&queue, sub, &response.events, &mut sent).await {
                        return close;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    return Some(queue.too_slow(format!("{missed} event batches missed")));
                }
                Err(RecvError::Closed) => {
                    return Some(Close { code: 1001, reason: "the gateway is shutting down".into() });
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) if text.as_str().trim() == "ping" => {
                    if let Err(close) = queue.push_control(Message::Text("pong".into())) {
                        return close;
                    }
                    unanswered = 0;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => unanswered = 0, // pongs and anything else prove the client lives
            },
            _ = ping.tick() => {
                if unanswered >= 2 {
                    return Some(Close { code: 1001, reason: "no answer to two pings".into() });
                }
                unanswered += 1;
                if let Err(close) = queue.push_control(Message::Ping(Default::default())) {
                    return close;
                }
            }
        }
    }
}

/// Replays the events after `from` up to `until` (the view's index when the live
/// subscription started) from the control plane's history; returns the last index
/// covered.
async fn replay(
    queue: &Queue<'_>,
    state: &AppState,
    sub: &Subscription,
    from: u64,
    until: u64,
) -> std::result::Result<u64, Option<Close>> {
    let mut sent = from;
    if from >= until {
        return Ok(sent);
    }
    let (_, mut client) = state.upstream.streaming_client(false);
    let request = WatchRequest {
        from_index: from,
        topics: Vec::new(),
    };
    let refused = |reason: String| {
        Some(Close {
            code: 1011,
            reason: reason.chars().take(120).collect(),
        })
    };
    let mut stream =
        match tokio::time::timeout(state.upstream.rpc_timeout(), client.watch(request)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                return Err(refused(format!(
                    "cannot resume from {from}: {}",
                    status.message()
                )));
            }
            Err(_) => return Err(refused("the control plane did not answer in time".into())),
        };
    while sent < until {
        let response = match tokio::time::timeout(STREAM_IDLE, stream.message()).await {
            Ok(Ok(Some(r))) => r,
            Ok(Err(status)) => {
                return Err(refused(format!(
                    "cannot resume from {from}: {}",
                    status.message()
                )));
            }
            _ => return Err(refused("the replay stream ended".into())),
        };
        let before = sent;
        for event in &response.events {
            if event.index <= sent {
                continue;
            }
            sent = event.index;
            if sub.wants(event)
                && let Some(m) = message(event)
            {
                let text = Utf8Bytes::from(m.to_string());
                queue.push(Message::Text(text), event.index).await?;
            }
        }
        sent = sent.max(response.last_index.min(until)).max(before);
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::{
        HealthEvent, HealthState, LeadershipEvent, NodeDescription, NodeEvent,
    };

    #[test]
    fn events_become_typed_messages_with_their_index() {
        let node = Event {
            index: 7,
            time: None,
            payload: Some(Payload::Node(NodeEvent {
                kind: ChangeKind::Created as i32,
                node: Some(constellation_proto::v1::Node {
                    description: Some(NodeDescription {
                        name: "n1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })),
        };
        let m = message(&node).unwrap();
        assert_eq!(m["type"], "node_join");
        assert_eq!(m["node_name"], "n1");
        assert_eq!(m["index"], 7);

        let health = Event {
            index: 8,
            time: None,
            payload: Some(Payload::Health(HealthEvent {
                service_name: "web".into(),
                node_name: "n1".into(),
                current: HealthState::Unhealthy as i32,
                ..Default::default()
            })),
        };
        let m = message(&health).unwrap();
        assert_eq!(m["type"], "service_health_change");
        assert_eq!(m["healthy"], false);

        let leader = Event {
            index: 9,
            time: None,
            payload: Some(Payload::Leadership(LeadershipEvent {
                leader_id: 2,
                leader_api_addr: "a:1".into(),
                term: 3,
            })),
        };
        assert_eq!(message(&leader).unwrap()["type"], "leader_change");
    }

    #[test]
    fn origins_match_exactly() {
        let allowed = vec!["https://ops.example.com".to_owned()];
        let mut h = HeaderMap::new();
        assert!(origin_allowed(&allowed, &h), "no Origin: not a browser");
        h.insert(header::ORIGIN, "https://ops.example.com".parse().unwrap());
        assert!(origin_allowed(&allowed, &h));
        h.insert(
            header::ORIGIN,
            "https://ops.example.com.evil.net".parse().unwrap(),
        );
        assert!(!origin_allowed(&allowed, &h), "no substring match");
        h.insert(
            header::ORIGIN,
            "https://evil.net/https://ops.example.com".parse().unwrap(),
        );
        assert!(!origin_allowed(&allowed, &h));
    }

    #[test]
    fn subscriptions_parse_topics_and_index() {
        let s = Subscription::parse(Some("topic=health,node&index=4")).unwrap();
        assert_eq!(s.topics, [Topic::Health, Topic::Node]);
        assert_eq!(s.resume_from, Some(4));
        assert!(Subscription::parse(Some("topic=bogus")).is_err());
        assert!(Subscription::parse(Some("index=-1")).is_err());
    }
}
