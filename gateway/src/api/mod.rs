//! REST under `/api/v1`: the route table (method, path, required access) the router is
//! built from, and thin handlers: read input, call the view or the control plane,
//! convert the answer. Reads come from the materialised view; writes go to the
//! control plane and answer what it answered.

pub mod body;
pub mod events;
pub mod shapes;

use crate::auth::Access;
use crate::http::AppState;
use crate::view::Snapshot;
use crate::{Error, Result};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use bytes::Bytes;
use constellation_proto::v1::{
    AcquireLeaseRequest, ApplyServiceRequest, CordonNodeRequest, CreateMigrationRequest,
    DeleteServiceRequest, DrainNodeRequest, ReleaseLeaseRequest, RenewLeaseRequest,
    RollbackServiceRequest, ServiceSpec, UncordonNodeRequest,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// One route of the HTTP surface: what the router is built from, and what tests and
/// the documentation enumerate.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

/// A route and its handler.
pub struct Entry {
    pub route: Route,
    pub handler: MethodRouter<AppState>,
}

fn entry<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: H,
) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Entry {
        route: Route {
            method,
            path,
            access,
            summary,
        },
        handler: on(filter, handler),
    }
}

/// Every REST route. Mutating routes (anything but GET) require an admin token.
pub fn table() -> Vec<Entry> {
    use Access::{Admin, Public, Read};
    use Method as M;
    vec![
        entry(
            M::GET,
            "/health",
            Public,
            "Liveness of the gateway process",
            crate::http::health,
        ),
        entry(M::GET, "/api/v1/status", Read, "Cluster summary", status),
        entry(M::GET, "/api/v1/nodes", Read, "Every node", nodes),
        entry(
            M::GET,
            "/api/v1/nodes/{name}",
            Read,
            "One node and the instances on it",
            node,
        ),
        entry(
            M::POST,
            "/api/v1/nodes/{name}/cordon",
            Admin,
            "Stop placing new work on a node",
            cordon,
        ),
        entry(
            M::POST,
            "/api/v1/nodes/{name}/uncordon",
            Admin,
            "Make a node schedulable again",
            uncordon,
        ),
        entry(
            M::POST,
            "/api/v1/nodes/{name}/drain",
            Admin,
            "Move every allocation off a node",
            drain,
        ),
        entry(
            M::GET,
            "/api/v1/services",
            Read,
            "Every service with its instances",
            services,
        ),
        entry(
            M::GET,
            "/api/v1/services/{name}",
            Read,
            "One service and its instances",
            service,
        ),
        entry(
            M::PUT,
            "/api/v1/services/{name}",
            Admin,
            "Create or replace a service (body: ServiceSpec)",
            apply_service,
        ),
        entry(
            M::DELETE,
            "/api/v1/services/{name}",
            Admin,
            "Delete a service",
            delete_service,
        ),
        entry(
            M::POST,
            "/api/v1/services/{name}/rollback",
            Admin,
            "Roll a service back to its previous spec, as a new version",
            rollback_service,
        ),
        entry(
            M::GET,
            "/api/v1/allocations",
            Read,
            "Allocations, filtered by service and node",
            allocations,
        ),
        entry(M::GET, "/api/v1/leases", Read, "Every held lease", leases),
        entry(
            M::POST,
            "/api/v1/leases/{name}/acquire",
            Admin,
            "Acquire a lease",
            acquire_lease,
        ),
        entry(
            M::POST,
            "/api/v1/leases/{name}/renew",
            Admin,
            "Renew a held lease",
            renew_lease,
        ),
        entry(
            M::POST,
            "/api/v1/leases/{name}/release",
            Admin,
            "Release a held lease",
            release_lease,
        ),
        entry(
            M::GET,
            "/api/v1/raft/status",
            Read,
            "Raft leader and members",
            raft_status,
        ),
        entry(
            M::GET,
            "/api/v1/raft/leader",
            Read,
            "The Raft leader",
            raft_leader,
        ),
        entry(M::GET, "/api/v1/metrics", Read, "Cluster counts", metrics),
        entry(
            M::GET,
            "/api/v1/migrations",
            Read,
            "Every migration",
            migrations,
        ),
        entry(
            M::POST,
            "/api/v1/migrations",
            Admin,
            "Start a migration",
            create_migration,
        ),
        entry(
            M::GET,
            "/api/v1/migrations/{service}",
            Read,
            "A migration by id, or a service's latest",
            migration,
        ),
        entry(
            M::GET,
            "/api/v1/events",
            Read,
            "The event stream as ndjson (index, topic)",
            events::events,
        ),
        entry(
            M::GET,
            "/api/v1/openapi.json",
            Public,
            "This API as an OpenAPI 3.1 document",
            crate::openapi::handler,
        ),
        entry(
            M::GET,
            "/metrics",
            Read,
            "Prometheus metrics of the gateway",
            crate::metrics::handler,
        ),
        entry(
            M::GET,
            "/ws",
            Read,
            "WebSocket: a snapshot, then typed events (index, topic)",
            crate::ws::upgrade,
        ),
    ]
}

