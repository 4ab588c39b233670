//! `/metrics` in the Prometheus text format (version 0.0.4), without a metrics crate:
//! requests and latency per route (a fixed-bucket histogram per method, route
//! template and status class), WebSocket clients, and the view's position and
//! freshness relative to the control plane. Rendering is a pure function of the
//! recorded values and a snapshot.

use crate::http::AppState;
use crate::view::Snapshot;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// Upper bounds (seconds) of the latency buckets.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Cumulative only when rendered; here each bucket counts its own range.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// (method, route template, status class such as "2xx").
type Key = (String, String, &'static str);

/// The gateway's own counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Key, Histogram>>,
    pub websocket_clients: AtomicI64,
    /// WebSocket clients closed for not keeping up.
    pub websocket_slow_closes: std::sync::atomic::AtomicU64,
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let key = (method.to_owned(), route.to_owned(), status_class(status));
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.entry(key).or_default().observe(seconds);
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.push_str("# HELP constellation_gateway_requests_total HTTP requests answered, by route template and status class.\n");
        out.push_str("# TYPE constellation_gateway_requests_total counter\n");
        for ((method, route, class), h) in &requests {
            let _ = writeln!(
                out,
                "constellation_gateway_requests_total{{method=\"{method}\",route=\"{}\",status=\"{class}\"}} {}",
                escape(route),
                h.count
            );
        }
        out.push_str("# HELP constellation_gateway_request_duration_seconds Time to answer (until the response head for streams).\n");
        out.push_str("# TYPE constellation_gateway_request_duration_seconds histogram\n");
        for ((method, route, class), h) in &requests {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{class}\"",
                escape(route)
            );
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "constellation_gateway_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "constellation_gateway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "constellation_gateway_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "constellation_gateway_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        gauge(
            &mut out,
            "constellation_gateway_websocket_clients",
            "WebSocket clients connected.",
            self.websocket_clients.load(Ordering::Relaxed) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP constellation_gateway_websocket_slow_closes_total WebSocket clients closed for not keeping up (a full queue, a stuck socket, or too far behind).\n# TYPE constellation_gateway_websocket_slow_closes_total counter\nconstellation_gateway_websocket_slow_closes_total {}",
            self.websocket_slow_closes.load(Ordering::Relaxed)
        );
        let view = &snapshot.view;
        gauge(
            &mut out,
            "constellation_gateway_view_index",
            "Event index the view reflects.",
            view.index() as f64,
        );
        let behind = view
            .cluster()
            .map_or(0, |c| c.event_index.saturating_sub(view.index()));
        gauge(
            &mut out,
            "constellation_gateway_view_lag_events",
            "Events the control plane had applied (at its last status) that the view had not.",
            behind as f64,
        );
        gauge(
            &mut out,
            "constellation_gateway_view_fresh",
            "1 when the view is synced and its watch stream connected (or lost for less than the stale bound).",
            if snapshot.is_fresh() { 1.0 } else { 0.0 },
        );
        let lost = snapshot
            .lost_since
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        gauge(
            &mut out,
            "constellation_gateway_view_disconnected_seconds",
            "How long the watch stream has been lost (0 while connected).",
            lost,
        );
        gauge(
            &mut out,
            "constellation_gateway_view_services",
            "Services in the view.",
            view.services().len() as f64,
        );
        gauge(
            &mut out,
            "constellation_gateway_view_allocations",
            "Allocations in the view.",
            view.allocations().len() as f64,
        );
        out
    }
}

/// One figure read off a rendered Traefik document.
type DocumentFigure = fn(&crate::traefik::serve::Document) -> f64;

/// The Traefik provider's latest documents: render time, size, view index, errors.
pub fn traefik_gauges(provider: &crate::traefik::Provider) -> String {
    use crate::traefik::TraefikVersion;
    let documents: Vec<_> = [TraefikVersion::V2, TraefikVersion::V3]
        .into_iter()
        .filter_map(|v| provider.latest(v).map(|d| (v.label(), d)))
        .collect();
    let mut out = String::new();
    let series: [(&str, &str, DocumentFigure); 4] = [
        (
            "constellation_gateway_traefik_render_seconds",
            "How long the latest Traefik document took to render.",
            |d| d.took.as_secs_f64(),
        ),
        (
            "constellation_gateway_traefik_document_bytes",
            "Size of the latest Traefik document (uncompressed).",
            |d| d.json.len() as f64,
        ),
        (
            "constellation_gateway_traefik_document_index",
            "View index the latest Traefik document was rendered from.",
            |d| d.index as f64,
        ),
        (
            "constellation_gateway_traefik_render_errors",
            "Services or definitions left out of the latest document (bad labels, conflicts).",
            |d| d.errors.len() as f64,
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (version, document) in &documents {
            let _ = writeln!(out, "{name}{{version=\"{version}\"}} {}", value(document));
        }
    }
    out
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware recording every request under its route template.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn handler(
    State(state): State<AppState>,
    traefik: Option<axum::Extension<std::sync::Arc<crate::traefik::Provider>>>,
) -> Response {
    let mut text = state.metrics.render(&state.snapshot());
    if let Some(axum::Extension(provider)) = traefik {
        text.push_str(&traefik_gauges(&provider));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_counters_histograms_and_view_gauges() {
        let m = Metrics::default();
        m.observe("GET", "/api/v1/services/{name}", 200, 0.002);
        m.observe("GET", "/api/v1/services/{name}", 404, 0.0001);
        m.observe("GET", "/api/v1/services/{name}", 200, 2.0);
        let text = m.render(&Snapshot::initial(Duration::from_secs(5)));
        assert!(text.contains(
            "constellation_gateway_requests_total{method=\"GET\",route=\"/api/v1/services/{name}\",status=\"2xx\"} 2"
        ), "{text}");
        assert!(text.contains("le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(
            text.contains("constellation_gateway_view_fresh 0"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
