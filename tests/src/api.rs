//! A running control plane's gRPC API as tests use it.

use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use std::time::Duration;
use tonic::transport::Channel;

/// A client of the control-plane member at `addr` (host:port), connecting on first use;
/// every call is bounded to 10 s.
pub fn client(addr: &str) -> ControlPlaneClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("a host:port address")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    ControlPlaneClient::new(channel)
}

/// The live allocations of `service`; panics when the call fails.
pub async fn allocations(addr: &str, service: &str) -> Vec<pb::Allocation> {
    client(addr)
        .list_allocations(pb::ListAllocationsRequest {
            service_name: service.into(),
            ..Default::default()
        })
        .await
        .expect("ListAllocations")
        .into_inner()
        .allocations
}

/// RUNNING with a passing health check.
pub fn is_healthy(a: &pb::Allocation) -> bool {
    let s = a.status.clone().unwrap_or_default();
    s.state() == pb::AllocationState::Running && s.health() == pb::HealthState::Healthy
}

/// The service `name`; panics when the call fails or it does not exist.
pub async fn service(addr: &str, name: &str) -> pb::Service {
    client(addr)
        .get_service(pb::GetServiceRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("GetService")
        .into_inner()
        .service
        .expect("a service")
}

/// The state of the service's last update (`Unspecified` when it never had one).
pub fn update_state(service: &pb::Service) -> pb::UpdateState {
    service
        .status
        .as_ref()
        .and_then(|s| s.update.as_ref())
        .map_or(pb::UpdateState::Unspecified, |u| u.state())
}

/// Applies `spec`; panics when the call fails.
pub async fn apply_service(addr: &str, spec: pb::ServiceSpec) -> pb::Service {
    client(addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .expect("ApplyService")
        .into_inner()
        .service
        .expect("a service")
}
