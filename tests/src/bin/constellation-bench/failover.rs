//! `constellation-bench failover`: the multi-host harness with 3 hosts and a service of
//! 2 health-checked replicas, one per node. Each trial kills (SIGKILL, as a power cut:
//! agent, dockerd and containers) a host running a replica, and measures the time
//! until the control plane declares the node down and until the replacement runs
//! healthy on the third host, and until a gateway's Traefik document (polled every
//! 20 ms, as a Traefik with a short poll interval would) lists the replacement's server;
//! then it brings the host back and waits until exactly two replicas run again. Prints
//! p50 and p99 of each.

use constellation_proto::v1 as pb;
use constellation_tests::binaries::Gateway;
use constellation_tests::failover::{Cluster, node_name};
use constellation_tests::http::HttpRequest;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const TRAEFIK_POLL: Duration = Duration::from_millis(20);

/// Seconds from each kill to each milestone.
pub struct Measured {
    pub down: Vec<f64>,
    pub healthy: Vec<f64>,
    pub traefik: Vec<f64>,
}

pub async fn run(trials: usize) -> anyhow::Result<()> {
    let m = measure(trials).await?;
    println!("failover over {trials} trials (3 hosts, 2 replicas, health check every 250 ms):");
    for (what, values) in [
        ("node declared down", &m.down),
        ("replacement healthy", &m.healthy),
        ("in the Traefik document", &m.traefik),
    ] {
        println!(
            "  kill -> {what:<24} p50 {:>6.2} s  p99 {:>6.2} s",
            percentile(values, 50.0),
            percentile(values, 99.0)
        );
    }
    Ok(())
}

pub async fn measure(trials: usize) -> anyhow::Result<Measured> {
    let Some(mut cluster) = Cluster::start_or_skip("bench-failover", 3).await? else {
        anyhow::bail!("the multi-host harness cannot run here (it needs root and iptables)");
    };
    let result = async {
        let mut gateway = Gateway::start(&[&cluster.cp.api_addr], &[]).await?;
        let result = trials_on(&mut cluster, &gateway.addr, trials).await;
        let _ = gateway.process.terminate(Duration::from_secs(10)).await;
        result
    }
    .await;
    cluster.teardown().await?;
    result
}

/// Whether the Traefik document at `gateway` lists a server on `host`.
async fn traefik_lists(gateway: &str, host: Ipv4Addr) -> anyhow::Result<bool> {
    let answer = HttpRequest::new("GET", "/traefik").send(gateway).await?;
    if answer.status != 200 {
        return Ok(false);
    }
    let doc = answer.json();
    let needle = format!("//{host}:");
    let services = doc["http"]["services"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Ok(services.values().any(|service| {
        service["loadBalancer"]["servers"]
            .as_array()
            .is_some_and(|servers| {
                servers
                    .iter()
                    .any(|s| s["url"].as_str().is_some_and(|u| u.contains(&needle)))
            })
    }))
}

async fn wait_traefik_lists(gateway: &str, host: Ipv4Addr) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !traefik_lists(gateway, host).await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Traefik document did not list a server on {host} within {WAIT:?}"
        );
        tokio::time::sleep(TRAEFIK_POLL).await;
    }
    Ok(())
}

async fn trials_on(
    cluster: &mut Cluster,
    gateway: &str,
    trials: usize,
) -> anyhow::Result<Measured> {
    cluster.apply_service(2).await?;
    let mut m = Measured {
        down: Vec::new(),
        healthy: Vec::new(),
        traefik: Vec::new(),
    };
    for trial in 0..trials {
        let before = cluster.wait_healthy(2, &[], WAIT).await?;
        // Alternate which replica's host dies.
        let mut hosts: Vec<usize> = before
            .values()
            .map(|a| cluster.host_of(a))
            .collect::<anyhow::Result<_>>()?;
        hosts.sort_unstable();
        let victim = hosts[trial % hosts.len()];
        // With one replica per node at most, the replacement goes to the third host.
        let spare = (0..3)
            .find(|h| !hosts.contains(h))
            .ok_or_else(|| anyhow::anyhow!("both replicas on one host"))?;
        let spare_addr = cluster.hosts.hosts()[spare].addr();
        wait_traefik_lists(gateway, cluster.hosts.hosts()[victim].addr()).await?;
        let name = node_name(victim);
        let killed = Instant::now();
        // Watched while the host's processes are still being killed: waiting for that
        // first put the bench's own delay into all three figures (a kill that took 2 s
        // read as 2.00 s for each).
        let killing = cluster.start_kill_host(victim);
        let in_traefik = async {
            wait_traefik_lists(gateway, spare_addr).await?;
            anyhow::Ok(killed.elapsed())
        };
        let milestones = async {
            cluster.wait_node(&name, pb::NodeStatus::Down, WAIT).await?;
            let declared = killed.elapsed();
            cluster
                .wait_healthy(2, std::slice::from_ref(&name), WAIT)
                .await?;
            anyhow::Ok((declared, killed.elapsed()))
        };
        let ((), traefik, (declared, replaced)) =
            tokio::try_join!(killing, in_traefik, milestones)?;
        cluster.hosts.host_mut(victim).reap_after_kill();
        eprintln!(
            "trial {:>2}: {name} down after {:.2} s, replacement healthy after {:.2} s, \
             in the Traefik document after {:.2} s",
            trial + 1,
            declared.as_secs_f64(),
            replaced.as_secs_f64(),
            traefik.as_secs_f64()
        );
        m.down.push(declared.as_secs_f64());
        m.healthy.push(replaced.as_secs_f64());
        m.traefik.push(traefik.as_secs_f64());
        cluster.restart_host(victim).await?;
        cluster
            .wait_node(&name, pb::NodeStatus::Ready, WAIT)
            .await?;
        cluster
            .wait_exactly_running(2, WAIT, Duration::from_millis(500))
            .await?;
    }
    Ok(m)
}

/// The `p`th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
