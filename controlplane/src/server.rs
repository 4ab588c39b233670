//! The control-plane process: checks the data directory, opens the member's Raft
//! storage, bootstraps, joins or resumes, then serves the API listener (ControlPlane
//! for clients, Dispatcher for agents) and the peer listener (RaftPeer) until the shutdown token is cancelled.
//! Every gRPC server answers grpc.health.v1 and server reflection, so generic tools work.

use crate::cluster::Cluster;
use crate::config::{Config, Start};
use crate::raft::Member;
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// File in the data directory recording which member id the directory belongs to.
const MEMBER_FILE: &str = "member-id";

/// Refuses a data directory that belongs to another member id; records the id in a
/// new one.
fn check_member_id(config: &Config) -> Result<()> {
    let path = config.data_dir.join(MEMBER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(id) if id == config.id => Ok(()),
            Ok(id) => Err(Error::Config(format!(
                "data_dir {} belongs to member {id}, not {}; use that id or another directory",
                config.data_dir.display(),
                config.id
            ))),
            Err(_) => Err(Error::Config(format!(
                "{} is not a member id",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.data_dir)?;
            std::fs::write(&path, format!("{}\n", config.id))?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Health and reflection, on both listeners. Reflection describes every service of the
/// `constellation.v1` package and the health service itself.
async fn base_routes() -> Result<tonic::service::RoutesBuilder> {
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
    Ok(routes)
}

/// Opens the member and serves until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    api: TcpListener,
    raft: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    check_member_id(&config)?;
    let me = Member {
        raft_addr: config
            .advertise_raft
            .clone()
            .unwrap_or(raft.local_addr()?.to_string()),
        api_addr: config
            .advertise_api
            .clone()
            .unwrap_or(api.local_addr()?.to_string()),
    };
    let cluster = Cluster::open(config.id, &config.data_dir, me.clone(), &config.tuning).await?;
    let initialized = cluster.is_initialized()?;
    if !initialized && config.start == Start::Resume {
        cluster.shutdown().await;
        return Err(Error::Config(format!(
            "data_dir {} holds no cluster state: start the first member with --bootstrap, \
             or add this one to a cluster with --join ADDR",
            config.data_dir.display()
        )));
    }

    let mut api_routes = base_routes().await?;
    api_routes.add_service(crate::api::control_plane_server(cluster.clone()));
    let dispatcher = crate::api::DispatcherService::new(cluster.clone(), config.dispatcher.clone());
    let sessions = dispatcher.sessions();
    api_routes.add_service(dispatcher.into_server());
    let mut raft_routes = base_routes().await?;
    raft_routes.add_service(cluster.peer_service());
    let api_server = serve(api_routes.routes(), api, shutdown.clone());
    let raft_server = serve(raft_routes.routes(), raft, shutdown.clone());
    let servers = async { tokio::try_join!(api_server, raft_server) };
    tokio::pin!(servers);

    // Start (or not) while the listeners already answer: a joining member must be
    // reachable before the leader adds it.
    let start = async {
        match (&config.start, initialized) {
            (_, true) => {
                tracing::info!("data directory holds cluster state; resuming");
                Ok(())
            }
            (Start::Bootstrap, false) => cluster.bootstrap().await,
            (Start::Join(seeds), false) => join(config.id, &me, seeds, &shutdown).await,
            (Start::Resume, false) => unreachable!("refused above"),
        }
    };
    tokio::select! {
        res = &mut servers => { res?; }
        res = start => res?,
    }
    tracing::info!(
        id = config.id,
        api = %me.api_addr,
        raft = %me.raft_addr,
        "control plane serving"
    );
    let leader_duties = tokio::spawn(crate::leader::run(
        cluster.clone(),
        sessions,
        config.failure_detector.clone(),
        shutdown.clone(),
    ));
    let snapshots = tokio::spawn(cluster.clone().snapshot_when_due(shutdown.clone()));
    let result = servers.await.map(|_| ());
    let _ = leader_duties.await;
    let _ = snapshots.await;
    cluster.shutdown().await;
    result
}

/// Asks the members at `seeds`, in turn, to add this member, until one accepts.
async fn join(id: u64, me: &Member, seeds: &[String], shutdown: &CancellationToken) -> Result<()> {
    use pb::control_plane_client::ControlPlaneClient;
    let request = pb::AddMemberRequest {
        id,
        raft_addr: me.raft_addr.clone(),
        api_addr: me.api_addr.clone(),
        learner_only: false,
    };
    let mut delay = Duration::from_millis(200);
    loop {
        for seed in seeds {
            let uri = if seed.contains("://") {
                seed.clone()
            } else {
                format!("http://{seed}")
            };
            let attempt = async {
                let channel = tonic::transport::Endpoint::from_shared(uri)
                    .map_err(|e| Error::Config(format!("join address {seed:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(60))
                    .connect()
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                ControlPlaneClient::new(channel)
                    .add_member(request.clone())
                    .await
                    .map_err(|s| Error::Unavailable(s.message().to_owned()))
            };
            match attempt.await {
                Ok(_) => {
                    tracing::info!(%seed, "joined the cluster");
                    return Ok(());
                }
                Err(Error::Config(e)) => return Err(Error::Config(e)),
                Err(e) => tracing::warn!(%seed, error = %e, "join attempt failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Unavailable("shut down while joining".into())),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn serve(
    routes: tonic::service::Routes,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    use tokio_stream::StreamExt;
    // Small request/response exchanges must not wait out Nagle's algorithm against
    // delayed ACKs (40 ms per round trip on Linux).
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    crate::api::server_builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("grpc server: {e}")))
}
