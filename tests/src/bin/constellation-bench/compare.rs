//! `constellation-bench compare`: Constellation beside the real systems operators would
//! run instead, on this machine, in the same run. Each comparison runs both sides
//! interleaved (A, B, A, B...) and reports medians and the ratio of Constellation's
//! median to the peer's. The runner installs nothing: it checks for each peer first
//! and says how to install what is missing. It prints one table and writes the same
//! figures, with every round's raw values, to a JSON file.
//!
//! Sections:
//! - `raft`: a 3-member Constellation control plane against a 3-member etcd cluster,
//!   both on loopback with fsync on, driven by the same load generator ([`crate::load`])
//!   at each concurrency level.
//! - `gossip`: N Constellation members as the system runs them (one control plane and
//!   N processes each running the agent's gossip member and its control-plane session,
//!   see `gossip_system.rs`) and N Serf agents with Serf's defaults, each side alone on
//!   the machine in turn. Each side's gossip binds its own loopback address and
//!   iptables counts the IP bytes sent from or to it, so both are counted the same
//!   way; our agents' session bytes are counted apart (the control plane's own
//!   address) and reported beside them. Detection is what each system does with a
//!   dead member: from a SIGKILL to our control plane declaring its node DOWN, and to
//!   the first `member-failed` event at one of about 25 Serf observers.
//! - `containers`: N containers started by a shell loop of `docker run -d` (sequential
//!   and `xargs -P 8`) against N single-container services deployed through
//!   Constellation to one agent on the same engine.
//! - `failover` (no peer runs here): the multi-host harness, 3 hosts, host kills; time
//!   to the node declared down, to the replacement healthy and to the replacement in a
//!   gateway's Traefik document.
//! - `traefik` (no peer): the Traefik document of N services x 3 replicas under
//!   concurrent gzip polling, and from a health change to the new document.

use crate::containers;
use crate::etcd::EtcdCluster;
use crate::failover::percentile;
use crate::load::{self, Load};
use crate::peers::find_binary;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Section {
    Raft,
    Gossip,
    Containers,
    Failover,
    Traefik,
}

#[derive(clap::Args)]
pub struct Options {
    /// Comparisons to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raft,gossip,containers,failover,traefik"
    )]
    pub sections: Vec<Section>,
    /// Interleaved rounds of each comparison (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Keep the log lines of every process the run starts in this directory
    /// (`NAME.log`, appended), to explain a slow round afterwards.
    #[arg(long)]
    pub logs_dir: Option<std::path::PathBuf>,
    /// Seconds of load per Raft level and round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Raft concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub clients: Vec<usize>,
    /// Gossip cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    pub gossip_members: Vec<usize>,
    /// Interleaved rounds of the gossip comparison (each side's runs take minutes).
    #[arg(long, default_value_t = 2)]
    pub gossip_rounds: usize,
    /// Steady-state seconds in which gossip bytes are counted, per run.
    #[arg(long, default_value_t = 30)]
    pub gossip_steady: u64,
    /// Kill-and-detect trials per gossip run.
    #[arg(long, default_value_t = 5)]
    pub gossip_trials: usize,
    /// Containers started per round.
    #[arg(long, default_value_t = 100)]
    pub containers: usize,
    /// Host kills in the failover section.
    #[arg(long, default_value_t = 20)]
    pub failover_trials: usize,
    /// Services (3 replicas each) in the Traefik document section.
    #[arg(long, default_value_t = 10_000)]
    pub traefik_services: usize,
    /// Seconds of polling per Traefik level.
    #[arg(long, default_value_t = 5)]
    pub traefik_seconds: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results.json")]
    pub out: PathBuf,
}

/// One line of the summary table. `ratio` is Constellation's median over the peer's.
struct Row {
    section: &'static str,
    metric: String,
    ours: f64,
    peer: Option<f64>,
    unit: &'static str,
    /// The goal as a bound on the ratio (or on our value when there is no peer).
    goal: Goal,
}

