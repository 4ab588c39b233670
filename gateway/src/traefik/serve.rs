//! Serving the rendered document: `/traefik` (the Traefik HTTP provider endpoint) and
//! the predecessor's read-only routes (`/api/dynamic`, `/api/http/routers`, ...).
//!
//! Rendering happens once per view index and version, never per request: a background
//! task renders the default version whenever the view changes, and a request for a
//! version whose cached document is older than the view renders it once while
//! concurrent requests wait for that same render. A view that is not fresh is
//! answered 503 (never an empty document), so Traefik keeps its last good one.

use super::render::Renderer;
use super::{Protocol, RenderError, RenderOptions, Rendered, TraefikVersion};
use crate::view::Snapshot;
use crate::{Error, Result};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Most render errors logged per render; the rest are counted.
const LOGGED_ERRORS: usize = 20;

/// Flags and config keys (`traefik:` section) of the Traefik provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Also serve the Traefik routes, and only them, on this address (for a Traefik
    /// that reaches the gateway over a private network and sends no token).
    #[arg(
        long = "traefik-listen",
        id = "traefik_listen",
        env = "CONSTELLATION_TRAEFIK_LISTEN"
    )]
    pub listen: Option<SocketAddr>,
    /// Traefik major the document targets when the request names none: v3 or v2 [default: v3].
    #[arg(
        long = "traefik-version",
        id = "traefik_version",
        env = "CONSTELLATION_TRAEFIK_VERSION"
    )]
    pub version: Option<TraefikVersion>,
    /// Domain of the default rule: `Host(`<service>.<domain>`)` instead of `Host(`<service>`)`.
    #[arg(long = "traefik-domain", env = "CONSTELLATION_TRAEFIK_DOMAIN")]
    pub domain: Option<String>,
    /// Route services that carry no `traefik.enable` label (Traefik's exposedByDefault)
    /// [default: false].
    #[arg(
        long = "traefik-exposed-by-default",
        env = "CONSTELLATION_TRAEFIK_EXPOSED_BY_DEFAULT",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub exposed_by_default: Option<bool>,
}

impl Settings {
    /// Checks the values and turns them into render options of the default version.
    pub fn options(&self) -> Result<RenderOptions> {
        if let Some(domain) = &self.domain {
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(Error::Config(format!(
                    "traefik.domain: {domain:?} is not a domain name"
                )));
            }
        }
        Ok(RenderOptions {
            version: self.version.unwrap_or_default(),
            exposed_by_default: self.exposed_by_default.unwrap_or(false),
            default_domain: self.domain.clone(),
        })
    }
}

/// One rendered document and the view index it reflects.
#[derive(Debug)]
pub struct Document {
    pub index: u64,
    pub json: Bytes,
    /// Where each map (`http`/`routers`, ...) lies in `json`.
    pub parts: Vec<(Protocol, &'static str, Range<usize>)>,
    pub errors: Vec<RenderError>,
    /// How long the render took.
    pub took: Duration,
    /// `json` gzip-compressed, filled shortly after the render (Traefik's Go client
    /// asks for gzip; compressing a large document per request would cost every poll).
    pub gzip: OnceLock<Bytes>,
}

impl Document {
    fn compress(&self) {
        use std::io::Write;
        if self.gzip.get().is_some() {
            return;
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(self.json.len() / 4),
            flate2::Compression::fast(),
        );
        let compressed = encoder
            .write_all(&self.json)
            .and_then(|()| encoder.finish())
            .expect("gzip into memory");
        let _ = self.gzip.set(Bytes::from(compressed));
    }
}

/// The cache of one version: the latest document, a lock held while rendering so
/// that concurrent requests render once, and the renderer with its memory.
#[derive(Debug)]
struct Slot {
    latest: RwLock<Option<Arc<Document>>>,
    /// The newest document whose gzip copy is ready.
    compressed: Arc<RwLock<Option<Arc<Document>>>>,
    rendering: tokio::sync::Mutex<()>,
    renderer: Arc<std::sync::Mutex<Renderer>>,
}

impl Slot {
    fn new(options: RenderOptions) -> Self {
        Self {
            latest: RwLock::new(None),
            compressed: Arc::new(RwLock::new(None)),
            rendering: tokio::sync::Mutex::new(()),
            renderer: Arc::new(std::sync::Mutex::new(Renderer::new(options))),
        }
    }
}

/// The Traefik provider: the view it renders from, its options, and the cache.
#[derive(Debug)]
pub struct Provider {
    snapshots: watch::Receiver<Snapshot>,
    options: RenderOptions,
    v2: Slot,
    v3: Slot,
}

impl Provider {
    pub fn new(snapshots: watch::Receiver<Snapshot>, options: RenderOptions) -> Arc<Self> {
        let with = |version| RenderOptions {
            version,
            ..options.clone()
        };
        Arc::new(Self {
            snapshots,
            v2: Slot::new(with(TraefikVersion::V2)),
            v3: Slot::new(with(TraefikVersion::V3)),
            options,
        })
    }

    pub fn default_version(&self) -> TraefikVersion {
        self.options.version
    }

