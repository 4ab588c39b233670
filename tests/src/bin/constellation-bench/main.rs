//! `constellation-bench`: measurements of Constellation that print their figures.
//!
//! `constellation-bench raft [--seconds N] [--clients 1,16,256]`: a 3-member control
//! plane of real processes on loopback (sled flushes every log append before it is
//! acknowledged), driven by concurrent gRPC clients each sending ApplyService writes
//! of about 1 KiB encoded (a spec with 512 bytes of environment), one at a time. Prints
//! committed writes per second, p50/p99 latency and CPU time per write (the members'
//! and the clients', from /proc: steadier than throughput on a shared machine) per
//! concurrency level. Then the same clients send stale reads of their services, which
//! the leader answers from memory: the ceiling of the gRPC round trip alone here.
//!
//! `constellation-bench containers [--count 100]`: N single-container services deployed
//! through a control plane to one agent on the local Docker engine, against a shell
//! loop of `docker run -d` for the same N containers; time until all run, then the
//! agent's resident memory and its CPU use over 10 idle seconds.
//!
//! `constellation-bench gossip [--members 200] [--duration 300s] [--trials 20]`: N gossip
//! members in this process on loopback UDP: steady-state bytes per second per member,
//! time from killing a member until others report it down (p50, p99), and false
//! positives over the whole run (see `gossip.rs` for how bytes are counted).
//!
//! `constellation-bench traefik [--services 10000] [--replicas 3] [--seconds 5]
//! [--clients 1,8,32] [--changes 20]`: the Traefik document of a view built in-process
//! (no cluster): render time, `GET /traefik` latency from concurrent keep-alive
//! pollers against the gateway's router on loopback, and the time from one health
//! change to the first poll that shows it.
//!
//! `constellation-bench rest [--services 10000] [--replicas 3] [--seconds 5]
//! [--clients 1,8]`: `GET /api/v1/services` against the gateway's router on loopback,
//! over a view built in-process: requests per second, p50 and p99.
//!
//! `constellation-bench failover [--trials 20]`: the multi-host harness (3 hosts, needs
//! root): time from killing a host to its node declared down and to its replica
//! running healthy on another host, p50 and p99.
//!
//! `constellation-bench scheduler [--nodes 5000] [--allocations 100000]`: one
//! `scheduler::plan` placing every replica of a mix of services on N simulated nodes,
//! over a state built in memory through its commands: placements per second.
//!
//! Build the binaries in release mode first; the bench starts the control plane from
//! the same target directory as itself:
//!
//! ```sh
//! cargo build --release --bins && target/release/constellation-bench raft
//! ```

use anyhow::Context;
use clap::Parser;
use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use constellation_tests::binaries::{ControlPlane, Start, set_echo_logs};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

mod containers;
mod failover;
mod gossip;
mod rest;
mod scheduler;
mod traefik;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Committed writes per second and latency of the Raft control plane.
    Raft {
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        clients: Vec<usize>,
    },
    /// Time to start N containers through Constellation (one agent) against a shell
    /// loop of `docker run -d`, then the agent's RSS and idle CPU.
    Containers {
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Render time and `GET /traefik` latency for a large in-process view.
    Traefik {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Seconds of polling per concurrency level.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent pollers per level.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        clients: Vec<usize>,
        /// Health changes timed until the new document is served.
        #[arg(long, default_value_t = 20)]
        changes: usize,
    },
    /// `GET /api/v1/services` requests per second and latency for a large in-process view.
    Rest {
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent clients per level.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        clients: Vec<usize>,
    },
    /// Time from killing a host to its node declared down and its replica healthy
    /// elsewhere, on the multi-host harness (needs root).
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
    },
    /// Placements per second of one scheduler plan over N simulated nodes.
    Scheduler {
        #[arg(long, default_value_t = 5_000)]
        nodes: usize,
        #[arg(long, default_value_t = 100_000)]
        allocations: usize,
    },
    /// Bytes per member, detection time and false positives of N gossip members.
    Gossip {
        #[arg(long, default_value_t = 200)]
        members: usize,
        /// Whole run, over which false positives are counted (300s, 5m).
        #[arg(long, default_value = "300s", value_parser = gossip::parse_duration)]
        duration: Duration,
        /// Kill-and-detect trials.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Steady-state window in which bytes are counted.
        #[arg(long, default_value = "60s", value_parser = gossip::parse_duration)]
        steady: Duration,
        /// Override the probe period of `GossipConfig::lan` (e.g. 250ms).
        #[arg(long, value_parser = gossip::parse_duration)]
        probe_period: Option<Duration>,
        /// Override the suspect-to-down time of `GossipConfig::lan` (e.g. 1150ms).
        #[arg(long, value_parser = gossip::parse_duration)]
        suspect_to_down: Option<Duration>,
        /// Lifeguard-style local health (`on`, as agents run, or `off`).
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        local_health: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().bench {
        Bench::Raft { seconds, clients } => raft(Duration::from_secs(seconds), &clients).await,
        Bench::Containers { count } => containers::run(count).await,
        Bench::Failover { trials } => failover::run(trials).await,
        Bench::Scheduler { nodes, allocations } => scheduler::run(nodes, allocations),
        Bench::Rest {
            services,
            replicas,
            seconds,
            clients,
        } => rest::run(services, replicas, seconds, &clients).await,
        Bench::Traefik {
            services,
            replicas,
            seconds,
            clients,
            changes,
        } => traefik::run(services, replicas, seconds, &clients, changes).await,
        Bench::Gossip {
            members,
            duration,
            trials,
            steady,
            probe_period,
            suspect_to_down,
            local_health,
        } => {
            gossip::run(gossip::Options {
                members,
                duration,
                trials,
                steady,
                probe_period,
                suspect_to_down,
                local_health: local_health != "off",
            })
            .await
        }
    }
}

