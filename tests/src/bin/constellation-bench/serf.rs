//! The Serf side of the gossip comparison: N `serf agent` processes with Serf's default
//! (LAN) timing, bound to one loopback address, joined through the first. The
//! observers (every `observer_stride`-th agent) run a `member-failed` event handler
//! that appends the wall-clock time and the failed member's name to one file, so the
//! first report of a failure by an observer is known to the clock's precision, as the
//! Constellation side knows it from the same observers' events. Not every agent: a
//! handler is a shell and a `date` per agent and failure, and 200 of them at once
//! starve this machine.

use crate::iptables::AddressCounter;
use crate::peers::{PeerProcess, find_binary, free_ports, version_line};
use anyhow::Context;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Longest wait for a killed member's failure report, and for its restart to be seen.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Options {
    pub members: usize,
    /// Agents whose index is a multiple of this report failures.
    pub observer_stride: usize,
    /// Quiet time after every member sees all the others, before bytes are counted.
    pub settle: Duration,
    /// Time between two agents' starts.
    pub join_pace: Duration,
    pub steady: Duration,
    pub trials: usize,
    pub bind: IpAddr,
}

/// What one run measured.
pub struct Measured {
    /// IP bytes per second per member, as iptables counts them.
    pub bytes_per_second: f64,
    /// Kill to the first failure report by any other member, per trial.
    pub detection: Vec<Duration>,
    /// Failure reports of members that were not killed.
    pub false_positives: usize,
    pub version: String,
}

struct Agent {
    process: Option<PeerProcess>,
    name: String,
    port: u16,
    rpc_port: u16,
}

pub async fn measure(options: &Options, dir: &Path) -> anyhow::Result<Measured> {
    let serf = find_binary("serf", "serf")?;
    let version = version_line(&serf, "version");
    let events = dir.join("failed-events.log");
    let handler = dir.join("on-member-failed.sh");
    // Serf hands the handler one line per failed member: name, address, role, tags.
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\nt=$(date +%s.%N)\nwhile read -r name rest; do echo \"$t $name\"; done >> '{}'\n",
            events.display()
        ),
    )?;
    std::fs::set_permissions(
        &handler,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let counter = AddressCounter::install(options.bind)?;
    let mut cluster = Cluster {
        serf,
        dir: dir.to_owned(),
        handler,
        bind: options.bind,
        observer_stride: options.observer_stride.max(1),
        agents: Vec::new(),
    };
    let measured = cluster.run(options, &counter, &events).await;
    cluster.stop().await;
    let (bytes_per_second, detection, false_positives) = measured?;
    Ok(Measured {
        bytes_per_second,
        detection,
        false_positives,
        version,
    })
}

struct Cluster {
    serf: PathBuf,
    dir: PathBuf,
    handler: PathBuf,
    bind: IpAddr,
    observer_stride: usize,
    agents: Vec<Agent>,
}

