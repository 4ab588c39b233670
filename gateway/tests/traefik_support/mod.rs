//! Cluster state builders and document checks shared by the Traefik renderer tests.
#![allow(dead_code)]

use constellation_gateway::traefik::{RenderOptions, Rendered, render};
use constellation_proto::v1 as pb;
use std::collections::BTreeMap;

pub const ADVERTISE: &str = "10.0.0.1";

/// Services, nodes and allocations as the gateway's view holds them.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub services: BTreeMap<String, pb::Service>,
    pub nodes: BTreeMap<String, pb::Node>,
    pub allocations: BTreeMap<String, pb::Allocation>,
}

impl State {
    /// One ready, active node `n1` at [`ADVERTISE`].
    pub fn new() -> Self {
        let mut state = State::default();
        state.node("n1", ADVERTISE);
        state
    }

    pub fn node(&mut self, name: &str, ip: &str) -> &mut pb::Node {
        let node = pb::Node {
            id: format!("id-{name}"),
            description: Some(pb::NodeDescription {
                name: name.into(),
                addresses: Some(pb::NodeAddresses {
                    advertise_ip: ip.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: pb::NodeStatus::Ready as i32,
            availability: pb::NodeAvailability::Active as i32,
            ..Default::default()
        };
        self.nodes.insert(name.into(), node);
        self.nodes.get_mut(name).unwrap()
    }

    /// A service publishing tcp/8080 with `labels`.
    pub fn service(&mut self, name: &str, labels: &[(&str, &str)]) -> &mut pb::ServiceSpec {
        self.service_with_ports(name, labels, &[(8080, pb::Protocol::Tcp)])
    }

    pub fn service_with_ports(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        ports: &[(u32, pb::Protocol)],
    ) -> &mut pb::ServiceSpec {
        let spec = pb::ServiceSpec {
            name: name.into(),
            image: "example/web:1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: ports
                .iter()
                .map(|(port, protocol)| pb::PortSpec {
                    container_port: *port,
                    protocol: *protocol as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.services.insert(
            name.into(),
            pb::Service {
                spec: Some(spec),
                version: 1,
                ..Default::default()
            },
        );
        self.services.get_mut(name).unwrap().spec.as_mut().unwrap()
    }

    /// A running, healthy allocation of `service` on `node` whose container ports are
    /// published on the node's wildcard address at `host_port` (+1, +2 for further ports).
    pub fn alloc(
        &mut self,
        id: &str,
        service: &str,
        node: &str,
        host_port: u32,
    ) -> &mut pb::Allocation {
        let ports: Vec<(u32, i32)> = self.services[service]
            .spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .map(|p| (p.container_port, p.protocol))
            .collect();
        let endpoints = ports
            .iter()
            .enumerate()
            .map(|(i, (port, protocol))| pb::Endpoint {
                container_port: *port,
                protocol: *protocol,
                host_ip: "0.0.0.0".into(),
                host_port: host_port + i as u32,
                name: String::new(),
            })
            .collect();
        let allocation = pb::Allocation {
            id: id.into(),
            service_name: service.into(),
            node_id: format!("id-{node}"),
            node_name: node.into(),
            desired_state: pb::AllocationDesiredState::Run as i32,
            status: Some(pb::AllocationStatus {
                state: pb::AllocationState::Running as i32,
                health: pb::HealthState::Healthy as i32,
                endpoints,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.allocations.insert(id.into(), allocation);
        self.allocations.get_mut(id).unwrap()
    }

    pub fn render(&self, opts: &RenderOptions) -> Rendered {
        render(&self.services, &self.nodes, &self.allocations, opts)
    }

    /// The document as JSON, for assertions.
    pub fn json(&self, opts: &RenderOptions) -> serde_json::Value {
        serde_json::from_slice(&self.render(opts).json).expect("the document is JSON")
    }
}

pub fn set_health(allocation: &mut pb::Allocation, health: pb::HealthState) {
    allocation.status.as_mut().unwrap().health = health as i32;
}

pub fn set_state(allocation: &mut pb::Allocation, state: pb::AllocationState) {
    allocation.status.as_mut().unwrap().state = state as i32;
}

/// Paths of every empty object in `value` except those Traefik accepts empty (router
/// `tls`, `sticky`, `cookie`, `compress`, `ipStrategy`) and the root.
pub fn empty_objects(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, key: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                let allowed =
                    matches!(key, "tls" | "sticky" | "cookie" | "compress" | "ipStrategy");
                if map.is_empty() && !allowed && !path.is_empty() {
                    out.push(path.to_owned());
                }
                for (k, v) in map {
                    walk(v, &format!("{path}/{k}"), k, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), "", out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", "", &mut out);
    out
}

/// Every server address in the document (`url` without scheme, or `address`).
pub fn server_addresses(doc: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for protocol in ["http", "tcp", "udp"] {
        let Some(services) = doc[protocol]["services"].as_object() else {
            continue;
        };
        for service in services.values() {
            for server in service["loadBalancer"]["servers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(url) = server["url"].as_str() {
                    out.push(url.split("://").nth(1).unwrap_or(url).to_owned());
                }
                if let Some(address) = server["address"].as_str() {
                    out.push(address.to_owned());
                }
            }
        }
    }
    out
}

/// SchemaStore's JSON Schema for the file provider of `version`, from `../shared`
/// beside the repository; `None` (and a note on stderr) when that directory is missing.
pub fn schema(
    version: constellation_gateway::traefik::TraefikVersion,
) -> Option<&'static jsonschema::Validator> {
    use constellation_gateway::traefik::TraefikVersion;
    use std::sync::OnceLock;
    static V2: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    static V3: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    let (cell, file) = match version {
        TraefikVersion::V2 => (&V2, "traefik-v2-file-provider.json"),
        TraefikVersion::V3 => (&V3, "traefik-v3-file-provider.json"),
    };
    cell.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/traefik")
            .join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "SKIP schema lint: {} is missing (../shared is not beside the repository)",
                path.display()
            );
            return None;
        };
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        Some(jsonschema::validator_for(&schema).expect("the schema compiles"))
    })
    .as_ref()
}

/// The schema's complaints about `doc`, one line each; empty when it validates.
pub fn schema_errors(validator: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
