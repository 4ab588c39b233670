//! The containers benchmark: Constellation's agent against `docker run -d`, both a
//! sequential shell loop and `xargs -P 8`, in interleaved rounds; then the agent's RSS
//! with the containers running and its CPU use while idle.

use crate::{cpu_ticks, ticks_per_second};
use anyhow::Context;
use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use constellation_tests::binaries::{Agent, ControlPlane, Start, set_echo_logs};
use constellation_tests::docker;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const BASELINE_LABEL: &str = "constellation.bench";

/// Rounds of (sequential loop, parallel loop, Constellation), interleaved so a change
/// in the machine's load hits all three alike.
const ROUNDS: usize = 2;
/// Longest the removal of one round's containers may take (about 10 s when the engine is well).
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Concurrency of the parallel baseline (the agent's default start concurrency).
pub const PARALLEL: usize = 8;

/// The times of each round, and the agent's resources after the last.
pub struct Measured {
    pub sequential: Vec<Duration>,
    pub parallel: Vec<Duration>,
    pub ours: Vec<Duration>,
    pub agent_rss_kib: u64,
    /// Percent of one CPU over 10 idle seconds.
    pub agent_idle_cpu: f64,
}

pub async fn run(count: usize) -> anyhow::Result<()> {
    let m = measure(count, ROUNDS).await?;
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let (seq, par, con) = (mean(&m.sequential), mean(&m.parallel), mean(&m.ours));
    println!("mean of {ROUNDS} rounds:");
    println!("  docker run loop:           {seq:>8.2?}");
    println!("  docker run, xargs -P {PARALLEL}:    {par:>8.2?}");
    println!(
        "  constellation (1 agent):   {con:>8.2?}  ({:.2}x the loop, {:.2}x the parallel loop)",
        con.as_secs_f64() / seq.as_secs_f64(),
        con.as_secs_f64() / par.as_secs_f64()
    );
    println!(
        "  agent RSS with {count} running: {:.1} MiB",
        m.agent_rss_kib as f64 / 1024.0
    );
    println!("  agent idle CPU over 10 s:  {:.2}%", m.agent_idle_cpu);
    Ok(())
}

/// `rounds` interleaved rounds of the loop, the parallel loop and Constellation, each
/// starting `count` containers; every container is removed after its round.
pub async fn measure(count: usize, rounds: usize) -> anyhow::Result<Measured> {
    set_echo_logs(false);
    docker::connect()
        .await
        .context("the containers bench needs Docker")?;
    let image = docker::test_image();

    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(1, &dir.path().join("cp1"), Start::Bootstrap, None).await?;
    let node = docker::unique_name("bench-node");
    let agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets")).await?;
    let mut client = crate::load::connect(&cp.api_addr)?;
    let pid = agent.process.pid().context("agent pid")?;

    let mut sequential = Vec::new();
    let mut parallel = Vec::new();
    let mut ours = Vec::new();
    let mut rss_kib = 0;
    let mut idle_cpu = 0.0;
    println!("{count} containers on one Docker engine, {rounds} interleaved rounds");
    for round in 0..rounds {
        let load = loadavg();
        let t = docker_run_loop(count, &image).await?;
        remove_labelled(BASELINE_LABEL, "1").await?;
        println!("  round {round}: docker run loop          {t:>8.2?}  (load {load})");
        sequential.push(t);

        let load = loadavg();
        let t = docker_run_parallel(count, &image).await?;
        remove_labelled(BASELINE_LABEL, "1").await?;
        println!("  round {round}: docker run, xargs -P {PARALLEL}   {t:>8.2?}  (load {load})");
        parallel.push(t);

        let load = loadavg();
        let (t, applied) = deploy(&mut client, count, round, &image).await?;
        println!(
            "  round {round}: constellation (1 agent)  {t:>8.2?}  (load {load}; the {count} applies took {applied:.2?})"
        );
        ours.push(t);
        if round + 1 == rounds {
            rss_kib = self::rss_kib(pid)?;
            let cpu_before = cpu_ticks(pid)?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            idle_cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_second() / 10.0 * 100.0;
        }
        for i in 0..count {
            client
                .delete_service(pb::DeleteServiceRequest {
                    name: service_name(round, i),
                })
                .await?;
        }
        // The agent stops what it ran before the next round starts.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !docker::containers_with_label("constellation.node", &node)
            .await?
            .is_empty()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    remove_labelled("constellation.node", &node).await?;
    Ok(Measured {
        sequential,
        parallel,
        ours,
        agent_rss_kib: rss_kib,
        agent_idle_cpu: idle_cpu,
    })
}

fn service_name(round: usize, i: usize) -> String {
    format!("bench-{round}-{i}")
}

/// The 1-minute load average, as /proc/loadavg says.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Applies `count` single-container services and returns the time until all run,
/// and how long the applies alone took.
async fn deploy(
    client: &mut ControlPlaneClient<Channel>,
    count: usize,
    round: usize,
    image: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    for i in 0..count {
        let spec = pb::ServiceSpec {
            name: service_name(round, i),
            image: image.to_owned(),
            command: ["sleep", "3600"].map(String::from).to_vec(),
            stop_grace_period: Some(pbjson_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        client
            .apply_service(pb::ApplyServiceRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await?;
    }
    let applied = started.elapsed();
    let prefix = format!("bench-{round}-");
    loop {
        let allocs = client
            .list_allocations(pb::ListAllocationsRequest::default())
            .await?
            .into_inner()
            .allocations;
        let running = allocs
            .iter()
            .filter(|a| {
                a.service_name.starts_with(&prefix)
                    && a.status
                        .as_ref()
                        .is_some_and(|s| s.state() == pb::AllocationState::Running)
            })
            .count();
        if running == count {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {running} of {count} running after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((started.elapsed(), applied))
}

/// Starts `count` containers with the Docker CLI, `PARALLEL` at a time (`xargs -P`),
/// and returns the time until the last one is running.
async fn docker_run_parallel(count: usize, image: &str) -> anyhow::Result<Duration> {
    let script = format!(
        "seq {count} | xargs -P {PARALLEL} -I{{}} docker run -d --label {BASELINE_LABEL}=1 {image} sleep 3600 >/dev/null"
    );
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "the parallel docker run failed");
    Ok(started.elapsed())
}

/// Starts `count` containers one after the other with the Docker CLI, as an operator's
/// script would, and returns the time until the last one is running.
async fn docker_run_loop(count: usize, image: &str) -> anyhow::Result<Duration> {
    let script = format!(
        "for i in $(seq {count}); do docker run -d --label {BASELINE_LABEL}=1 {image} sleep 3600 >/dev/null || exit 1; done"
    );
    let started = Instant::now();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "the docker run loop failed");
    Ok(started.elapsed())
}

/// Removes the containers labelled `key=value`, `PARALLEL` per `docker rm -f` call.
/// One call for all of them makes the CLI remove 100 at once, and Docker 20.10's engine
/// has twice stopped answering starts and removals after such a call (once in this
/// section of a full run). A stuck engine then fails the section (and the rest of the
/// run goes on) instead of hanging it.
async fn remove_labelled(key: &str, value: &str) -> anyhow::Result<()> {
    let list = format!("docker ps -aq --filter label={key}={value}");
    let script = format!("{list} | xargs -r -n {PARALLEL} docker rm -f >/dev/null");
    let removal = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .kill_on_drop(true)
        .status();
    tokio::time::timeout(REMOVAL_TIMEOUT, removal)
        .await
        .with_context(|| {
            format!(
                "removing the containers labelled {key}={value} took over {REMOVAL_TIMEOUT:?}: \
                 the Docker engine stopped answering (restart dockerd)"
            )
        })??;
    let left = tokio::process::Command::new("sh")
        .args(["-c", &list])
        .output()
        .await?;
    let left = String::from_utf8_lossy(&left.stdout).lines().count();
    anyhow::ensure!(
        left == 0,
        "{left} containers labelled {key}={value} are left after removing them"
    );
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}
