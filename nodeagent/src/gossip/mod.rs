//! SWIM gossip among agents (foca): membership with suspicion, failure detection, and
//! small versioned broadcasts of node metadata and health digests.
//!
//! One task owns the [`foca::Foca`] instance, the UDP socket and the timer queue
//! ([`GossipTask::run`]); everything else talks to it through a [`GossipHandle`]. Every
//! datagram is at most [`GossipConfig::max_datagram`] bytes and starts with an envelope
//! carrying the cluster tag ([`wire`]); foreign, oversized or undecodable datagrams are
//! counted and dropped. The layer is not authenticated: run it on a private network.
//!
//! Events ([`GossipEvent`]) go out on a broadcast channel, so any number of consumers
//! (the agent's log, later the control-plane session) can follow membership.

pub mod broadcast;
pub mod config;
pub mod identity;
mod task;
pub mod timers;
pub mod view;
pub mod wire;

pub use broadcast::{Availability, HealthDigest, NodeAddresses, NodeMetadata, Version};
pub use config::GossipConfig;
pub use identity::NodeIdentity;
pub use task::GossipTask;

use crate::{Error, Result};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast as channel, mpsc, oneshot, watch};

/// Commands queued to the gossip task before callers wait.
const COMMAND_BUFFER: usize = 64;

/// A membership change or a newer item seen by this member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipEvent {
    /// The member is alive: it joined, rejoined under a new identity (same address,
    /// higher generation), or refuted a suspicion.
    Up(NodeIdentity),
    /// Some member failed to reach it; it is still counted alive until `Down`.
    Suspect(NodeIdentity),
    /// The cluster declared it down (or it left).
    Down(NodeIdentity),
    /// Newer metadata from a node.
    Metadata {
        node: String,
        version: Version,
        metadata: NodeMetadata,
    },
    /// Newer health digest from a node.
    Health {
        node: String,
        version: Version,
        digest: HealthDigest,
    },
}

/// Liveness of a member as this member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

/// One member as listed by [`GossipHandle::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub identity: NodeIdentity,
    pub state: MemberState,
    pub metadata: Option<(Version, NodeMetadata)>,
    pub health: Option<(Version, HealthDigest)>,
}

