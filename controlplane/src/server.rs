//! The control-plane process: prepares the data directory, then serves the client API
//! listener and the peer (Raft) listener until the shutdown token is cancelled. Every
//! gRPC server answers grpc.health.v1 and server reflection, so generic tools work.

use crate::config::{Config, Start};
use crate::{Error, Result};
use std::path::Path;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// File in the data directory recording which member id the directory belongs to.
const MEMBER_FILE: &str = "member-id";

/// Checks the data directory against how the member was asked to start, creating it
/// for a new cluster. A restart with the same directory resumes; a member given
/// neither `--bootstrap` nor `--join` and an empty directory refuses to start.
pub fn prepare_data_dir(config: &Config) -> Result<()> {
    let member_file = config.data_dir.join(MEMBER_FILE);
    match read_member_id(&member_file)? {
        Some(id) if id != config.id => Err(Error::Config(format!(
            "data_dir {} belongs to member {id}, not {}; use that id or another directory",
            config.data_dir.display(),
            config.id
        ))),
        Some(_) => {
            if config.start != Start::Resume {
                tracing::info!(
                    data_dir = %config.data_dir.display(),
                    "data directory holds cluster state; resuming and ignoring --bootstrap/--join"
                );
            }
            Ok(())
        }
        None => match &config.start {
            Start::Resume => Err(Error::Config(format!(
                "data_dir {} holds no cluster state: start the first member with --bootstrap, \
                 or add this one to a cluster with --join ADDR",
                config.data_dir.display()
            ))),
            Start::Join(_) => Err(Error::FailedPrecondition(
                "--join is not available yet: this build runs single-member clusters only".into(),
            )),
            Start::Bootstrap => {
                std::fs::create_dir_all(&config.data_dir)?;
                std::fs::write(&member_file, format!("{}\n", config.id))?;
                tracing::info!(id = config.id, "bootstrapped a new cluster");
                Ok(())
            }
        },
    }
}

fn read_member_id(path: &Path) -> Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Config(format!("{} is not a member id", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Health and reflection services, shared by both listeners. Reflection describes
/// every service of the `constellation.v1` package and the health service itself.
async fn base_router() -> Result<tonic::service::Routes> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(constellation_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes.add_service(health_service).add_service(reflection);
    Ok(routes.routes())
}

/// Serves the API and peer listeners until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    api: TcpListener,
    raft: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    tracing::info!(
        id = config.id,
        api = %api.local_addr()?,
        raft = %raft.local_addr()?,
        "control plane serving"
    );
    let api_server = serve(base_router().await?, api, shutdown.clone());
    let raft_server = serve(base_router().await?, raft, shutdown);
    tokio::try_join!(api_server, raft_server)?;
    Ok(())
}

async fn serve(
    routes: tonic::service::Routes,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("grpc server: {e}")))
}