#[derive(Clone, Copy)]
enum Goal {
    /// ratio at least this (higher is better).
    RatioAtLeast(f64),
    /// ratio at most this (lower is better).
    RatioAtMost(f64),
    /// Constellation's value at most this (no peer).
    AtMost(f64),
    /// Reported, no goal.
    None,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.peer.filter(|p| *p > 0.0).map(|p| self.ours / p)
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(r) => format!(">= {r:.1}x"),
            Goal::RatioAtMost(r) => format!("<= {r:.1}x"),
            Goal::AtMost(v) => format!("<= {v} {}", self.unit),
            Goal::None => "-".into(),
        }
    }

    fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::RatioAtLeast(r) => self.ratio().map(|x| x >= r),
            Goal::RatioAtMost(r) => self.ratio().map(|x| x <= r),
            Goal::AtMost(v) => Some(self.ours <= v),
            Goal::None => None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "metric": self.metric,
            "unit": self.unit,
            "constellation": self.ours,
            "peer": self.peer,
            "ratio": self.ratio(),
            "goal": self.goal_text(),
            "met": self.met(),
        })
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.rounds >= 1, "--rounds: at least 1");
    anyhow::ensure!(!options.clients.is_empty(), "--clients: at least one level");
    // Every peer is checked before anything starts, so a missing one costs no time.
    for section in &options.sections {
        match section {
            Section::Raft => {
                find_binary("etcd", "etcd-server")?;
            }
            Section::Gossip => {
                find_binary("serf", "serf")?;
                find_binary("iptables", "iptables")?;
                constellation_tests::binaries::binary("constellation-controlplane")?;
            }
            Section::Containers => {
                find_binary("docker", "docker.io")?;
            }
            Section::Failover => {
                find_binary("dockerd", "docker.io")?;
                find_binary("iptables", "iptables")?;
            }
            Section::Traefik => {}
        }
    }
    constellation_tests::binaries::set_echo_logs(false);
    if let Some(dir) = &options.logs_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating --logs-dir {}: {e}", dir.display()))?;
        constellation_tests::binaries::set_log_dir(Some(dir.clone()));
    }
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut rows = Vec::new();
    let mut sections = serde_json::Map::new();
    let mut failed = Vec::new();
    for section in &options.sections {
        let (name, detail) = match section {
            Section::Raft => ("raft", raft(&options, &mut rows).await),
            Section::Gossip => ("gossip", gossip(&options, &mut rows).await),
            Section::Containers => ("containers", containers(&options, &mut rows).await),
            Section::Failover => ("failover", failover(&options, &mut rows).await),
            Section::Traefik => ("traefik", traefik(&options, &mut rows).await),
        };
        // A failed section is reported and recorded; the others still run.
        let detail = detail.unwrap_or_else(|e| {
            eprintln!("{name}: failed: {e:#}");
            failed.push(name);
            json!({ "error": format!("{e:#}") })
        });
        sections.insert(name.into(), detail);
    }
    print_table(&rows);
    let results = json!({
        "started_at": started_at.to_string(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine(),
        "rounds": options.rounds,
        "table": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "sections": sections,
    });
    std::fs::write(&options.out, serde_json::to_vec_pretty(&results)?)?;
    println!("\nresults written to {}", options.out.display());
    anyhow::ensure!(failed.is_empty(), "sections failed: {}", failed.join(", "));
    Ok(())
}

/// One figure (the median over rounds) of one side's levels.
type Figure = fn(&[load::Level]) -> f64;