/// The routes of [`table`], each behind the check of its access.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for Entry { route, handler } in table() {
        let tokens = state.tokens.clone();
        let access = route.access;
        let guarded = handler.route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let tokens = tokens.clone();
                async move {
                    match tokens.authorize(access, request.headers()) {
                        Ok(()) => next.run(request).await,
                        Err(e) => e.into_response(),
                    }
                }
            },
        ));
        router = router.route(route.path, guarded);
    }
    router
}

// ---- reads, from the view ----

/// The latest snapshot, unless the view never synced (then there is nothing true to say).
fn read(state: &AppState) -> Result<Snapshot> {
    let snapshot = state.snapshot();
    if !snapshot.synced {
        return Err(Error::Unavailable(
            "the gateway has not reached the control plane yet".into(),
        ));
    }
    Ok(snapshot)
}

/// A JSON answer from a snapshot, with the index it reflects and whether it is fresh.
fn from_view(snapshot: &Snapshot, body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-constellation-index",
        HeaderValue::from(snapshot.view.index()),
    );
    headers.insert(
        "x-constellation-fresh",
        HeaderValue::from_static(if snapshot.is_fresh() { "true" } else { "false" }),
    );
    response
}

async fn status(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let mut body = shapes::status(&s.view, &crate::rfc3339_now());
    body["fresh"] = json!(s.is_fresh());
    Ok(from_view(&s, body))
}

async fn nodes(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let nodes: Vec<Value> = s.view.nodes().values().map(shapes::node).collect();
    Ok(from_view(&s, json!({ "nodes": nodes })))
}

async fn node(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    body::name("name", &name)?;
    let s = read(&state)?;
    let node = s
        .view
        .node(&name)
        .ok_or_else(|| Error::NotFound(format!("node {name:?}")))?;
    Ok(from_view(&s, shapes::node_detail(&s.view, node)))
}

/// The whole list is rendered once per published view (off the async threads) and
/// served from memory until the view changes: with 10,000 services rendering takes
/// hundreds of milliseconds, and every poller would otherwise pay it.
async fn services(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let mut cache = state.services_cache.lock().await;
    let bytes = match &*cache {
        Some((view, bytes)) if Arc::ptr_eq(view, &s.view) => bytes.clone(),
        _ => {
            let view = Arc::clone(&s.view);
            let bytes = tokio::task::spawn_blocking(move || {
                let services: Vec<Value> = view
                    .services()
                    .values()
                    .map(|svc| shapes::service_summary(&view, svc))
                    .collect();
                Bytes::from(
                    serde_json::to_vec(&json!({ "services": services })).unwrap_or_default(),
                )
            })
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
            *cache = Some((Arc::clone(&s.view), bytes.clone()));
            bytes
        }
    };
    drop(cache);
    let mut response = from_view(&s, Value::Null);
    *response.body_mut() = axum::body::Body::from(bytes);
    Ok(response)
}

