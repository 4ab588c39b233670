//! `constellation-agent`: parses flags and config, checks its Docker engine, runs the
//! session and the reconciler until SIGINT/SIGTERM.

use constellation_nodeagent::{agent, config::Flags, docker};
use constellation_proto::process;
fn main() -> std::process::ExitCode {
    process::exit_status(run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = process::start::<Flags>()?.resolve()?;
    let shutdown = process::shutdown_token();
    let docker = docker::connect(config.docker_host.as_deref()).await?;
    let version = docker::version(&docker).await?;
    tracing::info!(
        name = %config.name,
        docker = %version,
        controlplane = ?config.controlplane,
        advertise = %config.advertise_addr,
        secrets_dir = %config.secrets_dir.display(),
        state_dir = %config.state_dir.display(),
        "agent started"
    );
    agent::run(config, docker, version, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
