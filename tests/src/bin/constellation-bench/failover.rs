//! `constellation-bench failover`: the multi-host harness with 3 hosts and a service of
//! 2 health-checked replicas, one per node. Each trial kills (SIGKILL, as a power cut:
//! agent, dockerd and containers) a host running a replica, and measures the time
//! until the control plane declares the node down and until the replacement runs
//! healthy on the third host; then it brings the host back and waits until exactly two
//! replicas run again. Prints p50 and p99 of both.

use constellation_proto::v1 as pb;
use constellation_tests::failover::{Cluster, node_name};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

pub async fn run(trials: usize) -> anyhow::Result<()> {
    let Some(mut cluster) = Cluster::start_or_skip("bench-failover", 3).await? else {
        anyhow::bail!("the multi-host harness cannot run here (it needs root and iptables)");
    };
    let result = trials_on(&mut cluster, trials).await;
    cluster.teardown().await?;
    let (down, healthy) = result?;
    println!("failover over {trials} trials (3 hosts, 2 replicas, health check every 250 ms):");
    println!(
        "  kill -> node declared down:     p50 {:>6.2} s  p99 {:>6.2} s",
        percentile(&down, 50.0),
        percentile(&down, 99.0)
    );
    println!(
        "  kill -> replacement healthy:    p50 {:>6.2} s  p99 {:>6.2} s",
        percentile(&healthy, 50.0),
        percentile(&healthy, 99.0)
    );
    Ok(())
}

async fn trials_on(cluster: &mut Cluster, trials: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    cluster.apply_service(2).await?;
    let (mut down, mut healthy) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        let before = cluster.wait_healthy(2, &[], WAIT).await?;
        // Alternate which replica's host dies.
        let mut hosts: Vec<usize> = before
            .values()
            .map(|a| cluster.host_of(a))
            .collect::<anyhow::Result<_>>()?;
        hosts.sort_unstable();
        let victim = hosts[trial % hosts.len()];
        let name = node_name(victim);
        let killed = Instant::now();
        cluster.kill_host(victim).await?;
        cluster.wait_node(&name, pb::NodeStatus::Down, WAIT).await?;
        let declared = killed.elapsed();
        cluster
            .wait_healthy(2, std::slice::from_ref(&name), WAIT)
            .await?;
        let replaced = killed.elapsed();
        eprintln!(
            "trial {:>2}: {name} down after {:.2} s, replacement healthy after {:.2} s",
            trial + 1,
            declared.as_secs_f64(),
            replaced.as_secs_f64()
        );
        down.push(declared.as_secs_f64());
        healthy.push(replaced.as_secs_f64());
        cluster.restart_host(victim).await?;
        cluster
            .wait_node(&name, pb::NodeStatus::Ready, WAIT)
            .await?;
        cluster
            .wait_exactly_running(2, WAIT, Duration::from_millis(500))
            .await?;
    }
    Ok((down, healthy))
}

/// The `p`th percentile (nearest rank) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