async fn service(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    body::name("name", &name)?;
    let s = read(&state)?;
    let service = s
        .view
        .service(&name)
        .ok_or_else(|| Error::NotFound(format!("service {name:?}")))?;
    Ok(from_view(&s, shapes::service_detail(&s.view, service)))
}

async fn allocations(State(state): State<AppState>, RawQuery(query): RawQuery) -> Result<Response> {
    let pairs = body::query_pairs(query.as_deref())?;
    body::only_keys(&pairs, &["service", "node", "include_terminal"])?;
    let mut service = None;
    let mut node = None;
    let mut include_terminal = false;
    for (key, value) in &pairs {
        match key.as_str() {
            "service" => {
                body::name("service", value)?;
                service = Some(value.clone());
            }
            "node" => {
                body::name("node", value)?;
                node = Some(value.clone());
            }
            _ => include_terminal = body::parse_bool("include_terminal", value)?,
        }
    }
    let s = read(&state)?;
    let list: Vec<Value> = s
        .view
        .allocations()
        .values()
        .filter(|a| service.as_ref().is_none_or(|n| &a.service_name == n))
        .filter(|a| node.as_ref().is_none_or(|n| &a.node_name == n))
        .filter(|a| include_terminal || !shapes::is_terminal(a))
        .map(shapes::proto)
        .collect();
    Ok(from_view(
        &s,
        json!({ "allocations": list, "index": s.view.index() }),
    ))
}

async fn leases(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let list: Vec<Value> = s.view.leases().values().map(shapes::proto).collect();
    Ok(from_view(
        &s,
        json!({ "leases": list, "index": s.view.index() }),
    ))
}

async fn raft_status(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let mut body = shapes::raft(&s.view);
    body["members"] = s
        .view
        .cluster()
        .map(|c| Value::Array(c.members.iter().map(shapes::proto).collect()))
        .unwrap_or(Value::Array(Vec::new()));
    body["timestamp"] = json!(crate::rfc3339_now());
    Ok(from_view(&s, body))
}

async fn raft_leader(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let raft = shapes::raft(&s.view);
    let body = json!({
        "leader": raft["leader"],
        "leader_id": raft["leader_id"],
        "term": raft["term"],
        "timestamp": crate::rfc3339_now(),
    });
    Ok(from_view(&s, body))
}

async fn metrics(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    Ok(from_view(
        &s,
        shapes::metrics(&s.view, &crate::rfc3339_now()),
    ))
}

async fn migrations(State(state): State<AppState>) -> Result<Response> {
    let s = read(&state)?;
    let list: Vec<Value> = shapes::migrations_in_order(&s.view)
        .into_iter()
        .map(shapes::migration)
        .collect();
    Ok(from_view(&s, json!({ "migrations": list })))
}

async fn migration(State(state): State<AppState>, Path(service): Path<String>) -> Result<Response> {
    body::name("service", &service)?;
    let s = read(&state)?;
    let m = shapes::find_migration(&s.view, &service)
        .ok_or_else(|| Error::NotFound(format!("migration of {service:?}")))?;
    Ok(from_view(&s, shapes::migration(m)))
}

// ---- writes, through the control plane ----

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn cordon(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    body::name("name", &name)?;
    let req = CordonNodeRequest { name: name.clone() };
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.cordon_node(req).await }
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        json!({
            "message": format!("Node {name} cordoned"),
            "cordoned": true,
            "node": resp.node.as_ref().map(shapes::node),
        }),
    ))
}

async fn uncordon(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    body::name("name", &name)?;
    let req = UncordonNodeRequest { name: name.clone() };
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.uncordon_node(req).await }
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        json!({
            "message": format!("Node {name} uncordoned"),
            "cordoned": false,
            "node": resp.node.as_ref().map(shapes::node),
        }),
    ))
}