/// Both clusters run for the whole section; at each level the two take turns.
async fn raft(options: &Options, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let ours = load::Cluster::start(&dir.path().join("constellation")).await?;
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    let etcd = match EtcdCluster::start(&etcd_dir).await {
        Ok(etcd) => etcd,
        Err(e) => {
            ours.stop().await;
            return Err(e);
        }
    };
    let duration = Duration::from_secs(options.seconds);
    println!(
        "raft: 3 Constellation members (leader {}) and 3 etcd members (leader {}, {}) on \
         loopback; {} rounds of {duration:?} per level",
        ours.leader_addr, etcd.leader_addr, etcd.version, options.rounds
    );
    let (our_pids, etcd_pids) = (ours.pids(), etcd.pids());
    let etcd_version = etcd.version.clone();
    let mut levels = Vec::new();
    let measured = async {
        for &clients in &options.clients {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for round in 0..options.rounds {
                let ours = load::run_level(
                    &ours.leader_addr,
                    &our_pids,
                    Load::Writes,
                    clients,
                    duration,
                )
                .await?;
                let peer = load::run_level(
                    &etcd.leader_addr,
                    &etcd_pids,
                    Load::EtcdPuts,
                    clients,
                    duration,
                )
                .await?;
                println!(
                    "  {clients:>3} clients, round {round}: constellation {:>7.0}/s p99 {:>8.2?}   \
                     etcd {:>7.0}/s p99 {:>8.2?}",
                    ours.ops_per_second(),
                    ours.p99,
                    peer.ops_per_second(),
                    peer.p99
                );
                a.push(ours);
                b.push(peer);
            }
            levels.push((clients, a, b));
        }
        anyhow::Ok(())
    }
    .await;
    ours.stop().await;
    etcd.stop().await;
    measured?;

    let mut detail = Vec::new();
    for (clients, a, b) in &levels {
        let throughput = |v: &[load::Level]| median(v.iter().map(|l| l.ops_per_second()));
        let p50 = |v: &[load::Level]| median(v.iter().map(|l| ms(l.p50)));
        let p99 = |v: &[load::Level]| median(v.iter().map(|l| ms(l.p99)));
        let cpu = |v: &[load::Level]| median(v.iter().map(|l| us(l.servers_cpu_per_op)));
        let throughput_goal = if *clients >= 256 { 3.0 } else { 1.0 };
        let figures: [(&str, Figure, &str, Goal); 3] = [
            (
                "writes/s",
                throughput,
                "writes/s",
                Goal::RatioAtLeast(throughput_goal),
            ),
            ("p99 latency", p99, "ms", Goal::None),
            ("servers' CPU per write", cpu, "µs", Goal::None),
        ];
        for (metric, figure, unit, goal) in figures {
            rows.push(Row {
                section: "raft",
                metric: format!("{metric}, {clients} clients"),
                ours: figure(a),
                peer: Some(figure(b)),
                unit,
                goal,
            });
        }
        let side = |v: &[load::Level]| {
            let rounds = |f: fn(&load::Level) -> f64| v.iter().map(f).collect::<Vec<_>>();
            json!({
                "writes_per_second": rounds(load::Level::ops_per_second),
                "p50_ms": rounds(|l| ms(l.p50)),
                "p99_ms": rounds(|l| ms(l.p99)),
                "errors": rounds(|l| l.errors as f64),
                "servers_cpu_per_write_us": rounds(|l| us(l.servers_cpu_per_op)),
                "clients_cpu_per_write_us": rounds(|l| us(l.clients_cpu_per_op)),
                "median": {
                    "writes_per_second": throughput(v),
                    "p50_ms": p50(v),
                    "p99_ms": p99(v),
                    "servers_cpu_per_write_us": cpu(v),
                },
            })
        };
        detail.push(json!({
            "clients": clients,
            "constellation": side(a),
            "etcd": side(b),
        }));
    }
    Ok(json!({
        "etcd_version": etcd_version,
        "seconds_per_level": options.seconds,
        "value_bytes": 512,
        "levels": detail,
    }))
}

/// Quiet time after a gossip cluster converged before its bytes are counted: what
/// joining sent (Serf's join events, our feeds) is not steady state.
const GOSSIP_SETTLE: Duration = Duration::from_secs(10);

