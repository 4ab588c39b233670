//! The HTTP surface: routes and the tower-http layers around them.

use crate::upstream::Upstream;
use crate::view::Snapshot;
use crate::view::feed::Channels;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest a request may take before it gets 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler may use: the published view, the event broadcast and the
/// control-plane client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub channels: Channels,
    pub upstream: Arc<Upstream>,
}

impl AppState {
    pub fn new(channels: Channels, upstream: Arc<Upstream>) -> Self {
        Self { channels, upstream }
    }

    /// The latest published snapshot of the view.
    pub fn snapshot(&self) -> Snapshot {
        self.channels.snapshots.borrow().clone()
    }
}

/// Every route of the gateway and the layers around them; the one place the HTTP
/// surface is assembled.
pub fn router(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health))
        .with_state(state)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Liveness of the gateway process itself, in the predecessor's shape.
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "healthy",
        "timestamp": crate::rfc3339_now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn test_state() -> AppState {
        let (_tx, channels) = crate::view::feed::channels(Duration::from_secs(10));
        let upstream = Upstream::new(&["127.0.0.1:1".into()], Duration::from_secs(1)).unwrap();
        AppState::new(channels, Arc::new(upstream))
    }

    async fn get(uri: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = router(test_state())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn health_has_the_predecessor_shape_and_a_request_id() {
        let (status, headers, body) = get("/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "healthy");
        let ts = body["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        assert!(headers.contains_key("x-request-id"));
    }

    #[tokio::test]
    async fn errors_are_json_with_code_message_and_field() {
        use axum::response::IntoResponse;
        let response = crate::Error::BadRequest {
            field: "spec.name".into(),
            message: "must not be empty".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), BODY_LIMIT)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["code"], "invalid_argument");
        assert_eq!(body["field"], "spec.name");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("must not be empty")
        );
    }
}