/// Datagram counters of one member, counted where the socket is used: bytes are UDP
/// payloads (envelope included); add 28 bytes per datagram (IPv4 and UDP headers) for
/// what `iptables` accounting would count.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub datagrams_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Datagrams with another cluster's tag.
    pub dropped_foreign: AtomicU64,
    /// Datagrams too large, with a bad envelope, or that foca or the item decoder refused.
    pub dropped_malformed: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A copy of [`GossipStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub dropped_foreign: u64,
    pub dropped_malformed: u64,
    pub send_errors: u64,
}

/// Bytes of IPv4 and UDP headers per datagram, which link-level accounting adds.
pub const IP_UDP_HEADER_BYTES: u64 = 28;

impl StatsSnapshot {
    /// Bytes sent as `iptables` would count them: payloads plus IPv4 and UDP headers.
    pub fn ip_bytes_sent(&self) -> u64 {
        self.bytes_sent + self.datagrams_sent * IP_UDP_HEADER_BYTES
    }
}

impl GossipStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            datagrams_sent: get(&self.datagrams_sent),
            bytes_sent: get(&self.bytes_sent),
            datagrams_received: get(&self.datagrams_received),
            bytes_received: get(&self.bytes_received),
            dropped_foreign: get(&self.dropped_foreign),
            dropped_malformed: get(&self.dropped_malformed),
            send_errors: get(&self.send_errors),
        }
    }
}

pub(crate) enum Command {
    Join(Vec<SocketAddr>),
    SetMetadata(NodeMetadata),
    SetHealth(HealthDigest),
    Members(oneshot::Sender<Vec<MemberInfo>>),
    Check { name: String, generation: u64 },
    Resize(NonZeroU32),
}

/// The way in to a running gossip member. Cheap to clone.
#[derive(Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
    events: channel::Sender<GossipEvent>,
    stats: Arc<GossipStats>,
    identity: NodeIdentity,
    current: watch::Receiver<NodeIdentity>,
}

/// Prepares a gossip member on an already-bound socket; run the returned task to start
/// it. Fails when a setting is invalid or the socket's address cannot be advertised.
pub fn gossip(config: GossipConfig, socket: UdpSocket) -> Result<(GossipHandle, GossipTask)> {
    config.validate()?;
    let local = socket.local_addr()?;
    let addr = if local.ip().is_unspecified() {
        let ip = config.advertise_ip.ok_or_else(|| {
            Error::Config(format!(
                "gossip.advertise_ip: the socket is bound to {local}; give the address \
                 other nodes reach it on"
            ))
        })?;
        SocketAddr::new(ip, local.port())
    } else {
        local
    };
    let identity = NodeIdentity::new(config.name.clone(), addr);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_BUFFER);
    let (events, _) = channel::channel(config.event_buffer);
    let stats = Arc::new(GossipStats::default());
    let (current_tx, current) = watch::channel(identity.clone());
    let task = GossipTask::new(
        config,
        identity.clone(),
        socket,
        commands_rx,
        events.clone(),
        stats.clone(),
        current_tx,
    )?;
    let handle = GossipHandle {
        commands: commands_tx,
        events,
        stats,
        identity,
        current,
    };
    Ok((handle, task))
}

impl GossipHandle {
    /// The identity this member started with (it renews itself after a false down).
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The identity this member goes by now: a higher generation after each rejoin.
    pub fn current_identity(&self) -> NodeIdentity {
        self.current.borrow().clone()
    }

    /// Follows membership from now on.
    pub fn subscribe(&self) -> channel::Receiver<GossipEvent> {
        self.events.subscribe()
    }

    /// Joins the cluster through these members; retried while no member is known.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<()> {
        self.send(Command::Join(seeds)).await
    }

    /// Replaces this node's metadata and gossips it under the next version.
    pub async fn set_metadata(&self, metadata: NodeMetadata) -> Result<()> {
        metadata.check_size("metadata")?;
        self.send(Command::SetMetadata(metadata)).await
    }

    /// Replaces this node's health digest and gossips it under the next version.
    pub async fn set_health(&self, digest: HealthDigest) -> Result<()> {
        self.send(Command::SetHealth(digest)).await
    }

    /// Every member this one knows (alive, suspect and down), with what it knows of
    /// their metadata and health.
    pub async fn members(&self) -> Result<Vec<MemberInfo>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Members(tx)).await?;
        rx.await.map_err(|_| stopped())
    }

    /// Puts the member `name` (of that gossip `generation`) under suspicion now instead
    /// of waiting for some member's probe to find it, and declares it down if it does
    /// not refute within the suspicion time. The control plane asks for this when the
    /// node's session breaks: a live member refutes within a gossip round or two, a
    /// dead one is down in `suspect_to_down` (SWIM's suspicion, started on demand).
    pub async fn check(&self, name: String, generation: u64) -> Result<()> {
        self.send(Command::Check { name, generation }).await
    }

    /// Retunes the member for a cluster of `members` nodes (see
    /// [`GossipConfig::resize`]), as the control plane counts them. Does not wait: false
    /// when the command queue is full or the task has stopped, so the caller asks again
    /// later.
    pub fn try_resize(&self, members: NonZeroU32) -> bool {
        self.commands.try_send(Command::Resize(members)).is_ok()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Task("gossip: the gossip task has stopped".into())
}

/// Members the agent's gossip is tuned for until the control plane tells it the cluster
/// size (`SessionAccepted.cluster_nodes`, then every heartbeat ack): suspicion is
/// 0.5 s · log10(n), so this only moves it between 0.6 s and ~1.3 s.
pub const AGENT_EXPECTED_MEMBERS: u32 = 100;

/// The agent's gossip member: binds `--gossip-listen`, advertises the agent's address
/// and labels. Run the task, then [`follow`] to join the seeds and log membership.
pub async fn start_for_agent(config: &crate::config::Config) -> Result<(GossipHandle, GossipTask)> {
    let socket = UdpSocket::bind(config.gossip_listen).await.map_err(|e| {
        Error::Config(format!(
            "gossip_listen {}: cannot bind: {e}",
            config.gossip_listen
        ))
    })?;
    let mut settings =
        GossipConfig::lan(&config.name, &config.gossip_cluster, AGENT_EXPECTED_MEMBERS);
    settings.advertise_ip = Some(config.advertise_addr);
    settings.metadata = NodeMetadata {
        labels: config.labels.clone(),
        addresses: NodeAddresses {
            advertise_ip: config.advertise_addr.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let (handle, task) = gossip(settings, socket)?;
    tracing::info!(gossip = %handle.identity().addr, cluster = %config.gossip_cluster, "gossip listening");
    Ok((handle, task))
}

/// What the agent's session needs of gossip: the view of members not alive (reported
/// to the control plane), a way to join the seeds the control plane hands out, and the
/// current identity (its generation goes into the hello).
pub struct GossipLink {
    pub view: watch::Receiver<Vec<constellation_proto::v1::MemberObservation>>,
    pub seeds: mpsc::Sender<Vec<SocketAddr>>,
    pub handle: GossipHandle,
}

/// Starts following `handle`'s events: see [`follow`]. Returns the session's link and
/// the future to run as a task.
pub fn link(
    handle: GossipHandle,
    seeds: Vec<SocketAddr>,
    shutdown: tokio_util::sync::CancellationToken,
) -> (GossipLink, impl std::future::Future<Output = Result<()>>) {
    let (view_tx, view_rx) = watch::channel(Vec::new());
    let (seeds_tx, seeds_rx) = mpsc::channel(4);
    let link = GossipLink {
        view: view_rx,
        seeds: seeds_tx,
        handle: handle.clone(),
    };
    (link, follow(handle, seeds, view_tx, seeds_rx, shutdown))
}

/// Joins `seeds`, then until `shutdown`: logs every membership change, keeps the view of
/// members not alive in `view`, and joins the seeds the session passes on (only while
/// this member knows no other: they are for a first join or a rejoin).
pub async fn follow(
    handle: GossipHandle,
    seeds: Vec<SocketAddr>,
    view: watch::Sender<Vec<constellation_proto::v1::MemberObservation>>,
    mut joins: mpsc::Receiver<Vec<SocketAddr>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut events = handle.subscribe();
    let mut members = view::MemberView::new(handle.identity().name.clone());
    if !seeds.is_empty() {
        handle.join(seeds).await?;
    }
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            Some(seeds) = joins.recv() => {
                let alone = handle.members().await?.iter().all(|m| m.state != MemberState::Alive);
                if alone && !seeds.is_empty() {
                    tracing::info!(seeds = ?seeds, "gossip: joining through the control plane's seeds");
                    handle.join(seeds).await?;
                }
                continue;
            }
            event = events.recv() => event,
        };
        if let Ok(event) = &event
            && members.apply(event)
        {
            view.send_replace(members.observations());
        }
        match event {
            Ok(GossipEvent::Up(id)) => tracing::info!(member = %id, "gossip: member up"),
            Ok(GossipEvent::Suspect(id)) => tracing::warn!(member = %id, "gossip: member suspect"),
            Ok(GossipEvent::Down(id)) => tracing::warn!(member = %id, "gossip: member down"),
            Ok(GossipEvent::Metadata { node, version, .. }) => {
                tracing::debug!(%node, ?version, "gossip: metadata")
            }
            Ok(GossipEvent::Health { node, digest, .. }) => {
                tracing::debug!(%node, ?digest, "gossip: health")
            }
            Err(channel::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "gossip: event log fell behind")
            }
            Err(channel::error::RecvError::Closed) => return Ok(()),
        }
    }
}
