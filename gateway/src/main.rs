//! `constellation-gateway`: parses flags and config, binds its listener, serves HTTP
//! until SIGINT/SIGTERM, then drains within a bounded time.

use anyhow::Context;
use constellation_gateway::{config::Flags, http, traefik, upstream::Upstream, view::feed};
use constellation_proto::process;
use std::sync::Arc;
use std::time::Duration;

/// Time given to open requests after a shutdown signal before the process exits.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    process::exit_status(run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = process::start::<Flags>()?.resolve()?;
    let shutdown = process::shutdown_token();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind listen {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, controlplane = ?config.controlplane, "gateway serving");

    let upstream = Arc::new(Upstream::new(&config.controlplane, config.rpc_timeout)?);
    let (snapshots, channels) = feed::channels(config.stale_after);
    let state = http::AppState::new(channels.clone(), Arc::clone(&upstream))
        .with_tokens(config.tokens.clone())
        .with_origins(config.cors_origins.clone())
        .with_ws_queue(config.ws_client_queue);
    if config.tokens.is_empty() {
        tracing::warn!(
            "no tokens configured: every client on this machine may read and change the cluster"
        );
    }

    let mut tasks = tokio::task::JoinSet::new();
    let traefik = traefik::Provider::new(channels.snapshots.clone(), config.traefik.options()?);
    let (provider, stop) = (Arc::clone(&traefik), shutdown.clone());
    tasks.spawn(async move {
        provider.keep_rendered(stop).await;
        Ok(())
    });
    if let Some(addr) = config.traefik.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind traefik listen {addr}"))?;
        tracing::info!(listen = %listener.local_addr()?, "traefik provider serving");
        let app = traefik::serve::standalone(Arc::clone(&traefik));
        let stop = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    let stop = shutdown.clone();
    tasks.spawn(async move {
        feed::run(upstream, snapshots, channels.events, stop.clone()).await;
        if stop.is_cancelled() {
            Ok(())
        } else {
            Err(std::io::Error::other("the view feed stopped"))
        }
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        axum::serve(
            listener,
            http::router(state).layer(axum::Extension(traefik)),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    });
    process::run_until_shutdown(&mut tasks, &shutdown, DRAIN_GRACE)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!("stopped");
    Ok(())
}
