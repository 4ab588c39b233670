//! The agent's container runtime: the layer the reconciler calls to turn an
//! assignment into a running container on the local Docker engine, and to observe it.
//!
//! [`ContainerRuntime`] is the interface; [`DockerRuntime`] implements it on bollard.
//! The ServiceSpec → Docker configuration mapping is the pure [`container_config`].

mod docker;
mod spec;

pub use docker::DockerRuntime;
pub use spec::{
    container_config, container_name, duration_ns, extra_networks, fallback_assignment,
    fallback_label, name_endpoints, our_labels, parse_cpus, parse_memory, protocol_from_name,
    protocol_name,
};

use constellation_proto::v1::{Assignment, Endpoint, HealthState};
use futures::stream::BoxStream;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Label naming the service a container belongs to.
pub const LABEL_SERVICE: &str = "constellation.service";
/// Label carrying the allocation id.
pub const LABEL_ALLOCATION: &str = "constellation.allocation";
/// Label carrying the hash of the spec the container was created from.
pub const LABEL_SPEC_HASH: &str = "constellation.spec-hash";
/// Label carrying the replica slot.
pub const LABEL_SLOT: &str = "constellation.slot";
/// Label marking everything the agent manages; its value is "true".
pub const LABEL_MANAGED: &str = "constellation.managed";
/// The node whose agent created the container.
pub const LABEL_NODE: &str = "constellation.node";
/// On a fallback container: the name of the spec's fallback it runs.
pub const LABEL_FALLBACK: &str = "constellation.fallback";

/// Errors of the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The spec cannot be turned into a container (bad quantity, missing data...).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The image is not available and could not be pulled.
    #[error("image {image} not found locally and pull failed: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// The image is not available locally and the pull policy forbids pulling it.
    #[error("image {image} not found locally and pull_policy is NEVER")]
    ImageNotPresent { image: String },
    /// An ALWAYS pull failed.
    #[error("pulling image {image} failed: {reason}")]
    PullFailed { image: String, reason: String },
    /// Building the image from the spec's build context failed.
    #[error("building image {image} failed: {reason}")]
    BuildFailed { image: String, reason: String },
    /// The container does not exist.
    #[error("container {0} not found")]
    NotFound(String),
    /// A container of that name already exists (a leftover to remove first).
    #[error("a container named {0} already exists")]
    AlreadyExists(String),
}

impl RuntimeError {
    /// True when the error means "the object does not exist" (Docker's 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound(_)) || docker::is_status(self, 404)
    }

    /// True when the engine itself could not be reached or did not answer (its socket
    /// is gone, the connection failed or timed out), as opposed to the engine refusing
    /// or failing the request: the container is not to blame.
    pub fn is_engine_unreachable(&self) -> bool {
        use bollard::errors::Error as B;
        match self {
            RuntimeError::Docker(
                B::IOError { .. }
                | B::HyperResponseError { .. }
                | B::HyperLegacyError { .. }
                | B::RequestTimeoutError
                | B::SocketNotFoundError(_),
            ) => true,
            RuntimeError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A Docker container id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A file written on the host for the container (a secret or config), bind-mounted
/// read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub host_path: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
}

/// What `prepare` produced for `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The image reference to run.
    pub image: String,
    /// Secret and config files to mount.
    pub files: Vec<FileMount>,
}

/// Docker's container state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    Unknown,
}

/// What `inspect` observed about a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub container_id: ContainerId,
    /// Container name without the leading '/'.
    pub name: String,
    pub status: ContainerStatus,
    pub running: bool,
    /// Meaningful once the container has exited.
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Docker's error for a container that could not start, if any.
    pub error: String,
    /// NONE when the container has no health check.
    pub health: HealthState,
    pub started_at: Option<pbjson_types::Timestamp>,
    pub finished_at: Option<pbjson_types::Timestamp>,
    /// Published ports; `name` is empty (see [`name_endpoints`]).
    pub endpoints: Vec<Endpoint>,
    /// Networks the container is connected to.
    pub networks: Vec<String>,
    pub labels: std::collections::HashMap<String, String>,
}

/// A container carrying our labels, as `list_owned` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedContainer {
    pub container_id: ContainerId,
    pub name: String,
    pub allocation_id: String,
    pub service: String,
    pub spec_hash: String,
    pub slot: Option<u32>,
    pub running: bool,
    /// The fallback it runs (its `constellation.fallback` label); empty for a primary.
    pub fallback: String,
}

/// What happened to one of our containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEventKind {
    Start,
    Die { exit_code: Option<i32> },
    Oom,
    Health(HealthState),
    Destroy,
}

/// A Docker event about one of our containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: ContainerId,
    /// From the container's `constellation.allocation` label; empty if missing.
    pub allocation_id: String,
    pub kind: RuntimeEventKind,
}

/// The container runtime the reconciler drives. Not object safe (it uses `impl
/// Future`); hold it as a generic parameter.
pub trait ContainerRuntime: Send + Sync {
    /// Makes everything the assignment needs present on the node: networks from
    /// `network_definitions`, named volumes, the image (per pull policy, or built), and
    /// the secret and config files. Idempotent.
    fn prepare(&self, a: &Assignment) -> impl Future<Output = Result<Prepared>> + Send;
    /// Creates (not starts) the container and connects its extra networks.
    fn create(
        &self,
        a: &Assignment,
        prepared: &Prepared,
    ) -> impl Future<Output = Result<ContainerId>> + Send;
    fn start(&self, id: &ContainerId) -> impl Future<Output = Result<()>> + Send;
    /// Stops with the stop signal, then SIGKILL after `grace`. A container already
    /// stopped or gone is not an error.
    fn stop(&self, id: &ContainerId, grace: Duration) -> impl Future<Output = Result<()>> + Send;
    /// Removes the container (forcefully, with its anonymous volumes). A container
    /// already gone is not an error.
    fn remove(&self, id: &ContainerId) -> impl Future<Output = Result<()>> + Send;
    fn inspect(&self, id: &ContainerId) -> impl Future<Output = Result<Observed>> + Send;
    /// Every container (running or not) carrying `constellation.managed=true`.
    fn list_owned(&self) -> impl Future<Output = Result<Vec<OwnedContainer>>> + Send;
    /// Docker's event stream for our containers. It ends (or yields an error) when the
    /// connection drops; reconnecting is the caller's business.
    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent>>;
    /// Succeeds when the engine answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// Deletes the secret and config files written for an allocation.
    fn release_files(&self, allocation_id: &str) -> impl Future<Output = Result<()>> + Send;
}