/// Time between two members' starts, the same on both sides. 200 Serf agents started
/// 20 ms apart on this machine fall into a storm of failed probes they do not leave
/// (thousands of false failure reports, both CPUs busy); 100 ms apart they converge and
/// idle at half a CPU.
const GOSSIP_JOIN_PACE: Duration = Duration::from_millis(100);

/// Every k-th Serf agent observes failures, about 25 in all (our observer is the
/// control plane, which hears from every agent).
fn observer_stride(members: usize) -> usize {
    members.div_ceil(25).max(1)
}

/// Loopback addresses of the two gossip sides, so iptables tells their bytes apart, and
/// of our control plane's API, so the agents' sessions are counted apart.
const OUR_GOSSIP_ADDR: [u8; 4] = [127, 0, 0, 2];
const SERF_ADDR: [u8; 4] = [127, 0, 0, 3];
const OUR_CONTROLPLANE_ADDR: [u8; 4] = [127, 0, 0, 4];

/// What each side's detection time is, for the table and the results file.
const OUR_DETECTION: &str =
    "SIGKILL of a member process to the control plane's DOWN for its node (its Watch stream)";
const SERF_DETECTION: &str =
    "SIGKILL of an agent to the first member-failed event at one of the observers";

async fn gossip(options: &Options, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let steady = Duration::from_secs(options.gossip_steady);
    let mut detail = Vec::new();
    let mut serf_version = String::new();
    for &members in &options.gossip_members {
        anyhow::ensure!(members >= 3, "--gossip-members: at least 3 per cluster");
        let (mut ours, mut serf) = (Vec::new(), Vec::new());
        for round in 0..options.gossip_rounds {
            println!("gossip: {members} members, round {round}: constellation");
            let dir = tempfile::tempdir()?;
            let our_options = crate::gossip_system::Options {
                members,
                settle: GOSSIP_SETTLE,
                join_pace: GOSSIP_JOIN_PACE,
                steady,
                trials: options.gossip_trials,
                gossip_bind: OUR_GOSSIP_ADDR.into(),
                controlplane_bind: OUR_CONTROLPLANE_ADDR.into(),
            };
            match crate::gossip_system::measure(&our_options, dir.path()).await {
                Ok(measured) => ours.push(measured),
                Err(e) => {
                    // The members' logs are what explains a failure: keep them.
                    let kept = dir.keep();
                    anyhow::bail!("{e:#} (the members' logs are kept in {})", kept.display());
                }
            }
            println!("gossip: {members} members, round {round}: serf");
            let dir = tempfile::tempdir()?;
            let serf_options = crate::serf::Options {
                members,
                settle: GOSSIP_SETTLE,
                join_pace: GOSSIP_JOIN_PACE,
                steady,
                trials: options.gossip_trials,
                bind: SERF_ADDR.into(),
                observer_stride: observer_stride(members),
            };
            let measured = crate::serf::measure(&serf_options, dir.path()).await?;
            serf_version = measured.version.clone();
            serf.push(measured);
        }
        let our_bytes: Vec<f64> = ours.iter().map(|m| m.gossip_bytes_per_second).collect();
        let our_session_bytes: Vec<f64> = ours.iter().map(|m| m.session_bytes_per_second).collect();
        let serf_bytes: Vec<f64> = serf.iter().map(|m| m.bytes_per_second).collect();
        let our_reasons: Vec<&str> = ours
            .iter()
            .flat_map(|m| m.reasons.iter().map(String::as_str))
            .collect();
        let our_detection: Vec<f64> = ours
            .iter()
            .flat_map(|m| m.detection.iter().map(|d| d.as_secs_f64()))
            .collect();
        let serf_detection: Vec<f64> = serf
            .iter()
            .flat_map(|m| m.detection.iter().map(|d| d.as_secs_f64()))
            .collect();
        let our_false_downs: Vec<&str> = ours
            .iter()
            .flat_map(|m| m.false_downs.iter().map(String::as_str))
            .collect();
        let our_false = our_false_downs.len();
        let serf_false: usize = serf.iter().map(|m| m.false_positives).sum();
        let our_total_bytes = our_bytes.iter().zip(&our_session_bytes).map(|(g, s)| g + s);
        for (metric, ours, peer, goal) in [
            (
                "gossip bytes/s per member",
                median(our_bytes.iter().copied()),
                Some(median(serf_bytes.iter().copied())),
                Goal::RatioAtMost(1.0),
            ),
            (
                "agent session bytes/s per member (ours only)",
                median(our_session_bytes.iter().copied()),
                None,
                Goal::None,
            ),
            (
                "gossip + session bytes/s per member",
                median(our_total_bytes),
                Some(median(serf_bytes.iter().copied())),
                Goal::None,
            ),
        ] {
            rows.push(Row {
                section: "gossip",
                metric: format!("{metric}, {members} members"),
                ours,
                peer,
                unit: "B/s",
                goal,
            });
        }
        for (metric, p, goal) in [("p50", 50.0, Goal::None), ("p99", 99.0, Goal::AtMost(2.5))] {
            rows.push(Row {
                section: "gossip",
                metric: format!(
                    "kill to down {metric} (ours: control plane DOWN, serf: first \
                     member-failed), {members} members"
                ),
                ours: percentile(&our_detection, p),
                peer: Some(percentile(&serf_detection, p)),
                unit: "s",
                goal,
            });
        }
        rows.push(Row {
            section: "gossip",
            metric: format!("false positives, {members} members"),
            ours: our_false as f64,
            peer: Some(serf_false as f64),
            unit: "",
            goal: Goal::AtMost(0.0),
        });
        detail.push(json!({
            "members": members,
            "constellation": {
                "bytes_per_second_per_member": our_bytes,
                "session_bytes_per_second_per_member": our_session_bytes,
                "detection": OUR_DETECTION,
                "detection_s": our_detection,
                "down_reasons": our_reasons,
                "false_positives": our_false,
                "false_downs": our_false_downs,
            },
            "serf": {
                "bytes_per_second_per_member": serf_bytes,
                "detection": SERF_DETECTION,
                "detection_s": serf_detection,
                "false_positives": serf_false,
            },
        }));
    }
    Ok(json!({
        "serf_version": serf_version,
        "steady_seconds": options.gossip_steady,
        "trials_per_run": options.gossip_trials,
        "rounds": options.gossip_rounds,
        "byte_counting": "iptables, IP packets from or to each side's own gossip loopback \
            address; our agents' sessions apart, as the packets from or to the control \
            plane's API address (both directions), in session_bytes_per_second_per_member",
        "false_positives": "ours: nodes other than the killed one declared DOWN; serf: \
            member-failed events not following a kill of that member; over each whole run",
        "sizes": detail,
    }))
}

