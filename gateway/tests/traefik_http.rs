//! The Traefik routes over a published view: 503 until the view is fresh and again
//! once it is stale, the rendered bytes otherwise, one render per view index, `?version`
//! and the predecessor's sub-routes.

mod traefik_support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use constellation_gateway::traefik::{Provider, RenderOptions, TraefikVersion, routes};
use constellation_gateway::view::{Lists, Snapshot, View, feed};
use constellation_proto::v1 as pb;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower::ServiceExt;
use traefik_support::*;

const STALE_AFTER: Duration = Duration::from_secs(10);

fn view(state: &State, index: u64) -> View {
    View::from_lists(Lists {
        services: pb::ListServicesResponse {
            services: state.services.values().cloned().collect(),
            index,
        },
        nodes: pb::ListNodesResponse {
            nodes: state.nodes.values().cloned().collect(),
            index,
        },
        allocations: pb::ListAllocationsResponse {
            allocations: state.allocations.values().cloned().collect(),
            index,
        },
        leases: pb::ListLeasesResponse {
            leases: vec![],
            index,
        },
        migrations: pb::ListMigrationsResponse {
            migrations: vec![],
            index,
        },
        status: pb::ClusterStatusResponse {
            event_index: index,
            ..Default::default()
        },
    })
}

fn publish(tx: &watch::Sender<Snapshot>, state: &State, index: u64) {
    tx.send_replace(Snapshot {
        view: Arc::new(view(state, index)),
        synced: true,
        lost_since: None,
        stale_after: STALE_AFTER,
    });
}

fn web_state() -> State {
    let mut state = State::new();
    state.service("web", &[("traefik.enable", "true")]);
    state.alloc("a1", "web", "n1", 30001);
    state
}

async fn get(router: &Router, uri: &str) -> (StatusCode, String, serde_json::Value) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, content_type, body)
}

fn setup() -> (watch::Sender<Snapshot>, Arc<Provider>, Router) {
    let (tx, channels) = feed::channels(STALE_AFTER);
    let provider = Provider::new(channels.snapshots, RenderOptions::default());
    let router: Router =
        routes(|_: &axum::http::HeaderMap| Ok(())).layer(axum::Extension(Arc::clone(&provider)));
    (tx, provider, router)
}

