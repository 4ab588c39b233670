//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document built from the code itself. The
//! paths, methods, summaries and security come from the route table the router is
//! built from ([`crate::api::table`]); the schemas of protocol messages are derived
//! from the compiled `.proto` descriptors, following the proto3 JSON mapping the
//! gateway speaks (64-bit integers as strings, enums by name, `Duration` as `"10s"`,
//! `Timestamp` as RFC 3339, field names as written in the .proto files).
//!
//! The routes that keep the predecessor's shapes (`/api/v1/status`, `/api/v1/nodes`,
//! ...) have schemas written here beside the code that builds them ([`shape_schemas`]);
//! where such an answer is a protocol message with fields added (a node, a
//! migration), its schema is the message's with those fields added. The Traefik
//! routes ([`crate::traefik::serve::TABLE`]) are described too. The tests of the
//! gateway check real answers of every route against these schemas.

use crate::api::{Route, table};
use crate::auth::Access;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

const PACKAGE: &str = "constellation.v1";

/// The protocol message a route takes as its JSON body and the one it answers with,
/// where the route speaks protocol messages.
fn messages(route: &Route) -> (Option<&'static str>, Option<&'static str>) {
    match (route.method.as_str(), route.path) {
        ("PUT", "/api/v1/services/{name}") => (Some("ServiceSpec"), Some("ApplyServiceResponse")),
        ("DELETE", "/api/v1/services/{name}") => (None, Some("DeleteServiceResponse")),
        ("POST", "/api/v1/services/{name}/rollback") => (None, Some("RollbackServiceResponse")),
        ("POST", "/api/v1/migrations") => {
            (Some("CreateMigrationRequest"), Some("MigrationSummary"))
        }
        ("POST", "/api/v1/leases/{name}/acquire") => {
            (Some("AcquireLeaseRequest"), Some("AcquireLeaseResponse"))
        }
        ("POST", "/api/v1/leases/{name}/renew") => {
            (Some("RenewLeaseRequest"), Some("RenewLeaseResponse"))
        }
        ("POST", "/api/v1/leases/{name}/release") => {
            (Some("ReleaseLeaseRequest"), Some("ReleaseLeaseResponse"))
        }
        ("GET", "/api/v1/events") => (None, Some("EventLine")),
        ("GET", "/health") => (None, Some("Health")),
        ("GET", "/api/v1/status") => (None, Some("Status")),
        ("GET", "/api/v1/nodes") => (None, Some("NodeList")),
        ("GET", "/api/v1/nodes/{name}") => (None, Some("NodeDetail")),
        ("POST", "/api/v1/nodes/{name}/cordon" | "/api/v1/nodes/{name}/uncordon") => {
            (None, Some("CordonAnswer"))
        }
        ("POST", "/api/v1/nodes/{name}/drain") => (Some("DrainNodeRequest"), Some("DrainAnswer")),
        ("GET", "/api/v1/services") => (None, Some("ServiceList")),
        ("GET", "/api/v1/services/{name}") => (None, Some("ServiceDetail")),
        ("GET", "/api/v1/allocations") => (None, Some("AllocationList")),
        ("GET", "/api/v1/leases") => (None, Some("LeaseList")),
        ("GET", "/api/v1/raft/status") => (None, Some("RaftStatus")),
        ("GET", "/api/v1/raft/leader") => (None, Some("RaftLeader")),
        ("GET", "/api/v1/metrics") => (None, Some("ClusterMetrics")),
        ("GET", "/api/v1/migrations") => (None, Some("MigrationList")),
        ("GET", "/api/v1/migrations/{service}") => (None, Some("MigrationSummary")),
        ("GET", "/metrics") => (None, Some("PrometheusText")),
        ("GET", "/api/v1/openapi.json") => (None, Some("OpenApiDocument")),
        ("GET", "/ws") => (None, None),
        _ => (None, None),
    }
}