/// What each client sends, one request at a time.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// ApplyService writes through Raft.
    Writes,
    /// Stale GetService reads of the client's own service, answered by the leader from
    /// memory: the same clients, connections and server stack without Raft, so the
    /// ceiling that the gRPC round trip alone puts on this machine.
    StaleReads,
}

struct Level {
    load: Load,
    clients: usize,
    completed: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time of the three members per committed write (user plus system).
    members_cpu_per_write: Duration,
    /// CPU time of this process (the clients) per committed write.
    clients_cpu_per_write: Duration,
}

async fn raft(duration: Duration, levels: &[usize]) -> anyhow::Result<()> {
    set_echo_logs(false);
    let dir = tempfile::tempdir()?;
    let first = ControlPlane::start(1, &dir.path().join("cp1"), Start::Bootstrap, None).await?;
    let seed = first.api_addr.clone();
    let mut members = vec![first];
    for id in [2, 3] {
        let dir = dir.path().join(format!("cp{id}"));
        members.push(ControlPlane::start(id, &dir, Start::Join(seed.clone()), None).await?);
    }
    let leader = wait_for_three_voters(&seed).await?;
    let leader_addr = members
        .iter()
        .find(|m| m.id == leader)
        .map(|m| m.api_addr.clone())
        .context("leader is one of ours")?;
    println!("3 members on loopback, leader {leader} at {leader_addr}; {duration:?} per level");

    let pids: Vec<u32> = members.iter().filter_map(|m| m.process.pid()).collect();
    let mut results = Vec::new();
    for load in [Load::Writes, Load::StaleReads] {
        for &clients in levels {
            results.push(run_level(&leader_addr, &pids, load, clients, duration).await?);
        }
    }
    println!();
    println!(
        "{:>12} {:>8} {:>10} {:>8} {:>10} {:>10} {:>14} {:>14}",
        "load", "clients", "ops/s", "errors", "p50", "p99", "members cpu/op", "clients cpu/op"
    );
    for r in &results {
        let load = match r.load {
            Load::Writes => "writes",
            Load::StaleReads => "stale reads",
        };
        println!(
            "{:>12} {:>8} {:>10.0} {:>8} {:>10.2?} {:>10.2?} {:>14.1?} {:>14.1?}",
            load,
            r.clients,
            r.completed as f64 / r.elapsed.as_secs_f64(),
            r.errors,
            r.p50,
            r.p99,
            r.members_cpu_per_write,
            r.clients_cpu_per_write,
        );
    }
    for m in members.iter_mut() {
        let _ = m.process.terminate(Duration::from_secs(15)).await;
    }
    Ok(())
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

pub(crate) fn connect(addr: &str) -> anyhow::Result<ControlPlaneClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    Ok(ControlPlaneClient::new(channel))
}

/// A spec like an operator's: an image, a port, a health check and 512 bytes of env.
fn spec(name: String, n: u64) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name,
        image: "registry.example.com/team/web:1.4.2".into(),
        env: [("PAYLOAD".to_string(), format!("{n:0>512}"))].into(),
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

async fn run_level(
    addr: &str,
    member_pids: &[u32],
    load: Load,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Level> {
    let members_ticks =
        || -> anyhow::Result<u64> { member_pids.iter().map(|&pid| cpu_ticks(pid)).sum() };
    let own_pid = std::process::id();
    let (members_before, own_before) = (members_ticks()?, cpu_ticks(own_pid)?);
    // A few channels shared by the clients, as many services share a client pool.
    let channels: Vec<_> = (0..clients.clamp(1, 8))
        .map(|_| connect(addr))
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mut client = channels[c % channels.len()].clone();
        tasks.spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
            let name = format!("svc-{clients}-{c}");
            while Instant::now() < deadline {
                let sent = Instant::now();
                let answer = match load {
                    Load::Writes => {
                        let request = pb::ApplyServiceRequest {
                            spec: Some(spec(name.clone(), n)),
                            ..Default::default()
                        };
                        client.apply_service(request).await.map(drop)
                    }
                    Load::StaleReads => {
                        let request = pb::GetServiceRequest {
                            name: name.clone(),
                            consistency: pb::ReadConsistency::Stale.into(),
                        };
                        client.get_service(request).await.map(drop)
                    }
                };
                match answer {
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
    let (members_after, own_after) = (members_ticks()?, cpu_ticks(own_pid)?);
    let per_write = |ticks: u64| {
        Duration::from_secs_f64(ticks as f64 / ticks_per_second() / latencies.len().max(1) as f64)
    };
    let members_cpu_per_write = per_write(members_after - members_before);
    let clients_cpu_per_write = per_write(own_after - own_before);
    latencies.sort();
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
        members_cpu_per_write,
        clients_cpu_per_write,
    })
}

/// User plus system CPU time of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

pub(crate) fn ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}
