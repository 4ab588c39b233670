//! `constellation-bench`: measurements of Constellation that print their figures.
//!
//! `constellation-bench compare [--sections raft,containers] [--rounds 3]`: Constellation
//! beside etcd and the Docker CLI, interleaved, with medians and ratios; one table and
//! a JSON file (see `compare.rs`).
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
use constellation_tests::binaries::set_echo_logs;
use std::time::Duration;

mod compare;
mod containers;
mod etcd;
mod failover;
mod gossip;
mod gossip_member;
mod gossip_system;
mod iptables;
mod load;
mod peers;
mod rest;
mod scheduler;
mod serf;
mod traefik;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Constellation beside etcd and the Docker CLI on this machine, interleaved; prints
    /// one table and writes a JSON file.
    Compare(compare::Options),
    /// Committed writes per second and latency of the Raft control plane.
    Raft {
        /// Seconds of load per concurrency level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
        clients: Vec<usize>,
        /// Echo the members' log lines to stderr (snapshots, elections).
        #[arg(long)]
        logs: bool,
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
    /// One agent-like membership process (gossip and control-plane session, no Docker)
    /// of the system-level gossip comparison; started by `compare`, stops when its
    /// stdin closes.
    #[command(hide = true)]
    GossipMember(gossip_member::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().bench {
        Bench::Compare(options) => compare::run(options).await,
        Bench::GossipMember(args) => gossip_member::run(args).await,
        Bench::Raft {
            seconds,
            clients,
            logs,
        } => raft(Duration::from_secs(seconds), &clients, logs).await,
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
        } => traefik::run(services, replicas, seconds, &clients, changes)
            .await
            .map(drop),
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
                settle: Duration::ZERO,
                join_pace: Duration::from_millis(20),
                duration,
                trials,
                steady,
                probe_period,
                suspect_to_down,
                local_health: local_health != "off",
                bind: std::net::Ipv4Addr::LOCALHOST.into(),
                iptables: false,
            })
            .await
        }
    }
}

async fn raft(duration: Duration, levels: &[usize], logs: bool) -> anyhow::Result<()> {
    set_echo_logs(logs);
    let dir = tempfile::tempdir()?;
    let cluster = load::Cluster::start(dir.path()).await?;
    let leader = &cluster.leader_addr;
    println!("3 members on loopback, leader at {leader}; {duration:?} per level");
    let pids = cluster.pids();
    let mut results = Vec::new();
    for load in [load::Load::Writes, load::Load::StaleReads] {
        for &clients in levels {
            results.push(load::run_level(leader, &pids, load, clients, duration).await?);
        }
    }
    println!();
    load::print_levels(&results);
    cluster.stop().await;
    Ok(())
}

/// The 1-, 5- and 15-minute load averages, as /proc/loadavg says them.
pub(crate) fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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