async fn containers(options: &Options, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let count = options.containers;
    let m = containers::measure(count, options.rounds).await?;
    let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
    let (seq, par, ours) = (
        median(secs(&m.sequential)),
        median(secs(&m.parallel)),
        median(secs(&m.ours)),
    );
    rows.push(Row {
        section: "containers",
        metric: format!("{count} running, against `docker run` loop"),
        ours,
        peer: Some(seq),
        unit: "s",
        goal: Goal::RatioAtMost(1.0),
    });
    rows.push(Row {
        section: "containers",
        metric: format!(
            "{count} running, against `xargs -P {}` loop",
            containers::PARALLEL
        ),
        ours,
        peer: Some(par),
        unit: "s",
        goal: Goal::RatioAtMost(1.0),
    });
    rows.push(Row {
        section: "containers",
        metric: format!("agent RSS with {count} running"),
        ours: m.agent_rss_kib as f64 / 1024.0,
        peer: None,
        unit: "MiB",
        goal: Goal::AtMost(30.0),
    });
    Ok(json!({
        "count": count,
        "docker_run_loop_s": secs(&m.sequential),
        "docker_run_parallel_s": secs(&m.parallel),
        "constellation_s": secs(&m.ours),
        "agent_rss_kib": m.agent_rss_kib,
        "agent_idle_cpu_percent": m.agent_idle_cpu,
    }))
}