/// Body (optional): `DrainNodeRequest` without its name, e.g. `{"deadline":"10m"}`.
async fn drain(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    body::name("name", &name)?;
    let mut req: DrainNodeRequest = body::json_or_default(&bytes)?;
    body::same_name("name", &req.name, &name)?;
    req.name = name.clone();
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.drain_node(req).await }
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        json!({
            "message": format!("Node {name} draining"),
            "draining": true,
            "node": resp.node.as_ref().map(shapes::node),
        }),
    ))
}

/// Body: the `ServiceSpec`; query `dry_run`, `expected_version`.
async fn apply_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    bytes: Bytes,
) -> Result<Response> {
    body::name("name", &name)?;
    let pairs = body::query_pairs(query.as_deref())?;
    body::only_keys(&pairs, &["dry_run", "expected_version"])?;
    let mut req = ApplyServiceRequest::default();
    for (key, value) in &pairs {
        if key == "dry_run" {
            req.dry_run = body::parse_bool("dry_run", value)?;
        } else {
            let v = value.parse().map_err(|_| {
                Error::bad_request("expected_version", "must be an unsigned integer")
            })?;
            req.expected_version = Some(v);
        }
    }
    // Field paths as the control plane names them: the body is the request's `spec`.
    let mut spec: ServiceSpec = body::json(&bytes).map_err(|e| match e {
        Error::BadRequest { field, message } if field != "body" => Error::BadRequest {
            field: format!("spec.{field}"),
            message,
        },
        other => other,
    })?;
    body::same_name("spec.name", &spec.name, &name)?;
    spec.name = name;
    req.spec = Some(spec);
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.apply_service(req).await }
        })
        .await?;
    let created =
        resp.changed && !req.dry_run && resp.service.as_ref().is_some_and(|s| s.version == 1);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(status, shapes::proto(&resp)))
}

async fn delete_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response> {
    body::name("name", &name)?;
    let req = DeleteServiceRequest { name };
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.delete_service(req).await }
        })
        .await?;
    Ok(answer(StatusCode::OK, shapes::proto(&resp)))
}

async fn rollback_service(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response> {
    body::name("name", &name)?;
    let req = RollbackServiceRequest { name };
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.rollback_service(req).await }
        })
        .await?;
    Ok(answer(StatusCode::OK, shapes::proto(&resp)))
}

/// Body: `{"service_name", "target_node"?, "priority"?, "allocation_id"?}`; 202 with the
/// migration.
async fn create_migration(State(state): State<AppState>, bytes: Bytes) -> Result<Response> {
    let req: CreateMigrationRequest = body::json(&bytes)?;
    body::name("service_name", &req.service_name)?;
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.create_migration(req).await }
        })
        .await?;
    let migration = resp
        .migration
        .as_ref()
        .map(shapes::migration)
        .unwrap_or(Value::Null);
    Ok(answer(StatusCode::ACCEPTED, migration))
}

/// Body: `{"holder", "ttl"}`.
async fn acquire_lease(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let req = body::named_by_path(name, &bytes, |r: &mut AcquireLeaseRequest| &mut r.name)?;
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.acquire_lease(req).await }
        })
        .await?;
    Ok(answer(StatusCode::OK, shapes::proto(&resp)))
}

/// Body: `{"holder", "fencing_token", "ttl"?}`.
async fn renew_lease(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let req = body::named_by_path(name, &bytes, |r: &mut RenewLeaseRequest| &mut r.name)?;
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.renew_lease(req).await }
        })
        .await?;
    Ok(answer(StatusCode::OK, shapes::proto(&resp)))
}

/// Body: `{"holder", "fencing_token"}`.
async fn release_lease(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let req = body::named_by_path(name, &bytes, |r: &mut ReleaseLeaseRequest| &mut r.name)?;
    let resp = state
        .upstream
        .call(|mut c| {
            let req = req.clone();
            async move { c.release_lease(req).await }
        })
        .await?;
    Ok(answer(StatusCode::OK, shapes::proto(&resp)))
}
