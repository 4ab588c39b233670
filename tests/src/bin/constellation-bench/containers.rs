//! The containers benchmark: Constellation's agent against a `docker run -d` loop.

use anyhow::Context;
use constellation_proto::v1 as pb;
use constellation_tests::binaries::{Agent, ControlPlane, Start, set_echo_logs};
use constellation_tests::docker;
use std::time::{Duration, Instant};

const BASELINE_LABEL: &str = "constellation.bench";

pub async fn run(count: usize) -> anyhow::Result<()> {
    set_echo_logs(false);
    docker::connect()
        .await
        .context("the containers bench needs Docker")?;
    let image = docker::test_image();

    let baseline = docker_run_loop(count, &image).await?;
    remove_labelled(BASELINE_LABEL, "1").await?;

    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(1, &dir.path().join("cp1"), Start::Bootstrap, None).await?;
    let node = docker::unique_name("bench-node");
    let agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets")).await?;
    let mut client = super::connect(&cp.api_addr)?;
    let started = Instant::now();
    for i in 0..count {
        let spec = pb::ServiceSpec {
            name: format!("bench-{i}"),
            image: image.clone(),
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
    loop {
        let allocs = client
            .list_allocations(pb::ListAllocationsRequest::default())
            .await?
            .into_inner()
            .allocations;
        let running = allocs
            .iter()
            .filter(|a| {
                a.status
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
    let constellation = started.elapsed();
    let pid = agent.process.pid().context("agent pid")?;
    let rss_kib = rss_kib(pid)?;
    let cpu_before = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_second() / 10.0 * 100.0;

    for i in 0..count {
        client
            .delete_service(pb::DeleteServiceRequest {
                name: format!("bench-{i}"),
            })
            .await?;
    }
    println!("{count} containers on one Docker engine");
    println!("  docker run -d loop:        {:>8.2?}", baseline);
    println!(
        "  constellation (1 agent):   {:>8.2?}  ({:.2}x the loop; the {count} applies took {applied:.2?})",
        constellation,
        constellation.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  agent RSS with {count} running: {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    println!("  agent idle CPU over 10 s:  {idle_cpu:.2}%");
    // Give the agent time to stop what it ran before the processes go.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !docker::containers_with_label("constellation.node", &node)
        .await?
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    remove_labelled("constellation.node", &node).await?;
    Ok(())
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

async fn remove_labelled(key: &str, value: &str) -> anyhow::Result<()> {
    let script =
        format!("docker ps -aq --filter label={key}={value} | xargs -r docker rm -f >/dev/null");
    tokio::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .await?;
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

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on.
    100.0
}