impl Cluster {
    async fn run(
        &mut self,
        options: &Options,
        counter: &AddressCounter,
        events: &Path,
    ) -> anyhow::Result<(f64, Vec<Duration>, usize)> {
        let n = options.members;
        let ports = free_ports(2 * n)?;
        for i in 0..n {
            self.agents.push(Agent {
                process: None,
                name: format!("serf-{i:03}"),
                port: ports[2 * i],
                rpc_port: ports[2 * i + 1],
            });
            self.start(i)?;
            if i == 0 {
                self.wait_alive(0, 1, Duration::from_secs(10)).await?;
            }
            tokio::time::sleep(options.join_pace).await;
        }
        let started = Instant::now();
        for observer in [0, n / 2, n - 1] {
            self.wait_alive(observer, n, Duration::from_secs(300))
                .await?;
        }
        println!(
            "  serf: all {n} members alive at members 0, {}, {} {:.1?} after the last started",
            n / 2,
            n - 1,
            started.elapsed()
        );
        tokio::time::sleep(options.settle).await;

        let before = counter.bytes()?;
        let steady_started = Instant::now();
        tokio::time::sleep(options.steady).await;
        let bytes = counter.bytes()? - before;
        let bytes_per_second = bytes as f64 / steady_started.elapsed().as_secs_f64() / n as f64;
        println!("  serf: steady state, per member, iptables {bytes_per_second:.0} B/s");

        let mut detection = Vec::new();
        let mut kills: Vec<(String, f64)> = Vec::new();
        for (trial, victim) in crate::peers::victims(n, options.trials).enumerate() {
            let name = self.agents[victim].name.clone();
            let killed_at = unix_now();
            self.agents[victim]
                .process
                .as_mut()
                .context("victim running")?
                .kill()
                .await?;
            kills.push((name.clone(), killed_at));
            let reported = self.wait_report(events, &name, killed_at).await?;
            let took = Duration::from_secs_f64((reported - killed_at).max(0.0));
            println!(
                "  serf trial {:>2}: killed {name}; first failure report {took:>8.2?}",
                trial + 1
            );
            detection.push(took);
            self.start(victim)?;
            self.wait_alive(0, n, TRIAL_TIMEOUT).await?;
        }
        let false_positives = read_reports(events)?
            .iter()
            .filter(|(at, name)| {
                !kills
                    .iter()
                    .any(|(killed, k)| killed == name && *at >= *k && *at - *k < 120.0)
            })
            .count();
        Ok((bytes_per_second, detection, false_positives))
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let agent = &self.agents[i];
        let mut args = vec![
            "agent".to_string(),
            "-node".into(),
            agent.name.clone(),
            "-bind".into(),
            format!("{}:{}", self.bind, agent.port),
            "-rpc-addr".into(),
            format!("127.0.0.1:{}", agent.rpc_port),
            "-log-level".into(),
            "err".into(),
        ];
        if i.is_multiple_of(self.observer_stride) {
            args.extend([
                "-event-handler".into(),
                format!("member-failed={}", self.handler.display()),
            ]);
        }
        if i > 0 {
            let seed = format!("{}:{}", self.bind, self.agents[0].port);
            args.extend([
                "-retry-join".into(),
                seed,
                "-retry-interval".into(),
                "1s".into(),
            ]);
        }
        let process = PeerProcess::spawn(&agent.name, &self.serf, &args, &self.dir)?;
        self.agents[i].process = Some(process);
        Ok(())
    }

    /// Waits until member `observer` lists `count` members alive.
    async fn wait_alive(
        &self,
        observer: usize,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let rpc = format!("127.0.0.1:{}", self.agents[observer].rpc_port);
        loop {
            let output = tokio::process::Command::new(&self.serf)
                .args(["members", "-rpc-addr", &rpc, "-status", "alive"])
                .output()
                .await?;
            let alive = String::from_utf8_lossy(&output.stdout).lines().count();
            if output.status.success() && alive == count {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "serf member {observer} sees {alive} of {count} members alive after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The time of the first failure report of `name` after `since`.
    async fn wait_report(&self, events: &Path, name: &str, since: f64) -> anyhow::Result<f64> {
        let deadline = Instant::now() + TRIAL_TIMEOUT;
        loop {
            let first = read_reports(events)?
                .into_iter()
                .filter(|(at, reported)| reported == name && *at >= since)
                .map(|(at, _)| at)
                .min_by(f64::total_cmp);
            if let Some(at) = first {
                return Ok(at);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no serf member reported {name} failed within {TRIAL_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) {
        for agent in &mut self.agents {
            if let Some(mut process) = agent.process.take() {
                process.stop(Duration::from_secs(5)).await;
            }
        }
    }
}

/// `(unix time, failed member)` per line the handlers wrote.
fn read_reports(events: &Path) -> anyhow::Result<Vec<(f64, String)>> {
    let text = match std::fs::read_to_string(events) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let (at, name) = line.split_once(' ')?;
            Some((at.parse().ok()?, name.trim().to_owned()))
        })
        .collect())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
