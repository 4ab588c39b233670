//! Pure conversions from the view to the JSON the REST routes answer. Routes the
//! predecessor had keep its field names and meanings (and gain fields); objects of the
//! protocol are rendered in the proto3 JSON mapping.

use crate::view::{View, allocation_healthy};
use constellation_proto::v1::{
    Allocation, Migration, MigrationPhase, Node, NodeAvailability, NodeStatus, Service,
};
use serde_json::{Map, Value, json};

/// An object in the proto3 JSON mapping (pbjson), as a JSON value.
pub fn proto<T: serde::Serialize>(message: &T) -> Value {
    serde_json::to_value(message).unwrap_or(Value::Null)
}

/// `proto(message)` with `extra` fields added on top (predecessor names win).
fn merged<T: serde::Serialize>(message: &T, extra: Value) -> Value {
    let mut base = match proto(message) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    if let Value::Object(extra) = extra {
        base.extend(extra);
    }
    Value::Object(base)
}

fn timestamp(ts: Option<&pbjson_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, proto)
}

pub fn node_ready(node: &Node) -> bool {
    node.status() == NodeStatus::Ready
}

pub fn node_cordoned(node: &Node) -> bool {
    matches!(
        node.availability(),
        NodeAvailability::Cordoned | NodeAvailability::Draining
    )
}

/// A service is healthy when every desired replica is healthy (a service scaled to
/// zero is healthy).
pub fn service_healthy(service: &Service) -> bool {
    let status = service.status.clone().unwrap_or_default();
    status.healthy >= status.desired
}

fn name_of_service(service: &Service) -> &str {
    service.spec.as_ref().map_or("", |s| s.name.as_str())
}

/// Terminal as the control plane counts it: desired STOP, or LOST, STOPPED, FAILED.
pub fn is_terminal(alloc: &Allocation) -> bool {
    use constellation_proto::v1::{AllocationDesiredState, AllocationState};
    alloc.desired_state() == AllocationDesiredState::Stop
        || alloc.status.as_ref().is_some_and(|s| {
            matches!(
                s.state(),
                AllocationState::Lost | AllocationState::Stopped | AllocationState::Failed
            )
        })
}

/// The live (non-terminal) allocations of a service.
pub fn live_allocations<'a>(view: &'a View, service: &'a str) -> Vec<&'a Allocation> {
    view.allocations_of_service(service)
        .filter(|a| !is_terminal(a))
        .collect()
}

/// One node in the predecessor's shape, on top of the protocol's `Node`.
pub fn node(node: &Node) -> Value {
    let d = node.description.clone().unwrap_or_default();
    let a = d.addresses.clone().unwrap_or_default();
    merged(
        node,
        json!({
            "name": d.name,
            "public_ip": a.public_ip,
            "tailscale_ip": a.tailscale_ip,
            "priority": d.priority,
            "capabilities": d.capabilities,
            "last_seen": timestamp(node.last_seen.as_ref()),
            "cordoned": node_cordoned(node),
            "ready": node_ready(node),
            // The predecessor's WARP probe has no counterpart: agents do not report it.
            "warp_healthy": Value::Null,
        }),
    )
}

/// `host:port` of each published endpoint.
fn endpoints(alloc: &Allocation) -> Vec<String> {
    alloc
        .status
        .as_ref()
        .map(|s| {
            s.endpoints
                .iter()
                .filter(|e| e.host_port != 0)
                .map(|e| format!("{}:{}", e.host_ip, e.host_port))
                .collect()
        })
        .unwrap_or_default()
}

/// One instance of a service, as the predecessor listed them per node.
pub fn instance(alloc: &Allocation) -> Value {
    let status = alloc.status.clone().unwrap_or_default();
    json!({
        "service_name": alloc.service_name,
        "node_name": alloc.node_name,
        "healthy": allocation_healthy(alloc),
        "checked_at": timestamp(status.updated_at.as_ref()),
        "endpoints": endpoints(alloc),
        "networks": status.networks,
        "allocation_id": alloc.id,
        "slot": alloc.slot,
        "state": proto(&status.state()),
        "health": proto(&status.health()),
    })
}

/// A service in the list: the predecessor's counts plus the protocol's `Service`.
pub fn service_summary(view: &View, service: &Service) -> Value {
    let name = name_of_service(service);
    let live = live_allocations(view, name);
    let healthy = live.iter().filter(|a| allocation_healthy(a)).count();
    json!({
        "service_name": name,
        "instances": live.len(),
        "healthy_count": healthy,
        "healthy": service_healthy(service),
        "nodes": live.iter().map(|a| instance(a)).collect::<Vec<_>>(),
        "service": proto(service),
    })
}

/// One service with its instances listed.
pub fn service_detail(view: &View, service: &Service) -> Value {
    let name = name_of_service(service);
    let live = live_allocations(view, name);
    let healthy = live.iter().filter(|a| allocation_healthy(a)).count();
    json!({
        "service_name": name,
        "instances": live.iter().map(|a| instance(a)).collect::<Vec<_>>(),
        "healthy_count": healthy,
        "healthy": service_healthy(service),
        "service": proto(service),
    })
}

/// A node with the instances placed on it.
pub fn node_detail(view: &View, n: &Node) -> Value {
    let mut value = node(n);
    let services: Vec<Value> = view
        .allocations_of_node(&n.id)
        .filter(|a| !is_terminal(a))
        .map(instance)
        .collect();
    value["services"] = Value::Array(services);
    value
}