    fn slot(&self, version: TraefikVersion) -> &Slot {
        match version {
            TraefikVersion::V2 => &self.v2,
            TraefikVersion::V3 => &self.v3,
        }
    }

    /// The document of `version` for the current view, rendered if the cache is older;
    /// `Unavailable` while the view is not fresh.
    pub async fn document(&self, version: TraefikVersion) -> Result<Arc<Document>> {
        let snapshot = self.snapshots.borrow().clone();
        if !snapshot.is_fresh() {
            return Err(Error::Unavailable(
                "the gateway has no fresh view of the cluster; Traefik keeps its last configuration"
                    .into(),
            ));
        }
        self.document_of(version, &snapshot).await
    }

    async fn document_of(
        &self,
        version: TraefikVersion,
        snapshot: &Snapshot,
    ) -> Result<Arc<Document>> {
        let slot = self.slot(version);
        let index = snapshot.view.index();
        let cached = || {
            slot.latest
                .read()
                .expect("cache lock")
                .as_ref()
                .filter(|d| d.index == index)
                .cloned()
        };
        if let Some(document) = cached() {
            return Ok(document);
        }
        let _rendering = slot.rendering.lock().await;
        if let Some(document) = cached() {
            return Ok(document);
        }
        let view = Arc::clone(&snapshot.view);
        let renderer = Arc::clone(&slot.renderer);
        let document = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let Rendered {
                json,
                parts,
                errors,
            } = renderer.lock().expect("renderer lock").render_view(&view);
            Document {
                index: view.index(),
                json: Bytes::from(json),
                parts,
                errors,
                took: start.elapsed(),
                gzip: OnceLock::new(),
            }
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(format!("render task: {e}"))))?;
        log_render(version, &document);
        let document = Arc::new(document);
        *slot.latest.write().expect("cache lock") = Some(Arc::clone(&document));
        // Until its gzip copy is ready, gzip clients get the previous document's.
        let (compressing, compressed) = (Arc::clone(&document), Arc::clone(&slot.compressed));
        tokio::task::spawn_blocking(move || {
            compressing.compress();
            let mut newest = compressed.write().expect("cache lock");
            if newest.as_ref().is_none_or(|d| d.index <= compressing.index) {
                *newest = Some(compressing);
            }
        });
        Ok(document)
    }

    /// What a client taking gzip gets: `current` when its gzip copy is ready, else the
    /// newest document whose copy is (older by the time one compression takes), else
    /// `current` compressed now (the first document only).
    pub async fn gzip_document(
        &self,
        version: TraefikVersion,
        current: Arc<Document>,
    ) -> Result<Arc<Document>> {
        if current.gzip.get().is_some() {
            return Ok(current);
        }
        let newest = self
            .slot(version)
            .compressed
            .read()
            .expect("cache lock")
            .clone();
        if let Some(newest) = newest {
            return Ok(newest);
        }
        let compressing = Arc::clone(&current);
        tokio::task::spawn_blocking(move || compressing.compress())
            .await
            .map_err(|e| Error::Io(std::io::Error::other(format!("gzip task: {e}"))))?;
        Ok(current)
    }

    /// The latest cached document of `version`, whatever its index (for metrics).
    pub fn latest(&self, version: TraefikVersion) -> Option<Arc<Document>> {
        self.slot(version)
            .latest
            .read()
            .expect("cache lock")
            .clone()
    }

    /// Renders the default version after every view change, so polls find it ready.
    pub async fn keep_rendered(self: Arc<Self>, shutdown: CancellationToken) {
        let mut snapshots = self.snapshots.clone();
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if snapshot.synced
                && let Err(e) = self.document_of(self.options.version, &snapshot).await
            {
                tracing::warn!(error = %e, "traefik render failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
            }
        }
    }
}

fn log_render(version: TraefikVersion, document: &Document) {
    let errors = &document.errors;
    tracing::debug!(
        version = version.label(),
        index = document.index,
        bytes = document.json.len(),
        took_ms = document.took.as_secs_f64() * 1000.0,
        errors = errors.len(),
        "traefik document rendered"
    );
    for error in errors.iter().take(LOGGED_ERRORS) {
        tracing::warn!(service = %error.service, error = %error.message, version = version.label(), "traefik labels left out");
    }
    if errors.len() > LOGGED_ERRORS {
        tracing::warn!(
            more = errors.len() - LOGGED_ERRORS,
            "further traefik label errors not logged"
        );
    }
}

/// The version a query string asks for (`version=v2|v3`, its only parameter).
fn requested_version(query: Option<&str>, default: TraefikVersion) -> Result<TraefikVersion> {
    let mut version = default;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "version" {
            return Err(Error::BadRequest {
                field: key.chars().take(64).collect(),
                message: "unknown query parameter (only version=v2|v3 is read)".into(),
            });
        }
        version = value.parse().map_err(|message| Error::BadRequest {
            field: "version".into(),
            message,
        })?;
    }
    Ok(version)
}

