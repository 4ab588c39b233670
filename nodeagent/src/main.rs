//! `constellation-agent`: parses flags and config, checks its Docker engine, runs until
//! SIGINT/SIGTERM.

use constellation_nodeagent::{config::Flags, docker};
use constellation_proto::process;
fn main() -> std::process::ExitCode {
    process::exit_status(run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = process::start::<Flags>()?.resolve()?;
    let docker = docker::connect(config.docker_host.as_deref()).await?;
    let version = docker::version(&docker).await?;
    tracing::info!(
        name = %config.name,
        docker = %version,
        controlplane = ?config.controlplane,
        advertise = %config.advertise_addr,
        "agent started"
    );
    process::shutdown_token().cancelled().await;
    tracing::info!("stopped");
    Ok(())
}
