//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document built from the code itself. The
//! paths, methods, summaries and security come from the route table the router is
//! built from ([`crate::api::table`]); the schemas of protocol messages are derived
//! from the compiled `.proto` descriptors, following the proto3 JSON mapping the
//! gateway speaks (64-bit integers as strings, enums by name, `Duration` as `"10s"`,
//! `Timestamp` as RFC 3339, field names as written in the .proto files).
//!
//! The summary routes that keep the predecessor's shapes (`/api/v1/status`,
//! `/api/v1/nodes`, ...) are described as JSON objects without a field list: their
//! fields are listed in the README and pinned by the golden files of the tests.

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
        ("POST", "/api/v1/nodes/{name}/drain") => (Some("DrainNodeRequest"), None),
        ("POST", "/api/v1/migrations") => (Some("CreateMigrationRequest"), Some("Migration")),
        ("POST", "/api/v1/leases/{name}/acquire") => {
            (Some("AcquireLeaseRequest"), Some("AcquireLeaseResponse"))
        }
        ("POST", "/api/v1/leases/{name}/renew") => {
            (Some("RenewLeaseRequest"), Some("RenewLeaseResponse"))
        }
        ("POST", "/api/v1/leases/{name}/release") => {
            (Some("ReleaseLeaseRequest"), Some("ReleaseLeaseResponse"))
        }
        ("GET", "/api/v1/events") => (None, Some("WatchResponse")),
        _ => (None, None),
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

    let mut paths = Map::new();
    for entry in table() {
        let route = entry.route;
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

fn operation(route: &Route) -> Value {
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
    let content_type = match route.path {
        "/api/v1/events" => "application/x-ndjson",
        "/metrics" => "text/plain",
        _ => "application/json",
    };
    op["responses"][ok_status] = json!({
        "description": route.summary,
        "content": {content_type: {"schema": ok_schema}},
    });
    if let Some(name) = body {
        op["requestBody"] = json!({
            "required": !matches!(name, "DrainNodeRequest"),
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}},
        });
    }
    let params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    match route.access {
        Access::Public => op["security"] = json!([]),
        Access::Read => op["security"] = json!([{"bearer": []}]),
        Access::Admin => {
            op["security"] = json!([{"bearer": []}]);
            op["description"] = json!("Needs an admin token.");
        }
    }
    op
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

    /// Every route of the table is described, and every `$ref` resolves.
    #[test]
    fn every_route_is_described_and_every_reference_resolves() {
        let doc = document();
        for entry in table() {
            let op = &doc["paths"][entry.route.path][entry.route.method.as_str().to_lowercase()];
            assert!(
                op.is_object(),
                "{} {} missing",
                entry.route.method,
                entry.route.path
            );
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
}
