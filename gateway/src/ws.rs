//! WebSocket at `/ws`: a snapshot of the view on connect, then typed events as the
//! view's feed applies them, each with its event index.
//!
//! - `?topic=node,service,...` filters (names as in `/api/v1/events`).
//! - `?index=N` resumes: no snapshot; the events after N are replayed from the control
//!   plane's history, then live ones follow without gap or repeat.
//! - Keep-alive: the server pings every [`PING_EVERY`]; a client silent for two
//!   intervals is closed. A text `ping` is answered with a text `pong` (predecessor).
//! - A client that falls [`crate::view::feed::EVENT_BUFFER`] responses behind is closed
//!   with code 1008 and a reason naming the index to resume from, instead of slowing
//!   the others (each reads the shared broadcast at its own pace).
//! - A browser's `Origin` must equal one of the configured origins exactly; requests
//!   without an `Origin` (non-browser clients) are let in by their token alone.
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
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Server ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// Longest one message may take to reach a client before it counts as too slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
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
    if !state.snapshot().synced {
        return Err(Error::Unavailable(
            "the gateway has not reached the control plane yet".into(),
        ));
    }
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, sub)))
}

/// Why a connection ended, as its close frame says.
struct Close {
    code: u16,
    reason: String,
}

async fn serve(mut socket: WebSocket, state: AppState, sub: Subscription) {
    let clients = &state.metrics.websocket_clients;
    clients.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let close = run(&mut socket, &state, &sub).await;
    clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(close) = close {
        let frame = CloseFrame {
            code: close.code,
            reason: Utf8Bytes::from(close.reason),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
}

async fn send(socket: &mut WebSocket, value: &Value) -> std::result::Result<(), Option<Close>> {
    let text = Utf8Bytes::from(value.to_string());
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None), // the client is gone
        Err(_) => Err(Some(Close {
            code: CLOSE_TOO_SLOW,
            reason: format!("too slow: a message waited more than {SEND_TIMEOUT:?}"),
        })),
    }
}

/// Sends the events of one batch the client wants that come after `sent`.
async fn forward(
    socket: &mut WebSocket,
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
            send(socket, &m).await?;
        }
    }
    Ok(())
}

async fn run(socket: &mut WebSocket, state: &AppState, sub: &Subscription) -> Option<Close> {
    // Subscribe before reading the view, so nothing between the two is missed.
    let mut live = state.channels.events.subscribe();
    let snapshot = state.snapshot();
    let mut sent = match sub.resume_from {
        None => {
            let m = snapshot_message(&snapshot.view, &crate::rfc3339_now());
            if let Err(close) = send(socket, &m).await {
                return close;
            }
            snapshot.view.index()
        }
        Some(from) => match replay(socket, state, sub, from, snapshot.view.index()).await {
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
                    if let Err(close) = forward(socket, sub, &response.events, &mut sent).await {
                        return close;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    return Some(Close {
                        code: CLOSE_TOO_SLOW,
                        reason: format!("too slow: {missed} event batches missed; reconnect with ?index={sent}"),
                    });
                }
                Err(RecvError::Closed) => {
                    return Some(Close { code: 1001, reason: "the gateway is shutting down".into() });
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) if text.as_str().trim() == "ping" => {
                    if send_text(socket, "pong").await.is_err() {
                        return None;
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
                if tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default()))).await.is_err() {
                    return Some(Close { code: CLOSE_TOO_SLOW, reason: "too slow to take a ping".into() });
                }
            }
        }
    }
}

async fn send_text(socket: &mut WebSocket, text: &str) -> std::result::Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Replays the events after `from` up to `until` (the view's index when the live
/// subscription started) from the control plane's history; returns the last index
/// covered.
async fn replay(
    socket: &mut WebSocket,
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
        forward(socket, sub, &response.events, &mut sent).await?;
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