/// The Traefik routes. They find the [`Provider`] in a request extension (add
/// `axum::Extension(provider)` around the router that holds them; without it they
/// answer 503) and admit a request only when `authorize` accepts its headers (on the
/// main listener: a read token; on the separate Traefik listener: everyone).
pub fn routes<S, A>(authorize: A) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    A: Fn(&HeaderMap) -> Result<()> + Clone + Send + Sync + 'static,
{
    let mut router = Router::new();
    for route in &TABLE {
        router =
            match route.part {
                None => router.route(route.path, get(whole)),
                Some((protocol, part)) => {
                    router.route(
                        route.path,
                        get(
                            move |provider: Option<Extension<Arc<Provider>>>,
                                  RawQuery(q): RawQuery| async move {
                                section(provider, q, protocol, part).await
                            },
                        ),
                    )
                }
            };
    }
    router.route_layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let authorize = authorize.clone();
            async move {
                match authorize(request.headers()) {
                    Ok(()) => next.run(request).await,
                    Err(e) => e.into_response(),
                }
            }
        },
    ))
}

/// The Traefik routes alone, open to every client, for the separate Traefik listener
/// (`--traefik-listen`): with a request timeout and tracing like the main listener.
pub fn standalone(provider: Arc<Provider>) -> Router {
    routes(|_: &HeaderMap| Ok(()))
        .fallback(|| async { Error::NotFound("route".into()) })
        .layer(Extension(provider))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            crate::http::REQUEST_TIMEOUT,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// One Traefik route: the whole document, or one map of it.
#[derive(Debug, Clone, Copy)]
pub struct TraefikRoute {
    pub path: &'static str,
    pub summary: &'static str,
    /// The map served, `None` for the whole document.
    pub part: Option<(Protocol, &'static str)>,
}

const fn part(
    path: &'static str,
    summary: &'static str,
    protocol: Protocol,
    name: &'static str,
) -> TraefikRoute {
    TraefikRoute {
        path,
        summary,
        part: Some((protocol, name)),
    }
}

/// Every route [`routes`] serves (all `GET`); the router and the OpenAPI document are
/// built from it.
pub const TABLE: [TraefikRoute; 10] = [
    TraefikRoute {
        path: "/traefik",
        summary: "Traefik HTTP provider: the whole dynamic configuration",
        part: None,
    },
    TraefikRoute {
        path: "/api/dynamic",
        summary: "The whole dynamic configuration (the predecessor's route)",
        part: None,
    },
    part(
        "/api/http/routers",
        "HTTP routers by name (predecessor)",
        Protocol::Http,
        "routers",
    ),
    part(
        "/api/http/services",
        "HTTP services by name (predecessor)",
        Protocol::Http,
        "services",
    ),
    part(
        "/api/http/middlewares",
        "HTTP middlewares by name (predecessor)",
        Protocol::Http,
        "middlewares",
    ),
    part(
        "/api/tcp/routers",
        "TCP routers by name (predecessor)",
        Protocol::Tcp,
        "routers",
    ),
    part(
        "/api/tcp/services",
        "TCP services by name (predecessor)",
        Protocol::Tcp,
        "services",
    ),
    part(
        "/api/tcp/middlewares",
        "TCP middlewares by name (predecessor)",
        Protocol::Tcp,
        "middlewares",
    ),
    part(
        "/api/udp/routers",
        "UDP routers by name (predecessor)",
        Protocol::Udp,
        "routers",
    ),
    part(
        "/api/udp/services",
        "UDP services by name (predecessor)",
        Protocol::Udp,
        "services",
    ),
];

/// The paths [`routes`] serves.
pub fn paths() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|r| r.path)
}

fn json(body: Bytes) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let gzip = parts.next().is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            gzip && !refused
        })
}

/// The whole document, compressed when the client takes gzip and the compressed copy
/// is ready.
fn document_response(document: &Document, headers: &HeaderMap) -> Response {
    let mut response = match document.gzip.get() {
        Some(gzip) if accepts_gzip(headers) => {
            let mut response = json(gzip.clone());
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        _ => json(document.json.clone()),
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

fn provider(extension: Option<Extension<Arc<Provider>>>) -> Result<Arc<Provider>> {
    extension
        .map(|Extension(p)| p)
        .ok_or_else(|| Error::Unavailable("the Traefik provider is not configured".into()))
}

async fn whole(
    extension: Option<Extension<Arc<Provider>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let provider = provider(extension)?;
    let version = requested_version(query.as_deref(), provider.default_version())?;
    let mut document = provider.document(version).await?;
    if accepts_gzip(&headers) {
        document = provider.gzip_document(version, document).await?;
    }
    Ok(document_response(&document, &headers))
}

async fn section(
    extension: Option<Extension<Arc<Provider>>>,
    query: Option<String>,
    protocol: Protocol,
    part: &'static str,
) -> Result<Response> {
    let provider = provider(extension)?;
    let version = requested_version(query.as_deref(), provider.default_version())?;
    let document = provider.document(version).await?;
    let body = document
        .parts
        .iter()
        .find(|(p, name, _)| *p == protocol && *name == part)
        .map(|(_, _, range)| document.json.slice(range.clone()))
        .unwrap_or_else(|| Bytes::from_static(b"{}"));
    Ok(json(body))
}