/// The predecessor's four migration states.
pub fn migration_status(phase: MigrationPhase) -> &'static str {
    match phase {
        MigrationPhase::Unspecified | MigrationPhase::Pending => "pending",
        MigrationPhase::TransferringImage
        | MigrationPhase::TransferringVolumes
        | MigrationPhase::StartingTarget
        | MigrationPhase::Switching
        | MigrationPhase::CleaningUp => "running",
        MigrationPhase::Completed => "completed",
        MigrationPhase::Failed | MigrationPhase::RolledBack => "failed",
    }
}

pub fn migration(m: &Migration) -> Value {
    merged(
        m,
        json!({
            "service_name": m.service_name,
            "source_node": m.source_node,
            "target_node": m.target_node,
            "status": migration_status(m.phase()),
            "started_at": timestamp(m.started_at.as_ref()),
            "completed_at": timestamp(m.completed_at.as_ref()),
        }),
    )
}

/// Migrations oldest started first (ties by id), as the control plane lists them.
pub fn migrations_in_order(view: &View) -> Vec<&Migration> {
    let mut list: Vec<&Migration> = view.migrations().values().collect();
    list.sort_by_key(|m| (ts_key(m.started_at.as_ref()), m.id.as_str()));
    list
}

fn ts_key(ts: Option<&pbjson_types::Timestamp>) -> (i64, i32) {
    ts.map_or((0, 0), |t| (t.seconds, t.nanos))
}

/// The migration with this id, else the latest started one of the service so named.
pub fn find_migration<'a>(view: &'a View, id_or_service: &str) -> Option<&'a Migration> {
    view.migrations().get(id_or_service).or_else(|| {
        view.migrations()
            .values()
            .filter(|m| m.service_name == id_or_service)
            .max_by_key(|m| (ts_key(m.started_at.as_ref()), m.id.as_str()))
    })
}

/// Leader facts for the raft routes: `is_leader` is whether the member that answered
/// the gateway's last `ClusterStatus` leads (the gateway itself never does).
pub fn raft(view: &View) -> Value {
    let leader = view.leader();
    let cluster = view.cluster();
    let is_leader = match (cluster, leader) {
        (Some(c), Some(l)) => c.id == l.id,
        _ => false,
    };
    json!({
        "is_leader": is_leader,
        "leader": leader.map_or(String::new(), |l| l.api_addr.clone()),
        "leader_id": leader.map(|l| l.id),
        "term": leader.map(|l| l.term),
    })
}

pub fn cluster_version(view: &View) -> String {
    view.cluster()
        .map(|c| c.version.clone())
        .unwrap_or_default()
}

pub fn status(view: &View, timestamp: &str) -> Value {
    let healthy_nodes = view.nodes().values().filter(|n| node_ready(n)).count();
    let healthy_services = view
        .services()
        .values()
        .filter(|s| service_healthy(s))
        .count();
    json!({
        "service": "constellation",
        "nodes": view.nodes().len(),
        "healthy_nodes": healthy_nodes,
        "services": view.services().len(),
        "healthy_services": healthy_services,
        "raft_leader": view.leader().map_or(String::new(), |l| l.api_addr.clone()),
        "cluster_version": cluster_version(view),
        "index": view.index(),
        "timestamp": timestamp,
    })
}

pub fn metrics(view: &View, timestamp: &str) -> Value {
    let nodes = view.nodes().values();
    let healthy_nodes = nodes.clone().filter(|n| node_ready(n)).count();
    let cordoned = nodes.filter(|n| node_cordoned(n)).count();
    let healthy_services = view
        .services()
        .values()
        .filter(|s| service_healthy(s))
        .count();
    let raft = raft(view);
    json!({
        "nodes": {
            "total": view.nodes().len(),
            "healthy": healthy_nodes,
            "cordoned": cordoned,
        },
        "services": {
            "total": view.services().len(),
            "healthy": healthy_services,
            "unhealthy": view.services().len() - healthy_services,
        },
        "raft": {"is_leader": raft["is_leader"], "leader": raft["leader"]},
        "cluster_version": cluster_version(view),
        "timestamp": timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::{NodeDescription, ServiceStatus};

    #[test]
    fn migration_phases_map_to_the_four_predecessor_states() {
        assert_eq!(migration_status(MigrationPhase::Unspecified), "pending");
        assert_eq!(migration_status(MigrationPhase::Switching), "running");
        assert_eq!(migration_status(MigrationPhase::Completed), "completed");
        assert_eq!(migration_status(MigrationPhase::RolledBack), "failed");
    }

    #[test]
    fn a_node_keeps_the_predecessor_fields_and_gains_the_protocol_ones() {
        let n = Node {
            id: "abc".into(),
            status: NodeStatus::Ready as i32,
            availability: NodeAvailability::Draining as i32,
            description: Some(NodeDescription {
                name: "n1".into(),
                priority: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = node(&n);
        assert_eq!(v["name"], "n1");
        assert_eq!(v["priority"], 3);
        assert_eq!(v["cordoned"], true);
        assert_eq!(v["status"], "NODE_STATUS_READY");
        assert_eq!(v["id"], "abc");
    }

    #[test]
    fn a_service_is_healthy_when_every_desired_replica_is() {
        let mut s = Service {
            status: Some(ServiceStatus {
                desired: 2,
                healthy: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!service_healthy(&s));
        s.status.as_mut().unwrap().healthy = 2;
        assert!(service_healthy(&s));
    }
}
