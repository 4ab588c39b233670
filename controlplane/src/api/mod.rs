//! The client API of the control plane: the `constellation.v1.ControlPlane` gRPC
//! service (controlplane.proto) on the API listener.
//!
//! Handlers are thin: validate the request (`crate::validate`), turn it into a
//! replicated [`Command`](constellation_proto::v1::Command) for [`Cluster::write`]
//! (which forwards to the leader and fills in the version and proposal time), and turn
//! the `CommandResult` back into the response. Reads run through [`Cluster::read`] at
//! the consistency the request asks for. Every error becomes a gRPC status through the
//! one mapping in `crate::error`, except Watch's compaction error (`OUT_OF_RANGE` with
//! a `google.rpc.ErrorInfo`), which that mapping has no variant for.
//!
//! * [`control`]: the unary calls (services, nodes, allocations, migrations, leases,
//!   secrets, configs, membership).
//! * [`watch`]: the event stream.
//! * [`snapshot`]: operator backups (SaveSnapshot / RestoreSnapshot).
//! * [`limit`]: the request size limit, refused as `INVALID_ARGUMENT`.

mod control;
pub mod dispatcher;
pub mod limit;
mod snapshot;
mod watch;

#[cfg(test)]
mod tests;

use crate::cluster::Cluster;
use constellation_proto::v1::control_plane_server::ControlPlaneServer;
pub use dispatcher::{DispatcherService, DispatcherSettings, dispatcher_server};

/// Largest request message the API accepts; larger ones are refused before a handler
/// runs ([`limit`]). Snapshot restores stream in chunks well below it.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest response message the API sends (big lists of allocations or events).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The `ControlPlane` service of one member. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlaneService {
    cluster: Cluster,
}

impl ControlPlaneService {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

/// The `ControlPlane` gRPC server for this member, with the API's message size limits.
pub fn control_plane_server(cluster: Cluster) -> ControlPlaneServer<ControlPlaneService> {
    ControlPlaneServer::new(ControlPlaneService::new(cluster))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES)
}

/// A tonic server with the API's layers. Both of a member's listeners use it; the
/// size check only looks at `ControlPlane` requests.
pub fn server_builder() -> tonic::transport::Server<
    tower::layer::util::Stack<limit::RequestSizeLimitLayer, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder().layer(limit::RequestSizeLimitLayer)
}
