//! The agent's session with the control plane (`Dispatcher.Session`).
//!
//! Connects to the control-plane addresses in turn, sends `Hello` (the node's
//! description and the reports of what it runs), then heartbeats at the period the
//! control plane dictates and the reconciler's status reports as `StatusBatch`es (at
//! most one every [`STATUS_FLUSH_INTERVAL`]). Assignments go to the reconciler over a
//! channel. When the stream ends or fails it reconnects with exponential backoff and
//! jitter ([`RECONNECT_INITIAL`] doubling to [`RECONNECT_MAX`]); losing the control
//! plane never ends the agent. The addresses from `SessionAccepted.controlplane_addrs`
//! are tried on later reconnects, after the configured ones. Only the leader serves
//! sessions: a follower's refusal names the leader, which is tried next at once.
//!
//! With gossip on, the hello carries the gossip identity's generation, the seeds in
//! `SessionAccepted` are joined when this member knows no other, and the view of
//! members not alive is reported (`GossipReport`) at the start of every session and
//! whenever it changes: the control plane's failure detector counts it as evidence.
//! The control plane's `CheckMember` commands (a node's session broke) are handed to
//! gossip, which puts that member under suspicion at once.
//!
//! A control plane that sends nothing (not even a heartbeat ack) for
//! [`SILENCE_HEARTBEATS`] heartbeat periods is given up on, so a half-open connection
//! (a partition) does not hold the agent forever.

use crate::gossip::GossipLink;
use crate::reconcile::StatusQueue;
use constellation_proto::v1::{
    AgentCommand, AgentMessage, Assignments, CheckMember, GossipReport, Heartbeat, Hello,
    NodeAddresses, NodeDescription, NodeResources, StatusBatch, agent_command::Kind as Command,
    agent_message::Kind as Up, control_message::Kind as Down, dispatcher_client::DispatcherClient,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

pub const RECONNECT_INITIAL: Duration = Duration::from_millis(200);
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Minimum time between two status batches.
pub const STATUS_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Heartbeat period until the control plane says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages buffered towards the control plane.
const OUTBOUND: usize = 64;
/// How long a shutting-down agent waits for the control plane to acknowledge the end
/// of its session.
const GOODBYE_TIMEOUT: Duration = Duration::from_millis(500);
/// Heartbeat periods without any message from the control plane before the session is
/// given up on.
pub const SILENCE_HEARTBEATS: u32 = 5;
/// Response header in which a follower names the leader (see the control plane's
/// `LEADER_METADATA`).
const LEADER_METADATA: &str = "constellation-leader";

/// What the session needs to know about the node.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Control-plane API addresses (host:port or URLs).
    pub controlplane: Vec<String>,
    pub node: NodeDescription,
}

/// Why one session ended.
#[derive(Debug)]
enum Ended {
    Cancelled,
    /// The session was accepted, then lost: reconnect at once.
    Lost(String),
    /// Connecting or the hello failed: back off.
    Failed(String),
    /// A follower refused the session and named the leader: try it at once.
    Redirected(String),
}

