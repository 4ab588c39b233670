//! The write-load generator shared by `constellation-bench raft` and the etcd
//! comparison: N concurrent clients, each sending one request at a time for a fixed
//! time, over a few shared connections; it records each answered request's latency and
//! the CPU time of the serving processes and of this process.
//!
//! Both systems get the same generator, the same concurrency and 512-byte values: for
//! Constellation an `ApplyService` whose spec carries 512 bytes of environment (about
//! 1 KiB encoded, the size of an operator's spec), for etcd a `Put` of a 512-byte value
//! under the client's key.

use crate::{cpu_ticks, ticks_per_second};
use anyhow::Context;
use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use constellation_tests::binaries::{ControlPlane, Start};
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Connections shared by the clients of one level, as services share a client pool.
const MAX_CONNECTIONS: usize = 8;

/// What each client sends, one request at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Load {
    /// Constellation: `ApplyService` writes through Raft.
    Writes,
    /// Constellation: stale `GetService` reads of the client's own service, answered by
    /// the leader from memory: the same clients, connections and server stack without
    /// Raft, so the ceiling that the gRPC round trip alone puts on this machine.
    StaleReads,
    /// etcd: `Put` of a 512-byte value.
    EtcdPuts,
}

impl Load {
    pub fn label(self) -> &'static str {
        match self {
            Load::Writes => "writes",
            Load::StaleReads => "stale reads",
            Load::EtcdPuts => "etcd puts",
        }
    }
}

/// One connection's client, cloned by each task that shares it.
#[derive(Clone)]
enum Connection {
    Constellation(ControlPlaneClient<Channel>),
    Etcd(Box<etcd_client::KvClient>),
}

impl Connection {
    async fn send(&mut self, load: Load, name: &str, n: u64) -> anyhow::Result<()> {
        match (self, load) {
            (Connection::Constellation(client), Load::Writes) => {
                let request = pb::ApplyServiceRequest {
                    spec: Some(spec(name.to_owned(), n)),
                    ..Default::default()
                };
                client.apply_service(request).await?;
            }
            (Connection::Constellation(client), Load::StaleReads) => {
                let request = pb::GetServiceRequest {
                    name: name.to_owned(),
                    consistency: pb::ReadConsistency::Stale.into(),
                };
                client.get_service(request).await?;
            }
            (Connection::Etcd(client), Load::EtcdPuts) => {
                client.put(name, value(n), None).await?;
            }
            _ => anyhow::bail!("{load:?} does not go to this system"),
        }
        Ok(())
    }
}

/// The figures of one level.
pub struct Level {
    pub load: Load,
    pub clients: usize,
    pub completed: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time of the serving processes per completed request (user plus system).
    pub servers_cpu_per_op: Duration,
    /// CPU time of this process (the clients) per completed request.
    pub clients_cpu_per_op: Duration,
}

