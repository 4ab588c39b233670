//! `GET /api/v1/events`: the control plane's event stream as newline-delimited JSON,
//! the way Nomad's `/v1/event/stream` works. `?index=N` resumes after event N (0, the
//! default, starts at the oldest retained one); `?topic=node&topic=service` (or
//! `topic=node,service`) filters. Each line is a `WatchResponse` in the proto3 JSON
//! mapping: `{"events":[...],"last_index":"N"}`; a line without events is a heartbeat
//! (about every 10 s) that still carries the cursor. An index older than the retained
//! history answers 400 naming `index`, before the stream starts. If the stream breaks
//! later, a last line `{"error":{...}}` says why; resume from the last index seen.
//!
//! Bounded: at most [`MAX_STREAMS`] at once per gateway (503 beyond), a small buffer per
//! client (a slow reader slows only its own control-plane watcher), and a silent
//! upstream is given up after the feed's idle bound.

use super::body;
use crate::http::AppState;
use crate::view::feed::{STREAM_IDLE, is_compacted};
use crate::{Error, Result};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use constellation_proto::v1::{Topic, WatchRequest, WatchResponse};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Event streams one gateway serves at once.
pub const MAX_STREAMS: usize = 256;

/// Lines buffered per client before its upstream watcher waits.
const BUFFER: usize = 16;

/// How long the first answer is awaited so that a bad index is an HTTP error rather
/// than a line in a 200 stream.
const FIRST_WAIT: Duration = Duration::from_millis(300);

/// Topic names in the query: the `Topic` enum without its prefix, lower case.
pub fn parse_topic(name: &str) -> Option<Topic> {
    Some(match name.to_ascii_lowercase().as_str() {
        "node" => Topic::Node,
        "service" => Topic::Service,
        "allocation" => Topic::Allocation,
        "health" => Topic::Health,
        "leadership" => Topic::Leadership,
        "lease" => Topic::Lease,
        "migration" => Topic::Migration,
        "*" | "all" => Topic::Unspecified,
        _ => return None,
    })
}

/// The `WatchRequest` a query asks for.
pub fn watch_request(query: Option<&str>) -> Result<WatchRequest> {
    let pairs = body::query_pairs(query)?;
    body::only_keys(&pairs, &["index", "topic"])?;
    let mut request = WatchRequest::default();
    for (key, value) in &pairs {
        if key == "index" {
            request.from_index = value
                .parse()
                .map_err(|_| Error::bad_request("index", "must be an unsigned integer"))?;
            continue;
        }
        for name in value.split(',').filter(|n| !n.is_empty()) {
            let topic = parse_topic(name).ok_or_else(|| {
                Error::bad_request(
                    "topic",
                    format!(
                        "unknown topic {name:?} (node, service, allocation, health, leadership, lease, migration)"
                    ),
                )
            })?;
            if !request.topics.contains(&(topic as i32)) {
                request.topics.push(topic as i32);
            }
        }
    }
    if request.topics.contains(&(Topic::Unspecified as i32)) {
        request.topics.clear();
    }
    Ok(request)
}

fn line(response: &WatchResponse) -> Bytes {
    let mut bytes = serde_json::to_vec(response).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_line(status: &tonic::Status) -> Bytes {
    let err = Error::Upstream(status.clone());
    let mut bytes = serde_json::to_vec(&serde_json::json!({
        "error": crate::error::error_body(err.code(), &err.to_string(), &[]),
    }))
    .unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn index_error(status: tonic::Status) -> Error {
    if is_compacted(&status) {
        Error::bad_request("index", status.message())
    } else {
        Error::Upstream(status)
    }
}

pub async fn events(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response> {
    let request = watch_request(query.as_deref())?;
    let permit = state
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::Unavailable(format!("at most {MAX_STREAMS} event streams at once")))?;
    let (_, mut client) = state.upstream.streaming_client(false);
    let opened = tokio::time::timeout(state.upstream.rpc_timeout(), client.watch(request))
        .await
        .map_err(|_| {
            Error::Unavailable("the control plane did not open the event stream in time".into())
        })?;
    let mut stream = opened.map_err(index_error)?.into_inner();

    let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(BUFFER);
    match tokio::time::timeout(FIRST_WAIT, stream.message()).await {
        Ok(Ok(Some(first))) => {
            let _ = tx.try_send(Ok(line(&first)));
        }
        Ok(Ok(None)) => return Err(Error::Unavailable("the event stream ended".into())),
        Ok(Err(status)) => return Err(index_error(status)),
        Err(_) => {} // nothing to replay yet
    }
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = tokio::time::timeout(STREAM_IDLE, stream.message()) => next,
            };
            let last = !matches!(next, Ok(Ok(Some(_))));
            let bytes = match next {
                Ok(Ok(Some(response))) => line(&response),
                Ok(Ok(None)) => return,
                Ok(Err(status)) => error_line(&status),
                Err(_) => error_line(&tonic::Status::unavailable(format!(
                    "no message from the control plane for {STREAM_IDLE:?}"
                ))),
            };
            if tx.send(Ok(bytes)).await.is_err() || last {
                return;
            }
        }
    });
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_watch_requests() {
        let r = watch_request(Some("index=5&topic=node,service&topic=node")).unwrap();
        assert_eq!(r.from_index, 5);
        assert_eq!(r.topics, [Topic::Node as i32, Topic::Service as i32]);
        assert!(watch_request(Some("topic=*")).unwrap().topics.is_empty());
        assert!(watch_request(None).unwrap().from_index == 0);
        let bad = watch_request(Some("index=x")).unwrap_err();
        assert!(matches!(bad, Error::BadRequest { ref field, .. } if field == "index"));
        let bad = watch_request(Some("topic=nope")).unwrap_err();
        assert!(matches!(bad, Error::BadRequest { ref field, .. } if field == "topic"));
        let bad = watch_request(Some("since=1")).unwrap_err();
        assert!(matches!(bad, Error::BadRequest { ref field, .. } if field == "since"));
    }
}
