//! The HTTP surface: the shared [`AppState`], the one place the router is assembled
//! ([`router`]), and the tower-http layers around every route (request ids, tracing,
//! timeouts, body limits, compression, CORS from an exact list of origins), plus the
//! rule that every error answer is JSON `{code, message, field}`.

use crate::auth::Tokens;
use crate::upstream::Upstream;
use crate::view::Snapshot;
use crate::view::feed::Channels;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Longest a request may take before it gets 408 (streams: until their headers).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A list answer rendered once, with the view it was rendered from.
pub type RenderedList = (Arc<crate::view::View>, bytes::Bytes);

/// What every handler may use: the published view, the event broadcast, the
/// control-plane client and the edge's settings. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub channels: Channels,
    pub upstream: Arc<Upstream>,
    /// Bearer tokens; empty lets everyone in (the gateway then listens on loopback only).
    pub tokens: Arc<Tokens>,
    /// Origins allowed by CORS and on the WebSocket, matched exactly.
    pub origins: Arc<Vec<String>>,
    /// Permits for concurrent `/api/v1/events` streams.
    pub event_streams: Arc<Semaphore>,
    /// Request counters and latencies for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `GET /api/v1/services` as last rendered, with the view it was rendered from.
    pub services_cache: Arc<tokio::sync::Mutex<Option<RenderedList>>>,
    /// Messages queued for one WebSocket client before it counts as too slow.
    pub ws_queue: usize,
}

impl AppState {
    pub fn new(channels: Channels, upstream: Arc<Upstream>) -> Self {
        Self {
            channels,
            upstream,
            tokens: Arc::new(Tokens::default()),
            origins: Arc::new(Vec::new()),
            event_streams: Arc::new(Semaphore::new(crate::api::events::MAX_STREAMS)),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            services_cache: Arc::default(),
            ws_queue: crate::ws::DEFAULT_CLIENT_QUEUE,
        }
    }

    pub fn with_ws_queue(mut self, messages: usize) -> Self {
        self.ws_queue = messages;
        self
    }

    pub fn with_tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = Arc::new(tokens);
        self
    }

    pub fn with_origins(mut self, origins: Vec<String>) -> Self {
        self.origins = Arc::new(origins);
        self
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
    let compression = CompressionLayer::new().compress_when(
        DefaultPredicate::new().and(NotForContentType::const_new("application/x-ndjson")),
    );
    let mut router = crate::api::router(&state)
        .merge(crate::traefik::routes(read_access(&state)))
        // Every matched route is counted under its template.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record,
        ))
        .fallback(not_found)
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outside the limits and the timeout, so their answers become JSON too.
        .layer(axum::middleware::map_response(json_errors))
        .layer(compression);
    if let Some(cors) = cors(&state.origins) {
        router = router.layer(cors);
    }
    router
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The check of the Traefik routes: a read token (Traefik v3 sends it as a header).
fn read_access(
    state: &AppState,
) -> impl Fn(&axum::http::HeaderMap) -> crate::Result<()> + Clone + Send + Sync + use<> {
    let tokens = Arc::clone(&state.tokens);
    move |headers| tokens.authorize(crate::auth::Access::Read, headers)
}

/// CORS for exactly the configured origins; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}

async fn not_found() -> crate::Error {
    crate::Error::NotFound("route".into())
}

/// Turns every error answer that is not JSON yet (axum's rejections, 404/405, the
/// body limit's 413, the timeout's 408) into the JSON error shape.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let (code, field) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", Some("body")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", Some("body")),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", None),
        StatusCode::NOT_FOUND => ("not_found", None),
        StatusCode::REQUEST_TIMEOUT => ("deadline_exceeded", None),
        s if s.is_client_error() => ("invalid_argument", Some("path")),
        _ => ("internal", None),
    };
    let violations: Vec<crate::error::Violation> = field
        .map(|f| crate::error::Violation {
            field: f.into(),
            reason: message.clone(),
        })
        .into_iter()
        .collect();
    let body = crate::error::error_body(code, &message, &violations);
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// Liveness of the gateway process itself, in the predecessor's shape.
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "healthy",
        "timestamp": crate::rfc3339_now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn test_state() -> AppState {
        let (_tx, channels) = crate::view::feed::channels(Duration::from_secs(10));
        let upstream = Upstream::new(&["127.0.0.1:1".into()], Duration::from_secs(1)).unwrap();
        AppState::new(channels, Arc::new(upstream))
    }

    async fn send(
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = router(test_state()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    async fn get(uri: &str) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        send(Request::get(uri).body(Body::empty()).unwrap()).await
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
    async fn reads_before_the_first_sync_answer_503_json() {
        let (status, _, body) = get("/api/v1/services").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], "unavailable");
    }

    #[tokio::test]
    async fn unknown_routes_wrong_methods_and_oversize_bodies_answer_json() {
        let (status, _, body) = get("/api/v1/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "not_found");

        let (status, _, body) = send(
            Request::patch("/api/v1/services")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "method_not_allowed");

        let big = vec![b' '; BODY_LIMIT + 1];
        let (status, _, body) = send(
            Request::put("/api/v1/services/web")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["field"], "body");
    }

    #[tokio::test]
    async fn errors_are_json_with_code_message_and_field() {
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
