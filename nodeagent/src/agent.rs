//! Wires the agent together: the runtime, the reconciler and the session, as tasks of
//! one `JoinSet` under one shutdown token.

use crate::config::Config;
use crate::reconcile::{Reconciler, StatusQueue};
use crate::runtime::DockerRuntime;
use crate::session::{self, SessionConfig};
use crate::state_file::StateFile;
use bollard::Docker;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Time the tasks get to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Assignments messages buffered between the session and the reconciler.
const ASSIGNMENTS_BUFFER: usize = 16;

/// Runs the agent until `shutdown` is cancelled (or a task fails).
pub async fn run(
    config: Config,
    docker: Docker,
    docker_version: String,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let runtime = Arc::new(DockerRuntime::new(
        docker,
        config.name.clone(),
        config.secrets_dir.clone(),
    ));
    let status = Arc::new(StatusQueue::new());
    let advertise = config.advertise_addr.to_string();
    let state_file = StateFile::new(&config.state_dir);
    let mut reconciler = Reconciler::new(runtime, status.clone(), advertise.clone())
        .with_start_concurrency(config.start_concurrency)
        .with_state_file(state_file);
    // What runs now goes into the first Hello; with a restored assignment set, what
    // crashed while the agent was down is restarted first.
    reconciler.reconcile_all().await;

    let gossip = if config.gossip_enabled {
        Some(crate::gossip::start_for_agent(&config).await?)
    } else {
        None
    };
    // The bound address (the flag may say port 0); empty when gossip is off, so the
    // control plane never hands this node out as a seed.
    let gossip_addr = gossip
        .as_ref()
        .map(|(handle, _)| handle.identity().addr.to_string())
        .unwrap_or_default();
    let (assignments_tx, assignments_rx) = mpsc::channel(ASSIGNMENTS_BUFFER);
    let session_config = SessionConfig {
        controlplane: config.controlplane.clone(),
        node: session::node_description(
            &config.name,
            &advertise,
            &gossip_addr,
            config.labels.clone(),
            &docker_version,
        ),
    };
    let mut tasks: JoinSet<crate::Result<()>> = JoinSet::new();
    let mut gossip_link = None;
    if let Some((handle, task)) = gossip {
        tasks.spawn(task.run(shutdown.clone()));
        let seeds = config.gossip_seeds.clone();
        let (link, follow) = crate::gossip::link(handle, seeds, shutdown.clone());
        tasks.spawn(follow);
        gossip_link = Some(link);
    }
    {
        let cancel = shutdown.clone();
        tasks.spawn(async move {
            reconciler.run(assignments_rx, cancel).await;
            Ok(())
        });
    }
    tasks.spawn(session::run(
        session_config,
        assignments_tx,
        status,
        gossip_link,
        shutdown.clone(),
    ));
    constellation_proto::process::run_until_shutdown(&mut tasks, &shutdown, SHUTDOWN_GRACE)
        .await
        .map_err(crate::Error::Task)
}
