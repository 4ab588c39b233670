//! `constellation-bench gossip-member` (hidden): one process that runs what the node
//! agent runs for membership, without Docker, for the system-level gossip comparison
//! (`gossip_system.rs`). It is wired as `nodeagent/src/agent.rs` wires the agent: the
//! agent's gossip member (`gossip::start_for_agent`, so the agent's settings, whatever
//! they are), `gossip::link` and its follow task, and the agent's real control-plane
//! session (`session::run`) carrying the gossip link. There is no reconciler: the
//! assignments are drained and the status queue stays empty.
//!
//! It talks to the bench on stdout, one line each: `gossip ADDR` once its socket is bound,
//! then `alive N` whenever the number of other members its gossip sees alive changes.
//! It shuts down cleanly on SIGTERM or SIGINT, or when its stdin closes (the bench
//! ended, however it ended), so no member outlives the bench that started it.

use constellation_nodeagent::config::Flags;
use constellation_nodeagent::gossip::{self, GossipEvent, GossipHandle, MemberState};
use constellation_nodeagent::reconcile::StatusQueue;
use constellation_nodeagent::session::{self, SessionConfig};
use constellation_proto::process::{self, LogFormat};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// As `constellation_nodeagent::agent`'s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const ASSIGNMENTS_BUFFER: usize = 16;
/// A join brings one `Up` per member at once: count once per burst, not per event.
const ALIVE_COALESCE: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
pub struct Args {
    /// Node name (the agent's `--name`).
    #[arg(long)]
    name: String,
    /// UDP address of the gossip socket (the agent's `--gossip-listen`); its IP is also
    /// the node's advertise address, as on a host with one address.
    #[arg(long)]
    gossip_listen: SocketAddr,
    /// Control-plane API address (the agent's `--controlplane`).
    #[arg(long)]
    controlplane: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    process::init_logging(LogFormat::Text, "info")?;
    // Only the flags the bench sets; the rest are the agent's defaults, resolved by the
    // agent's own code (no `--gossip-seed`: seeds come from the session, as in a real
    // deployment).
    let config = Flags {
        name: Some(args.name),
        controlplane: Some(vec![args.controlplane]),
        gossip_listen: Some(args.gossip_listen),
        advertise_addr: Some(args.gossip_listen.ip()),
        ..Default::default()
    }
    .resolve()?;
    let shutdown = process::shutdown_token();
    stop_when_stdin_closes(shutdown.clone());

    let (handle, task) = gossip::start_for_agent(&config).await?;
    let gossip_addr = handle.identity().addr;
    say(&format!("gossip {gossip_addr}"), &shutdown);
    let advertise = config.advertise_addr.to_string();
    let session_config = SessionConfig {
        controlplane: config.controlplane.clone(),
        // No Docker engine here: the version is left empty.
        node: session::node_description(
            &config.name,
            &advertise,
            &gossip_addr.to_string(),
            config.labels.clone(),
            "",
        ),
    };
    let mut tasks: JoinSet<constellation_nodeagent::Result<()>> = JoinSet::new();
    tasks.spawn(task.run(shutdown.clone()));
    let (link, follow) = gossip::link(
        handle.clone(),
        config.gossip_seeds.clone(),
        shutdown.clone(),
    );
    tasks.spawn(follow);
    tasks.spawn(report_alive(handle, shutdown.clone()));
    let (assignments_tx, mut assignments_rx) = mpsc::channel(ASSIGNMENTS_BUFFER);
    // Ends when the session drops its sender, at shutdown.
    tasks.spawn(async move {
        while assignments_rx.recv().await.is_some() {}
        Ok(())
    });
    tasks.spawn(session::run(
        session_config,
        assignments_tx,
        Arc::new(StatusQueue::new()),
        Some(link),
        shutdown.clone(),
    ));
    process::run_until_shutdown(&mut tasks, &shutdown, SHUTDOWN_GRACE)
        .await
        .map_err(anyhow::Error::msg)
}

/// Prints `alive N` whenever the count of other members seen alive changes.
async fn report_alive(
    handle: GossipHandle,
    shutdown: CancellationToken,
) -> constellation_nodeagent::Result<()> {
    // Subscribed before the first count, so no change falls between the two.
    let mut events = handle.subscribe();
    let mut reported = None;
    loop {
        let alive = handle
            .members()
            .await?
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        if reported != Some(alive) {
            say(&format!("alive {alive}"), &shutdown);
            reported = Some(alive);
        }
        // Metadata and health items do not move the count.
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = events.recv() => event,
            };
            match event {
                Ok(GossipEvent::Up(_) | GossipEvent::Suspect(_) | GossipEvent::Down(_))
                | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(ALIVE_COALESCE) => {}
        }
        while !matches!(
            events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

/// One line to the bench; a bench that stopped listening is a bench that went away.
fn say(line: &str, shutdown: &CancellationToken) {
    if writeln!(std::io::stdout(), "{line}").is_err() {
        shutdown.cancel();
    }
}

/// Reads stdin to its end on a thread of its own (a blocking read the runtime would
/// otherwise wait for at exit), then shuts down.
fn stop_when_stdin_closes(shutdown: CancellationToken) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        shutdown.cancel();
    });
}