/// No peer runs here; the references are Swarm's (~15 s) and Nomad's (20-30 s) defaults.
async fn failover(options: &Options, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let m = crate::failover::measure(options.failover_trials).await?;
    for (what, values, goal) in [
        ("node declared down", &m.down, Goal::None),
        ("replacement healthy", &m.healthy, Goal::AtMost(3.0)),
        ("replacement in Traefik's document", &m.traefik, Goal::None),
    ] {
        for p in [50.0, 99.0] {
            rows.push(Row {
                section: "failover",
                metric: format!("kill to {what}, p{p:.0}"),
                ours: percentile(values, p),
                peer: None,
                unit: "s",
                goal: if p == 99.0 { goal } else { Goal::None },
            });
        }
    }
    Ok(json!({
        "trials": options.failover_trials,
        "hosts": 3,
        "references_s": {"swarm": 15, "nomad": "20-30"},
        "kill_to_down_s": m.down,
        "kill_to_replacement_healthy_s": m.healthy,
        "kill_to_traefik_document_s": m.traefik,
    }))
}

/// The document of N services x 3 replicas, polled with gzip as Traefik does.
async fn traefik(options: &Options, rows: &mut Vec<Row>) -> anyhow::Result<Value> {
    let services = options.traefik_services;
    let pollers = [1, 8, 32];
    let m = crate::traefik::run(services, 3, options.traefik_seconds, &pollers, 20).await?;
    let mut polls = Vec::new();
    for &(n, gzip, p50, p99) in &m.polls {
        polls.push(json!({"pollers": n, "gzip": gzip, "p50_ms": ms(p50), "p99_ms": ms(p99)}));
        if gzip {
            rows.push(Row {
                section: "traefik",
                metric: format!("GET p99, {services} services, {n} pollers"),
                ours: ms(p99),
                peer: None,
                unit: "ms",
                goal: Goal::AtMost(5.0),
            });
        }
    }
    let changes: Vec<f64> = m.change_to_document.iter().map(|d| ms(*d)).collect();
    rows.push(Row {
        section: "traefik",
        metric: "health change to new document, p50".into(),
        ours: median(changes.iter().copied()),
        peer: None,
        unit: "ms",
        goal: Goal::AtMost(50.0),
    });
    Ok(json!({
        "services": services,
        "replicas": 3,
        "seconds_per_level": options.traefik_seconds,
        "polls": polls,
        "health_change_to_document_ms": changes,
    }))
}

fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.metric.chars().count())
        .max()
        .unwrap_or(0)
        .max(44);
    println!();
    println!(
        "{:<11} {:<width$} {:>14} {:>14} {:>8} {:>10} {:>5}",
        "section", "metric", "constellation", "peer", "ratio", "goal", "met"
    );
    for row in rows {
        let value = |v: f64| format!("{} {}", significant(v), row.unit);
        println!(
            "{:<11} {:<width$} {:>14} {:>14} {:>8} {:>10} {:>5}",
            row.section,
            row.metric,
            value(row.ours),
            row.peer.map(value).unwrap_or_else(|| "-".into()),
            row.ratio()
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            row.goal_text(),
            match row.met() {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            }
        );
    }
}

/// Three significant digits, without exponent.
fn significant(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What the figures ran on.
fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = read("/proc/meminfo");
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "memory_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average_at_start": crate::load_averages(),
    })
}