#[tokio::test]
async fn unavailable_until_the_view_has_synced() {
    let (_tx, _provider, router) = setup();
    for uri in [
        "/traefik",
        "/api/dynamic",
        "/api/http/routers",
        "/traefik?version=v2",
    ] {
        let (status, content_type, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(content_type, "application/json");
        assert_eq!(body["code"], "unavailable", "{uri}");
    }
}

#[tokio::test]
async fn the_authorize_check_runs_first_and_a_missing_provider_is_503() {
    let refuse = |_: &axum::http::HeaderMap| {
        Err(constellation_gateway::Error::BadRequest {
            field: "authorization".into(),
            message: "refused".into(),
        })
    };
    let (_tx, provider, _) = setup();
    let router: Router = routes(refuse).layer(axum::Extension(provider));
    for uri in constellation_gateway::traefik::serve::paths() {
        assert_eq!(get(&router, uri).await.0, StatusCode::BAD_REQUEST, "{uri}");
    }
    let router: Router = routes(|_: &axum::http::HeaderMap| Ok(()));
    assert_eq!(
        get(&router, "/traefik").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn serves_the_rendered_document_and_its_sections() {
    let (tx, _provider, router) = setup();
    let state = web_state();
    publish(&tx, &state, 7);
    let expected: serde_json::Value =
        serde_json::from_slice(&state.render(&RenderOptions::default()).json).unwrap();
    let (status, content_type, body) = get(&router, "/traefik").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(body, expected);
    assert_eq!(get(&router, "/api/dynamic").await.2, expected);
    assert_eq!(
        get(&router, "/api/http/routers").await.2,
        expected["http"]["routers"]
    );
    assert_eq!(
        get(&router, "/api/http/services").await.2,
        expected["http"]["services"]
    );
    for empty in [
        "/api/http/middlewares",
        "/api/tcp/routers",
        "/api/tcp/middlewares",
        "/api/tcp/services",
        "/api/udp/routers",
        "/api/udp/services",
    ] {
        let (status, _, body) = get(&router, empty).await;
        assert_eq!(status, StatusCode::OK, "{empty}");
        assert_eq!(body, serde_json::json!({}), "{empty}");
    }
}

#[tokio::test]
async fn version_comes_from_the_query_and_bad_queries_are_400() {
    let (tx, _provider, router) = setup();
    let mut state = State::new();
    state.service(
        "web",
        &[
            ("traefik.enable", "true"),
            ("traefik.http.services.web.loadbalancer.server.weight", "3"),
        ],
    );
    state.alloc("a1", "web", "n1", 30001);
    publish(&tx, &state, 3);
    let (_, _, v3) = get(&router, "/traefik").await;
    assert_eq!(
        v3["http"]["services"]["web"]["loadBalancer"]["servers"][0]["weight"],
        3
    );
    // In v2 mode the v3-only label is refused and the service left out.
    let (status, _, v2) = get(&router, "/traefik?version=v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v2, serde_json::json!({}));
    let (status, _, body) = get(&router, "/traefik?version=v9").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "version");
    let (status, _, body) = get(&router, "/traefik?verbose=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "verbose");
}

#[tokio::test]
async fn renders_once_per_view_index() {
    let (tx, provider, _router) = setup();
    let mut state = web_state();
    publish(&tx, &state, 1);
    let first = provider.document(TraefikVersion::V3).await.unwrap();
    let again = provider.document(TraefikVersion::V3).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the same index is served from the cache"
    );
    assert_eq!(first.index, 1);

    set_health(
        state.allocations.get_mut("a1").unwrap(),
        pb::HealthState::Unhealthy,
    );
    publish(&tx, &state, 2);
    let changed = provider.document(TraefikVersion::V3).await.unwrap();
    assert_eq!(changed.index, 2);
    assert_eq!(&changed.json[..], b"{}");
}

#[tokio::test]
async fn the_background_task_renders_ahead_of_polls() {
    let (tx, provider, _router) = setup();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&provider).keep_rendered(shutdown.clone()));
    let state = web_state();
    publish(&tx, &state, 5);
    let start = Instant::now();
    while provider
        .latest(TraefikVersion::V3)
        .is_none_or(|d| d.index != 5)
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not rendered ahead"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_stale_view_is_503_not_an_empty_document() {
    let (tx, _provider, router) = setup();
    let state = web_state();
    publish(&tx, &state, 4);
    assert_eq!(get(&router, "/traefik").await.0, StatusCode::OK);
    // The stream was lost longer ago than the view may go without it.
    tx.send_replace(Snapshot {
        view: Arc::new(view(&state, 4)),
        synced: true,
        lost_since: Some(Instant::now() - STALE_AFTER - Duration::from_secs(1)),
        stale_after: STALE_AFTER,
    });
    let (status, _, body) = get(&router, "/traefik").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "unavailable");
    // Lost, but for less than the bound: still served.
    tx.send_replace(Snapshot {
        view: Arc::new(view(&state, 4)),
        synced: true,
        lost_since: Some(Instant::now()),
        stale_after: STALE_AFTER,
    });
    assert_eq!(get(&router, "/traefik").await.0, StatusCode::OK);
}

#[tokio::test]
async fn gzip_clients_get_the_precompressed_copy() {
    use std::io::Read;
    let (tx, provider, router) = setup();
    let state = web_state();
    publish(&tx, &state, 9);
    let document = provider.document(TraefikVersion::V3).await.unwrap();
    let start = Instant::now();
    while document.gzip.get().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "never compressed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let request = |encoding: &str| {
        Request::get("/traefik")
            .header("accept-encoding", encoding)
            .body(Body::empty())
            .unwrap()
    };
    let response = router.clone().oneshot(request("gzip")).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, state.render(&RenderOptions::default()).json);

    for refused in ["gzip;q=0", "br", "identity"] {
        let response = router.clone().oneshot(request(refused)).await.unwrap();
        assert!(
            response.headers().get("content-encoding").is_none(),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn metrics_report_the_latest_render() {
    let (tx, provider, router) = setup();
    assert!(
        !constellation_gateway::metrics::traefik_gauges(&provider).contains("{version="),
        "no document yet, no series"
    );
    publish(&tx, &web_state(), 7);
    assert_eq!(get(&router, "/traefik").await.0, StatusCode::OK);
    let text = constellation_gateway::metrics::traefik_gauges(&provider);
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{version=\"v3\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix));
        line.unwrap_or_else(|| panic!("{name} in {text}"))[prefix.len()..]
            .parse()
            .unwrap()
    };
    assert!(value("constellation_gateway_traefik_render_seconds") > 0.0);
    assert!(value("constellation_gateway_traefik_document_bytes") > 2.0);
    assert_eq!(value("constellation_gateway_traefik_document_index"), 7.0);
    assert_eq!(value("constellation_gateway_traefik_render_errors"), 0.0);
}