impl Level {
    pub fn ops_per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `clients` concurrent clients against `endpoint` for `duration`.
/// `server_pids` are the processes whose CPU time is counted as the servers'.
pub async fn run_level(
    endpoint: &str,
    server_pids: &[u32],
    load: Load,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Level> {
    let mut connections = Vec::new();
    for _ in 0..clients.clamp(1, MAX_CONNECTIONS) {
        connections.push(match load {
            Load::Writes | Load::StaleReads => Connection::Constellation(connect(endpoint)?),
            Load::EtcdPuts => Connection::Etcd(Box::new(
                etcd_client::Client::connect([format!("http://{endpoint}")], None)
                    .await
                    .with_context(|| format!("connecting to etcd at {endpoint}"))?
                    .kv_client(),
            )),
        });
    }
    let servers_ticks =
        || -> anyhow::Result<u64> { server_pids.iter().map(|&pid| cpu_ticks(pid)).sum() };
    let own_pid = std::process::id();
    let (servers_before, own_before) = (servers_ticks()?, cpu_ticks(own_pid)?);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mut connection = connections[c % connections.len()].clone();
        tasks.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let name = format!("svc-{clients}-{c}");
            let mut n = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match connection.send(load, &name, n).await {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        let (l, e) = joined?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    let (servers_after, own_after) = (servers_ticks()?, cpu_ticks(own_pid)?);
    latencies.sort();
    let per_op = |ticks: u64| {
        Duration::from_secs_f64(ticks as f64 / ticks_per_second() / latencies.len().max(1) as f64)
    };
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Level {
        load,
        clients,
        completed: latencies.len(),
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        servers_cpu_per_op: per_op(servers_after - servers_before),
        clients_cpu_per_op: per_op(own_after - own_before),
    })
}

/// Prints `levels` as a table.
pub fn print_levels(levels: &[Level]) {
    println!(
        "{:>12} {:>8} {:>10} {:>8} {:>10} {:>10} {:>14} {:>14}",
        "load", "clients", "ops/s", "errors", "p50", "p99", "servers cpu/op", "clients cpu/op"
    );
    for r in levels {
        println!(
            "{:>12} {:>8} {:>10.0} {:>8} {:>10.2?} {:>10.2?} {:>14.1?} {:>14.1?}",
            r.load.label(),
            r.clients,
            r.ops_per_second(),
            r.errors,
            r.p50,
            r.p99,
            r.servers_cpu_per_op,
            r.clients_cpu_per_op,
        );
    }
}

/// A 3-member Constellation control plane on loopback and the address of its leader.
pub struct Cluster {
    pub members: Vec<ControlPlane>,
    pub leader_addr: String,
}

impl Cluster {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let first = ControlPlane::start(1, &dir.join("cp1"), Start::Bootstrap, None).await?;
        let seed = first.api_addr.clone();
        let mut members = vec![first];
        for id in [2, 3] {
            let dir = dir.join(format!("cp{id}"));
            members.push(ControlPlane::start(id, &dir, Start::Join(seed.clone()), None).await?);
        }
        let leader = wait_for_three_voters(&seed).await?;
        let leader_addr = members
            .iter()
            .find(|m| m.id == leader)
            .map(|m| m.api_addr.clone())
            .context("leader is one of ours")?;
        Ok(Self {
            members,
            leader_addr,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.process.pid())
            .collect()
    }

    pub async fn stop(mut self) {
        for m in self.members.iter_mut() {
            let _ = m.process.terminate(Duration::from_secs(15)).await;
        }
    }
}

async fn wait_for_three_voters(addr: &str) -> anyhow::Result<u64> {
    let mut client = connect(addr)?;
    for _ in 0..300 {
        if let Ok(status) = client.cluster_status(pb::ClusterStatusRequest {}).await {
            let status = status.into_inner();
            let voters = status
                .members
                .iter()
                .filter(|m| m.role() == pb::MemberRole::Voter)
                .count();
            if let (3, Some(leader)) = (voters, status.leader_id) {
                return Ok(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the cluster did not form")
}

pub fn connect(addr: &str) -> anyhow::Result<ControlPlaneClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    Ok(ControlPlaneClient::new(channel))
}

/// The 512-byte value of write `n`.
fn value(n: u64) -> String {
    format!("{n:0>512}")
}

/// A spec like an operator's: an image, a port, a health check and 512 bytes of env.
fn spec(name: String, n: u64) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name,
        image: "registry.example.com/team/web:1.4.2".into(),
        env: [("PAYLOAD".to_string(), value(n))].into(),
        labels: [("traefik.enable".to_string(), "true".to_string())].into(),
        ports: vec![pb::PortSpec {
            container_port: 8080,
            ..Default::default()
        }],
        health_check: Some(pb::HealthCheck {
            test: vec![
                "CMD".into(),
                "wget".into(),
                "-q".into(),
                "localhost:8080".into(),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}