/// Runs sessions until `cancel`, reconnecting forever.
pub async fn run(
    config: SessionConfig,
    assignments: mpsc::Sender<Assignments>,
    status: Arc<StatusQueue>,
    gossip: Option<GossipLink>,
    cancel: CancellationToken,
) -> crate::Result<()> {
    let mut session = Session {
        config,
        learned: Vec::new(),
        node_id: String::new(),
        assignments,
        status,
        gossip,
    };
    let mut backoff = ReconnectBackoff::default();
    let mut next_addr = 0usize;
    let mut redirect: Option<String> = None;
    let mut redirects = 0u32;
    loop {
        let addrs = session.addresses();
        let addr = redirect
            .take()
            .unwrap_or_else(|| addrs[next_addr % addrs.len()].clone());
        match session.once(&addr, &cancel).await {
            Ended::Cancelled => return Ok(()),
            Ended::Redirected(leader) => {
                tracing::info!(controlplane = %addr, %leader, "not the leader; trying the leader");
                redirect = Some(leader);
                // At once the first time; members that disagree on the leader (during
                // an election) get the usual backoff instead of a tight loop.
                redirects += 1;
                if redirects <= 1 {
                    continue;
                }
            }
            Ended::Lost(why) => {
                redirects = 0;
                tracing::warn!(controlplane = %addr, reason = %why, "session lost; reconnecting");
                backoff.reset();
            }
            Ended::Failed(why) => {
                redirects = 0;
                tracing::warn!(controlplane = %addr, reason = %why, "session failed");
                next_addr = next_addr.wrapping_add(1);
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

struct Session {
    config: SessionConfig,
    /// Control-plane addresses learned from `SessionAccepted`.
    learned: Vec<String>,
    node_id: String,
    assignments: mpsc::Sender<Assignments>,
    status: Arc<StatusQueue>,
    gossip: Option<GossipLink>,
}

impl Session {
    fn addresses(&self) -> Vec<String> {
        let mut all = self.config.controlplane.clone();
        for a in &self.learned {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }

    async fn once(&mut self, addr: &str, cancel: &CancellationToken) -> Ended {
        let endpoint = match tonic::transport::Endpoint::from_shared(url(addr)) {
            Ok(e) => e.connect_timeout(CONNECT_TIMEOUT),
            Err(e) => return Ended::Failed(format!("bad address: {e}")),
        };
        let channel = tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            c = endpoint.connect() => match c {
                Ok(c) => c,
                Err(e) => return Ended::Failed(format!("connect: {e}")),
            },
        };
        let (tx, rx) = mpsc::channel(OUTBOUND);
        let hello = Hello {
            node: Some(self.config.node.clone()),
            node_id: self.node_id.clone(),
            running: self.status.snapshot(),
            assignments_version: self.status.applied_version(),
            gossip_generation: self
                .gossip
                .as_ref()
                .map_or(0, |g| g.handle.current_identity().generation),
        };
        // Reports in the hello need not be sent again; final ones (removed
        // allocations) are not in it and stay queued.
        for r in self.status.take() {
            if !hello
                .running
                .iter()
                .any(|h| h.allocation_id == r.allocation_id)
            {
                self.status.push_final(r);
            }
        }
        let _ = tx
            .send(AgentMessage {
                kind: Some(Up::Hello(hello)),
            })
            .await;
        let mut client = DispatcherClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let mut inbound = tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            r = client.session(ReceiverStream::new(rx)) => match r {
                Ok(r) => r.into_inner(),
                Err(e) => return refused(addr, &e),
            },
        };
        let mut view = self.gossip.as_ref().map(|g| g.view.clone());
        let mut last_heard = Instant::now();
        let mut period = DEFAULT_HEARTBEAT;
        let mut next_heartbeat = Instant::now() + period;
        let mut sequence = 0u64;
        let mut accepted = false;
        let mut last_flush = Instant::now() - STATUS_FLUSH_INTERVAL;
        // The cluster size gossip was last tuned for (0: not yet told).
        let mut told_size = 0u32;
        loop {
            let flush_at = if self.status.has_pending() {
                Some(last_flush + STATUS_FLUSH_INTERVAL)
            } else {
                None
            };
            let flush = async move {
                match flush_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let view_changed = async {
                match view.as_mut() {
                    Some(v) if accepted => v.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            let silent_until = last_heard + period * SILENCE_HEARTBEATS;
            tokio::select! {
                () = cancel.cancelled() => {
                    // A clean goodbye: end our stream and wait (briefly) for the control
                    // plane to end its own, so it sees a shutdown (a restart, usually),
                    // not a broken connection, and does not fail the node over.
                    drop(tx);
                    let drained = async { while let Ok(Some(_)) = inbound.message().await {} };
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, drained).await;
                    return Ended::Cancelled;
                }
                // A report pushed while nothing was pending: loop, so the flush is
                // timed from it rather than from whatever wakes the session next (a
                // heartbeat can be a period away, and a health change is what
                // failover and Traefik wait for).
                () = self.status.changed(), if flush_at.is_none() => {}
                () = tokio::time::sleep_until(silent_until) => {
                    return self.end(accepted, format!("nothing from the control plane for {:?}", period * SILENCE_HEARTBEATS));
                }
                true = view_changed => {
                    if tx.send(self.gossip_report()).await.is_err() {
                        return self.end(accepted, "the request stream closed".into());
                    }
                }
                message = inbound.message() => {
                    let message = match message {
                        Ok(Some(m)) => m,
                        Ok(None) => return self.end(accepted, "the control plane closed the stream".into()),
                        Err(e) if !accepted => return refused(addr, &e),
                        Err(e) => return self.end(accepted, format!("stream: {e}")),
                    };
                    last_heard = Instant::now();
                    match message.kind {
                        Some(Down::Accepted(a)) => {
                            accepted = true;
                            self.node_id = a.node_id.clone();
                            if let Some(p) = a.heartbeat_period.as_ref().and_then(duration) {
                                period = p;
                                next_heartbeat = Instant::now() + period;
                            }
                            self.learned = a.controlplane_addrs.clone();
                            tracing::info!(
                                controlplane = %addr, node_id = %a.node_id, session_id = %a.session_id,
                                heartbeat = ?period, "session accepted"
                            );
                            self.tell_gossip_the_size(a.cluster_nodes, &mut told_size);
                            if let Some(gossip) = &self.gossip {
                                let seeds = a.gossip_seeds.iter().filter_map(|s| s.parse().ok()).collect();
                                let _ = gossip.seeds.try_send(seeds);
                                if let Some(v) = view.as_mut() {
                                    v.mark_unchanged();
                                }
                                if tx.send(self.gossip_report()).await.is_err() {
                                    return self.end(accepted, "the request stream closed".into());
                                }
                            }
                        }
                        Some(Down::Assignments(a)) => {
                            tracing::debug!(version = a.version, kind = ?a.kind(), upserts = a.upserts.len(), removals = a.removals.len(), "assignments received");
                            if self.assignments.send(a).await.is_err() {
                                // The reconciler is gone: only at shutdown.
                                return Ended::Cancelled;
                            }
                        }
                        Some(Down::HeartbeatAck(ack)) => {
                            self.tell_gossip_the_size(ack.cluster_nodes, &mut told_size);
                            if let Some(p) = ack.heartbeat_period.as_ref().and_then(duration)
                                && p != period
                            {
                                period = p;
                                next_heartbeat = Instant::now() + period;
                            }
                        }
                        Some(Down::Command(AgentCommand { kind: Some(Command::CheckMember(check)) })) => {
                            self.check_member(check).await;
                        }
                        Some(Down::Command(c)) => {
                            tracing::warn!(command = ?c.kind.map(|k| std::mem::discriminant(&k)), "agent command not supported; ignored");
                        }
                        None => {}
                    }
                }
                () = tokio::time::sleep_until(next_heartbeat) => {
                    sequence += 1;
                    next_heartbeat = Instant::now() + period;
                    let hb = AgentMessage { kind: Some(Up::Heartbeat(Heartbeat { sequence })) };
                    if tx.send(hb).await.is_err() {
                        return self.end(accepted, "the request stream closed".into());
                    }
                }
                () = flush => {
                    last_flush = Instant::now();
                    let reports = self.status.take();
                    if !reports.is_empty() {
                        tracing::debug!(reports = reports.len(), "sending status");
                        let batch = AgentMessage { kind: Some(Up::Status(StatusBatch { reports })) };
                        if tx.send(batch).await.is_err() {
                            return self.end(accepted, "the request stream closed".into());
                        }
                    }
                }
            }
        }
    }

    /// Retunes gossip for the `nodes` the control plane counts (0: it did not say), when
    /// that differs from `told`, the size it was last tuned for.
    fn tell_gossip_the_size(&self, nodes: u32, told: &mut u32) {
        let (Some(gossip), Some(n)) = (&self.gossip, std::num::NonZeroU32::new(nodes)) else {
            return;
        };
        if nodes != *told && gossip.handle.try_resize(n) {
            *told = nodes;
        }
    }

    /// The gossip view as a report (empty without gossip).
    fn gossip_report(&self) -> AgentMessage {
        let members = self
            .gossip
            .as_ref()
            .map(|g| g.view.borrow().clone())
            .unwrap_or_default();
        AgentMessage {
            kind: Some(Up::Gossip(GossipReport { members })),
        }
    }

    /// Passes the control plane's check of a member on to gossip (see
    /// [`crate::gossip::GossipHandle::check`]); without gossip there is nothing to do.
    async fn check_member(&self, check: CheckMember) {
        let Some(gossip) = &self.gossip else {
            return;
        };
        if check.name.is_empty() || check.name.len() > crate::gossip::config::MAX_NAME_LEN {
            tracing::warn!("check_member: name must be 1 to 253 bytes; ignored");
            return;
        }
        if let Err(e) = gossip
            .handle
            .check(check.name, check.gossip_generation)
            .await
        {
            tracing::warn!(error = %e, "check_member: gossip is not running");
        }
    }

    fn end(&self, accepted: bool, why: String) -> Ended {
        if accepted {
            Ended::Lost(why)
        } else {
            Ended::Failed(why)
        }
    }
}

/// How a refused session ends: redirected when a follower named the leader.
fn refused(addr: &str, status: &tonic::Status) -> Ended {
    let leader = status
        .metadata()
        .get(LEADER_METADATA)
        .and_then(|v| v.to_str().ok())
        .filter(|l| !l.is_empty() && *l != addr);
    match leader {
        Some(leader) => Ended::Redirected(leader.to_owned()),
        None => Ended::Failed(format!("session refused: {status}")),
    }
}

fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn duration(d: &pbjson_types::Duration) -> Option<Duration> {
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Reconnect delays: 200 ms doubling to 5 s, each with up to ±20 % jitter.
#[derive(Debug, Clone)]
pub struct ReconnectBackoff {
    next: Duration,
    seed: u64,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            next: RECONNECT_INITIAL,
            seed: RandomState::new().hash_one(std::process::id()) | 1,
        }
    }
}

impl ReconnectBackoff {
    pub fn reset(&mut self) {
        self.next = RECONNECT_INITIAL;
    }

    /// The delay before the next attempt (with jitter), doubling the base.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(RECONNECT_MAX);
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let unit = (self.seed % 1000) as f64 / 1000.0; // [0, 1)
        base.mul_f64(0.8 + 0.4 * unit)
    }
}

/// The node's description for `Hello`.
pub fn node_description(
    name: &str,
    advertise_ip: &str,
    gossip_addr: &str,
    labels: BTreeMap<String, String>,
    docker_version: &str,
) -> NodeDescription {
    NodeDescription {
        name: name.to_owned(),
        addresses: Some(NodeAddresses {
            advertise_ip: advertise_ip.to_owned(),
            gossip_addr: gossip_addr.to_owned(),
            ..Default::default()
        }),
        labels: labels.into_iter().collect(),
        capacity: Some(NodeResources {
            cpu_millis: cpu_millis(),
            memory_bytes: memory_bytes().unwrap_or(0),
        }),
        docker_version: docker_version.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// CPUs available to the agent, in millicores.
pub fn cpu_millis() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000
}

/// `MemTotal` from /proc/meminfo, in bytes.
pub fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&info)
}

fn parse_meminfo(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_to_five_seconds_with_jitter() {
        let mut b = ReconnectBackoff::default();
        let bases = [200u64, 400, 800, 1600, 3200, 5000, 5000];
        for base in bases {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{d} vs {base}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(240));
    }

    #[test]
    fn meminfo() {
        let info = "MemTotal:       16314856 kB\nMemFree:         1234 kB\n";
        assert_eq!(parse_meminfo(info), Some(16314856 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
        assert!(cpu_millis() >= 1000);
    }

    #[test]
    fn urls() {
        assert_eq!(url("127.0.0.1:7400"), "http://127.0.0.1:7400");
        assert_eq!(url("https://cp:7400"), "https://cp:7400");
    }
}