/// The query parameters of a route: (name, schema, description).
fn query_parameters(route: &Route) -> Vec<(&'static str, Value, &'static str)> {
    let topics = json!({"type": "string", "description": "comma-separated", "examples": ["node,service,allocation,health,leadership,lease,migration"]});
    let index = json!({"type": "integer", "minimum": 0});
    match (route.method.as_str(), route.path) {
        ("GET", "/api/v1/allocations") => vec![
            (
                "service",
                json!({"type": "string"}),
                "Only this service's allocations",
            ),
            (
                "node",
                json!({"type": "string"}),
                "Only allocations on this node",
            ),
            (
                "include_terminal",
                json!({"type": "boolean", "default": false}),
                "Also stopped, failed and lost ones",
            ),
        ],
        ("PUT", "/api/v1/services/{name}") => vec![
            (
                "dry_run",
                json!({"type": "boolean", "default": false}),
                "Validate and plan, write nothing",
            ),
            (
                "expected_version",
                index.clone(),
                "Apply only over this version of the service",
            ),
        ],
        ("GET", "/api/v1/events") => vec![
            (
                "index",
                index.clone(),
                "Events after this index (0: from the oldest kept)",
            ),
            ("topic", topics, "Only these topics (default: all)"),
        ],
        ("GET", "/ws") => vec![
            (
                "index",
                index,
                "Resume: no snapshot, the events after this index, then live ones",
            ),
            ("topic", topics, "Only these topics (default: all)"),
        ],
        _ => Vec::new(),
    }
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

pub async fn handler() -> axum::Json<Value> {
    axum::Json(document().clone())
}

fn build() -> Value {
    let descriptors =
        FileDescriptorSet::decode(constellation_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut schemas = Map::new();
    for file in &descriptors.file {
        if file.package() != PACKAGE {
            continue;
        }
        for message in &file.message_type {
            add_message(&mut schemas, "", message);
        }
        for e in &file.enum_type {
            schemas.insert(e.name().to_owned(), enum_schema(e));
        }
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "description": "invalid_argument, not_found, unauthenticated, permission_denied, ..."},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"], "description": "The (first) field the error is about."},
                "violations": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
            },
        }),
    );

    shape_schemas(&mut schemas);

    let mut paths = Map::new();
    for route in routes() {
        let path = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        path[route.method.as_str().to_lowercase()] = operation(&route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Constellation gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST over the Constellation control plane. Reads come from the gateway's view of the cluster; writes go to the control plane.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// Every route the gateway's router serves: the REST table and the Traefik routes.
pub fn routes() -> Vec<Route> {
    let rest = table().into_iter().map(|entry| entry.route);
    let traefik = crate::traefik::serve::TABLE.iter().map(|t| Route {
        method: axum::http::Method::GET,
        path: t.path,
        access: Access::Read,
        summary: t.summary,
    });
    rest.chain(traefik).collect()
}

fn operation(route: &Route) -> Value {
    if let Some(traefik) = crate::traefik::serve::TABLE
        .iter()
        .find(|t| t.path == route.path)
    {
        return traefik_operation(route, traefik);
    }
    if route.path == "/ws" {
        return websocket_operation(route);
    }
    let (body, answer) = messages(route);
    let mut op = json!({
        "summary": route.summary,
        "responses": {
            "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    });
    let ok_status = match (route.method.as_str(), route.path) {
        ("POST", "/api/v1/migrations") => "202",
        _ => "200",
    };
    let ok_schema = match answer {
        Some(name) => json!({"$ref": format!("#/components/schemas/{name}")}),
        None => json!({"type": "object"}),
    };
    let ok_schema = if route.path == "/api/v1/events" {
        json!({"description": "One JSON value per line.", "$ref": "#/components/schemas/EventLine"})
    } else {
        ok_schema
    };
    let content_type = match route.path {
        "/api/v1/events" => "application/x-ndjson",
        "/metrics" => "text/plain",
        _ => "application/json",
    };
    op["responses"][ok_status] = json!({
        "description": route.summary,
        "content": {content_type: {"schema": ok_schema.clone()}},
    });
    if (route.method.as_str(), route.path) == ("PUT", "/api/v1/services/{name}") {
        op["responses"]["201"] = json!({
            "description": "The service was created",
            "content": {content_type: {"schema": ok_schema}},
        });
    }
    if let Some(name) = body {
        op["requestBody"] = json!({
            "required": !matches!(name, "DrainNodeRequest"),
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}},
        });
    }
    add_parameters(&mut op, route);
    security(&mut op, route);
    op
}

fn add_parameters(op: &mut Value, route: &Route) {
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for (name, schema, description) in query_parameters(route) {
        params.push(json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description}));
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
}

fn security(op: &mut Value, route: &Route) {
    match route.access {
        Access::Public => op["security"] = json!([]),
        Access::Read => op["security"] = json!([{"bearer": []}]),
        Access::Admin => {
            op["security"] = json!([{"bearer": []}]);
            op["description"] = json!("Needs an admin token.");
        }
    }
}

fn error_response() -> Value {
    json!({"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// `/ws`: an upgrade, then messages; described for people, since OpenAPI has no
/// WebSocket messages (their schemas are `WsSnapshot` and `WsEvent`).
fn websocket_operation(route: &Route) -> Value {
    let mut op = json!({
        "summary": route.summary,
        "description": "A WebSocket (RFC 6455). Without `index` the first message is a `WsSnapshot` (type `initial_state`); then one `WsEvent` per event, in index order. A text `ping` is answered `pong`. A client that does not keep up is closed with code 1008 and a reason saying how to resume. Browsers pass their token as the subprotocol `base64url.bearer.constellation.<token in unpadded base64url>` beside `constellation.v1` (the one answered); others use the Authorization header.",
        "responses": {
            "101": {"description": "Switching protocols; messages follow (schemas WsSnapshot, WsEvent)", "headers": {"Sec-WebSocket-Protocol": {"description": "constellation.v1 when the client offered it", "schema": {"type": "string", "const": crate::auth::WS_PROTOCOL}}}},
            "default": error_response(),
        },
    });
    add_parameters(&mut op, route);
    op["parameters"]
        .as_array_mut()
        .expect("/ws has query parameters")
        .push(json!({"name": "Sec-WebSocket-Protocol", "in": "header", "required": false, "schema": {"type": "string"}, "description": "constellation.v1, and from browsers base64url.bearer.constellation.<token>"}));
    security(&mut op, route);
    op
}

/// The Traefik routes: the whole dynamic configuration, or one map of it.
fn traefik_operation(route: &Route, traefik: &crate::traefik::serve::TraefikRoute) -> Value {
    let schema = match traefik.part {
        None => json!({"$ref": "#/components/schemas/TraefikDynamicConfiguration"}),
        Some(_) => json!({"$ref": "#/components/schemas/TraefikMap"}),
    };
    let mut op = json!({
        "summary": route.summary,
        "description": "Rendered from the services' traefik.* labels and the routable allocations; 503 (never an empty document) while the gateway has no fresh view. Also served without a token on --traefik-listen.",
        "parameters": [{"name": "version", "in": "query", "required": false, "schema": {"type": "string", "enum": ["v2", "v3"]}, "description": "Traefik major the document targets (default: --traefik-version)"}],
        "responses": {
            "200": {"description": route.summary, "content": {"application/json": {"schema": schema}}},
            "default": error_response(),
        },
    });
    security(&mut op, route);
    op
}

/// A property map as JSON Schema: `(name, schema)` pairs.
fn object(required: bool, properties: &[(&str, Value)]) -> Value {
    let names: Vec<&str> = properties.iter().map(|(n, _)| *n).collect();
    let map: Map<String, Value> = properties
        .iter()
        .map(|(n, s)| ((*n).to_owned(), s.clone()))
        .collect();
    let mut schema = json!({"type": "object", "additionalProperties": false, "properties": map});
    if required {
        schema["required"] = json!(names);
    }
    schema
}

/// A protocol message's schema with `extra` fields (always present) added on top.
fn message_with(schemas: &Map<String, Value>, message: &str, extra: &[(&str, Value)]) -> Value {
    let mut schema = schemas
        .get(message)
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let properties = schema["properties"]
        .as_object_mut()
        .expect("messages have properties");
    for (name, value) in extra {
        properties.insert((*name).to_owned(), value.clone());
    }
    schema["required"] = json!(extra.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    schema
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// The schemas of the answers built in [`crate::api::shapes`] (the predecessor's shapes
/// and what they gained), of the WebSocket messages, and of the Traefik routes.
fn shape_schemas(schemas: &mut Map<String, Value>) {
    let string = || json!({"type": "string"});
    let boolean = || json!({"type": "boolean"});
    let count = || json!({"type": "integer", "minimum": 0});
    let time = || json!({"type": "string", "format": "date-time"});
    let time_or_null = || json!({"type": ["string", "null"], "format": "date-time"});
    let index = || json!({"type": "integer", "minimum": 0, "description": "event index the answer reflects"});
    let add = |schemas: &mut Map<String, Value>, name: &str, schema: Value| {
        schemas.insert(name.to_owned(), schema);
    };
    add(
        schemas,
        "Health",
        object(
            true,
            &[
                ("status", json!({"const": "healthy"})),
                ("timestamp", time()),
            ],
        ),
    );
    add(
        schemas,
        "Status",
        object(
            true,
            &[
                ("service", json!({"const": "constellation"})),
                ("nodes", count()),
                ("healthy_nodes", count()),
                ("services", count()),
                ("healthy_services", count()),
                (
                    "raft_leader",
                    json!({"type": "string", "description": "API address of the leader; empty when unknown"}),
                ),
                ("cluster_version", string()),
                ("index", index()),
                ("timestamp", time()),
                (
                    "fresh",
                    json!({"type": "boolean", "description": "the gateway's view is connected and caught up"}),
                ),
            ],
        ),
    );
    let node = message_with(
        schemas,
        "Node",
        &[
            ("name", string()),
            ("public_ip", string()),
            ("tailscale_ip", string()),
            ("priority", json!({"type": "integer"})),
            ("capabilities", array_of(string())),
            ("last_seen", time_or_null()),
            (
                "cordoned",
                json!({"type": "boolean", "description": "cordoned or draining"}),
            ),
            ("ready", boolean()),
            (
                "warp_healthy",
                json!({"type": "null", "description": "the predecessor's WARP probe; agents do not report it"}),
            ),
        ],
    );
    add(schemas, "NodeSummary", node.clone());
    add(
        schemas,
        "Instance",
        object(
            true,
            &[
                ("service_name", string()),
                ("node_name", string()),
                (
                    "healthy",
                    json!({"type": "boolean", "description": "running and passing its health check (or without one)"}),
                ),
                ("checked_at", time_or_null()),
                (
                    "endpoints",
                    array_of(json!({"type": "string", "description": "host_ip:host_port"})),
                ),
                ("networks", array_of(string())),
                ("allocation_id", string()),
                ("slot", count()),
                ("state", reference("AllocationState")),
                ("health", reference("HealthState")),
            ],
        ),
    );
    let mut detail = node;
    detail["properties"]["services"] = array_of(reference("Instance"));
    detail["required"]
        .as_array_mut()
        .expect("required")
        .push(json!("services"));
    add(schemas, "NodeDetail", detail);
    add(
        schemas,
        "NodeList",
        object(true, &[("nodes", array_of(reference("NodeSummary")))]),
    );
    let changed = |flag: &str| {
        object(
            true,
            &[
                ("message", string()),
                (flag, boolean()),
                (
                    "node",
                    json!({"oneOf": [reference("NodeSummary"), {"type": "null"}]}),
                ),
            ],
        )
    };
    add(schemas, "CordonAnswer", changed("cordoned"));
    add(schemas, "DrainAnswer", changed("draining"));
    let service = |instances_key: &str, instances: Value| {
        object(
            true,
            &[
                ("service_name", string()),
                (instances_key, instances),
                ("healthy_count", count()),
                (
                    "healthy",
                    json!({"type": "boolean", "description": "every desired replica is healthy"}),
                ),
                ("service", reference("Service")),
            ],
        )
    };
    let mut summary = service("instances", count());
    summary["properties"]["nodes"] = array_of(reference("Instance"));
    summary["required"]
        .as_array_mut()
        .expect("required")
        .push(json!("nodes"));
    add(schemas, "ServiceSummary", summary);
    add(
        schemas,
        "ServiceDetail",
        service("instances", array_of(reference("Instance"))),
    );
    add(
        schemas,
        "ServiceList",
        object(true, &[("services", array_of(reference("ServiceSummary")))]),
    );
    add(
        schemas,
        "AllocationList",
        object(
            true,
            &[
                ("allocations", array_of(reference("Allocation"))),
                ("index", index()),
            ],
        ),
    );
    add(
        schemas,
        "LeaseList",
        object(
            true,
            &[("leases", array_of(reference("Lease"))), ("index", index())],
        ),
    );
    let leader = [
        (
            "leader",
            json!({"type": "string", "description": "API address of the leader; empty when unknown"}),
        ),
        (
            "leader_id",
            json!({"type": ["integer", "null"], "minimum": 0}),
        ),
        ("term", json!({"type": ["integer", "null"], "minimum": 0})),
        ("timestamp", time()),
    ];
    let mut raft = leader.to_vec();
    raft.push(("is_leader", json!({"type": "boolean", "description": "whether the member that answered the gateway leads"})));
    raft.push(("members", array_of(reference("Member"))));
    add(schemas, "RaftStatus", object(true, &raft));
    add(schemas, "RaftLeader", object(true, &leader));
    add(
        schemas,
        "ClusterMetrics",
        object(
            true,
            &[
                (
                    "nodes",
                    object(
                        true,
                        &[
                            ("total", count()),
                            ("healthy", count()),
                            ("cordoned", count()),
                        ],
                    ),
                ),
                (
                    "services",
                    object(
                        true,
                        &[
                            ("total", count()),
                            ("healthy", count()),
                            ("unhealthy", count()),
                        ],
                    ),
                ),
                (
                    "raft",
                    object(true, &[("is_leader", boolean()), ("leader", string())]),
                ),
                ("cluster_version", string()),
                ("timestamp", time()),
            ],
        ),
    );
    let migration = message_with(
        schemas,
        "Migration",
        &[
            ("service_name", string()),
            ("source_node", string()),
            ("target_node", string()),
            (
                "status",
                json!({"type": "string", "enum": ["pending", "running", "completed", "failed"]}),
            ),
            ("started_at", time_or_null()),
            ("completed_at", time_or_null()),
        ],
    );
    add(schemas, "MigrationSummary", migration);
    add(
        schemas,
        "MigrationList",
        object(
            true,
            &[("migrations", array_of(reference("MigrationSummary")))],
        ),
    );
    add(
        schemas,
        "EventLine",
        json!({
            "description": "A WatchResponse, or an error that ends the stream.",
            "oneOf": [reference("WatchResponse"), object(true, &[("error", reference("Error"))])],
        }),
    );
    add(
        schemas,
        "PrometheusText",
        json!({"type": "string", "description": "Prometheus text exposition format 0.0.4"}),
    );
    add(
        schemas,
        "OpenApiDocument",
        json!({"type": "object", "required": ["openapi", "info", "paths"], "properties": {"openapi": {"const": "3.1.0"}}}),
    );
    add(
        schemas,
        "WsSnapshot",
        object(
            true,
            &[
                ("type", json!({"const": "initial_state"})),
                ("index", index()),
                ("nodes", array_of(reference("NodeSummary"))),
                (
                    "services",
                    json!({"type": "object", "additionalProperties": reference("ServiceSummary")}),
                ),
                ("allocations", array_of(reference("Allocation"))),
                ("leases", array_of(reference("Lease"))),
                ("migrations", array_of(reference("MigrationSummary"))),
                (
                    "raft",
                    object(
                        true,
                        &[
                            ("is_leader", boolean()),
                            ("leader", string()),
                            ("leader_id", json!({"type": ["integer", "null"]})),
                            ("term", json!({"type": ["integer", "null"]})),
                        ],
                    ),
                ),
                ("timestamp", time()),
            ],
        ),
    );
    add(
        schemas,
        "WsEvent",
        json!({
            "type": "object",
            "required": ["type", "index", "time"],
            "properties": {
                "type": {"enum": ["node_join", "node_update", "node_leave", "service_change", "allocation_change", "service_health_change", "leader_change", "lease_change", "migration_progress"]},
                "index": index(),
                "time": time_or_null(),
            },
            "description": "Further fields by type: node_name and node (NodeSummary); kind, service_name and service (Service); kind, service_name, node_name, healthy and allocation (Allocation); service_name, node_name, allocation_id, healthy, previous and current (HealthState); leader, leader_id and term; kind and lease (Lease); kind and migration (MigrationSummary).",
        }),
    );
    let named = |what: &str| json!({"type": "object", "description": format!("Traefik {what}s by name, as Traefik's file provider reads them"), "additionalProperties": {"type": "object"}, "minProperties": 1});
    let section = |kinds: &[&str]| {
        let properties: Map<String, Value> = kinds
            .iter()
            .map(|k| ((*k).to_owned(), named(k.trim_end_matches('s'))))
            .collect();
        json!({"type": "object", "additionalProperties": false, "minProperties": 1, "properties": properties})
    };
    add(
        schemas,
        "TraefikDynamicConfiguration",
        json!({
            "type": "object",
            "additionalProperties": false,
            "description": "Traefik's dynamic configuration (v3, or v2.11 with version=v2); it validates against the SchemaStore schema of Traefik's file provider. `{}` when nothing is routable.",
            "properties": {
                "http": section(&["routers", "services", "middlewares"]),
                "tcp": section(&["routers", "services", "middlewares"]),
                "udp": section(&["routers", "services"]),
            },
        }),
    );
    add(
        schemas,
        "TraefikMap",
        json!({
            "type": "object",
            "description": "One map of the dynamic configuration (routers, services or middlewares by name); `{}` when the document has none.",
            "additionalProperties": {"type": "object"},
        }),
    );
}

fn add_message(schemas: &mut Map<String, Value>, prefix: &str, message: &DescriptorProto) {
    let name = format!("{prefix}{}", message.name());
    if message.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    for nested in &message.nested_type {
        add_message(schemas, &format!("{name}."), nested);
    }
    for e in &message.enum_type {
        schemas.insert(format!("{name}.{}", e.name()), enum_schema(e));
    }
    let mut properties = Map::new();
    for field in &message.field {
        let map_entry = (field.r#type() == Type::Message)
            .then(|| {
                let entry_name = field.type_name().rsplit('.').next().unwrap_or("");
                message.nested_type.iter().find(|n| {
                    n.name() == entry_name && n.options.as_ref().is_some_and(|o| o.map_entry())
                })
            })
            .flatten();
        let schema = if let Some(entry) = map_entry {
            let value = entry.field.iter().find(|f| f.name() == "value");
            json!({"type": "object", "additionalProperties": value.map_or(json!({}), scalar_or_ref)})
        } else if field.label() == Label::Repeated {
            json!({"type": "array", "items": scalar_or_ref(field)})
        } else {
            scalar_or_ref(field)
        };
        properties.insert(field.name().to_owned(), schema);
    }
    schemas.insert(
        name,
        json!({"type": "object", "additionalProperties": false, "properties": properties}),
    );
}

fn enum_schema(e: &prost_types::EnumDescriptorProto) -> Value {
    let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
    json!({"type": "string", "enum": names})
}

fn scalar_or_ref(field: &prost_types::FieldDescriptorProto) -> Value {
    match field.r#type() {
        Type::String => json!({"type": "string"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => {
            json!({"type": "integer", "format": "uint32", "minimum": 0})
        }
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Type::Uint64 | Type::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Type::Enum | Type::Message | Type::Group => {
            let full = field.type_name().trim_start_matches('.');
            match full {
                "google.protobuf.Duration" => {
                    json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$", "description": "seconds with an s suffix, e.g. \"10s\""})
                }
                "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
                other => {
                    let local = other.strip_prefix(&format!("{PACKAGE}.")).unwrap_or(other);
                    json!({"$ref": format!("#/components/schemas/{local}")})
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
        let name = reference.strip_prefix("#/components/schemas/")?;
        doc["components"]["schemas"].get(name)
    }

    /// Every route of the router's tables is described (and nothing else), every
    /// answer has a schema other than a bare object, and every `$ref` resolves.
    #[test]
    fn every_route_is_described_and_every_reference_resolves() {
        let doc = document();
        let mut described = 0;
        for route in routes() {
            let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            described += 1;
            for (status, response) in op["responses"].as_object().unwrap() {
                for (_, content) in response["content"].as_object().into_iter().flatten() {
                    assert_ne!(
                        content["schema"],
                        json!({"type": "object"}),
                        "{} {} {status}: a loose object",
                        route.method,
                        route.path
                    );
                }
            }
        }
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            operations, described,
            "the document lists routes the router lacks"
        );
        for path in [
            "/traefik",
            "/api/dynamic",
            "/api/http/routers",
            "/api/udp/services",
        ] {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
        }
        fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        refs.push(r);
                    }
                    m.values().for_each(|v| walk(v, refs));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(doc, &mut refs);
        assert!(refs.len() > 20);
        for r in refs {
            assert!(resolve(doc, r).is_some(), "{r} does not resolve");
        }
        let spec = &doc["components"]["schemas"]["ServiceSpec"]["properties"];
        assert_eq!(spec["replicas"]["type"], "integer");
        assert_eq!(spec["labels"]["type"], "object");
        assert_eq!(spec["stop_grace_period"]["type"], "string");
        assert_eq!(
            doc["components"]["schemas"]["Service"]["properties"]["version"]["type"],
            "string"
        );
    }

    /// The router answers every documented route (no fallback 404, no 405): the
    /// document and the router come from the same tables.
    #[tokio::test]
    async fn the_router_serves_every_documented_route() {
        use axum::body::Body;
        use tower::ServiceExt;
        let (_tx, channels) = crate::view::feed::channels(std::time::Duration::from_secs(10));
        let upstream = crate::upstream::Upstream::new(
            &["127.0.0.1:1".into()],
            std::time::Duration::from_millis(200),
        )
        .unwrap();
        let state = crate::http::AppState::new(channels, std::sync::Arc::new(upstream));
        let router = crate::http::router(state);
        for route in routes() {
            let uri = route.path.replace("{name}", "x").replace("{service}", "x");
            let request = axum::http::Request::builder()
                .method(route.method.clone())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let unrouted = status == axum::http::StatusCode::METHOD_NOT_ALLOWED
                || (status == axum::http::StatusCode::NOT_FOUND
                    && String::from_utf8_lossy(&body).contains("route"));
            assert!(!unrouted, "{} {uri}: {status}", route.method);
        }
    }
}
