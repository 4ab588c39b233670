//! `constellation-controlplane`: parses flags and config, binds its listeners, serves
//! until SIGINT/SIGTERM, then drains within a bounded time.

use anyhow::Context;
use constellation_controlplane::{config::Flags, server};
use constellation_proto::process;
use std::time::Duration;
use tokio::task::JoinSet;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Time given to in-flight work after a shutdown signal before tasks are aborted.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    process::exit_status(run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = process::start::<Flags>()?.resolve()?;

    let api = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("bind api_listen {}", config.api_listen))?;
    let raft = tokio::net::TcpListener::bind(config.raft_listen)
        .await
        .with_context(|| format!("bind raft_listen {}", config.raft_listen))?;

    let shutdown = process::shutdown_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(server::run(config, api, raft, shutdown.clone()));
    process::run_until_shutdown(&mut tasks, &shutdown, DRAIN_GRACE)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!("stopped");
    Ok(())
}
