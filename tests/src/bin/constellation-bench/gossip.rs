//! The gossip benchmark: N foca members (the agent's gossip module) in this process on
//! loopback UDP. It measures steady-state bytes per second per member, the time from
//! killing a member until others report it down, and false positives (a member that
//! was not killed reported down) over the whole run.
//!
//! Bytes are counted where each member's socket sends: UDP payloads (our 8-byte
//! envelope included). `iptables` accounting, which a Serf comparison must use, counts
//! IP packets: the same payloads plus 28 bytes of IPv4 and UDP headers per datagram;
//! both figures are printed.
//!
//! A kill aborts the member's task (its socket closes, nothing is sent: a crash). The
//! victim is then restarted on the same address (new generation) so the cluster keeps
//! its size across trials.

use anyhow::Context;
use constellation_nodeagent::gossip::{
    self, GossipConfig, GossipEvent, GossipHandle, NodeIdentity,
};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "constellation-bench";
/// Longest wait for a kill to be reported by every member, or a restart to be seen.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Options {
    pub members: usize,
    /// Quiet time after every member sees all the others, before bytes are counted.
    pub settle: Duration,
    /// Time between two members' starts.
    pub join_pace: Duration,
    pub duration: Duration,
    pub trials: usize,
    pub steady: Duration,
    pub probe_period: Option<Duration>,
    pub suspect_to_down: Option<Duration>,
    /// Lifeguard-style local health (on in the agent); off to measure what it does.
    pub local_health: bool,
    /// Loopback address the members bind to.
    pub bind: IpAddr,
    /// Also count the steady state's bytes with iptables (root), as the Serf side is.
    pub iptables: bool,
}

struct Member {
    handle: GossipHandle,
    task: JoinHandle<constellation_nodeagent::Result<()>>,
    forwarder: JoinHandle<()>,
}

/// One event as the collector sees it: which member saw it, and when.
struct Seen {
    observer: usize,
    at: Instant,
    event: GossipEvent,
}

struct Bench {
    options: Options,
    members: Vec<Option<Member>>,
    seen_tx: mpsc::UnboundedSender<Seen>,
    seen_rx: mpsc::UnboundedReceiver<Seen>,
    lagged: Arc<AtomicU64>,
    seed: SocketAddr,
    /// Identities currently killed (not running), whose Down is expected.
    killed: HashSet<NodeIdentity>,
    false_positives: Vec<(usize, NodeIdentity)>,
    suspects: usize,
    /// Restarts not seen by every member within the trial timeout.
    slow_rejoins: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.members >= 3, "--members: at least 3");
    let counter = options
        .iptables
        .then(|| crate::iptables::AddressCounter::install(options.bind))
        .transpose()?;
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let mut bench = Bench {
        members: Vec::new(),
        seen_tx,
        seen_rx,
        lagged: Arc::new(AtomicU64::new(0)),
        seed: "127.0.0.1:0".parse()?,
        killed: HashSet::new(),
        false_positives: Vec::new(),
        suspects: 0,
        slow_rejoins: 0,
        options,
    };
    let n = bench.options.members;
    let sample = bench.config("sample");
    println!(
        "gossip: {n} members on loopback UDP; probe period {:?}, probe rtt {:?}, suspect-to-down {:?}, \
         gossip every {:?} to {}, max datagram {} bytes, local health {}",
        sample.probe_period,
        sample.probe_rtt,
        sample.suspect_to_down,
        sample.gossip_period,
        sample.gossip_fanout,
        sample.max_datagram,
        if sample.local_health { "on" } else { "off" }
    );
    let lag = LagProbe::start();
    let run_started = Instant::now();
    let cpu_at_start = CpuSample::now()?;

    for i in 0..n {
        let addr = SocketAddr::new(bench.options.bind, 0);
        bench.start_member(i, addr).await?;
        if i == 0 {
            bench.seed = bench.handle(0).identity().addr;
        }
        // Paced joins (50 a second here): a whole cluster starting within a second, all
        // through one seed, on two shared CPUs, is a storm of feeds and pushes this
        // bench is not about (its false downs are printed separately below).
        tokio::time::sleep(bench.options.join_pace).await;
    }
    let converge_started = Instant::now();
    bench.wait_converged().await?;
    println!(
        "all {n} members see each other {:.1?} after the last one started",
        converge_started.elapsed()
    );
    // What happened while joining is not steady state.
    bench.drain_events();
    let startup_false_positives = std::mem::take(&mut bench.false_positives);
    if !startup_false_positives.is_empty() {
        println!(
            "while {n} members joined at once: {} false down reports (not counted below)",
            startup_false_positives.len()
        );
    }
    bench.suspects = 0;
    let fp_window_started = Instant::now();
    bench.idle_for(bench.options.settle).await;

    // Steady state: nothing changes, count what goes out.
    println!("steady state: measuring for {:?}", bench.options.steady);
    lag.reset();
    let cpu_before = CpuSample::now()?;
    let before = bench.total_sent();
    let counted_before = counter.as_ref().map(|c| c.bytes()).transpose()?;
    let started = Instant::now();
    bench.idle_for(bench.options.steady).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = bench.total_sent();
    let counted_after = counter.as_ref().map(|c| c.bytes()).transpose()?;
    let steady_cpu = CpuSample::now()?.since(&cpu_before);
    let steady_lag = lag.reset();
    let per_member = |v: u64| v as f64 / elapsed / n as f64;
    let payload_bps = per_member(after.bytes - before.bytes);
    let datagrams_ps = per_member(after.datagrams - before.datagrams);
    let ip_bps = per_member(
        (after.bytes - before.bytes)
            + (after.datagrams - before.datagrams) * gossip::IP_UDP_HEADER_BYTES,
    );
    let iptables_bps = counted_before
        .zip(counted_after)
        .map(|(before, after)| per_member(after - before));

    // Kill trials.
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut everyone = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    for trial in 0..bench.options.trials {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Any member but the seed, which restarted members join through.
        let victim = 1 + (rng >> 33) as usize % (n - 1);
        let t = bench.kill_trial(victim).await?;
        println!(
            "trial {:>2}: killed member {victim:>3}; first report {:>8.2?}, second {:>8.2?}, all {} {:>8.2?}",
            trial + 1,
            t.first,
            t.second,
            t.reporters,
            t.all.unwrap_or(TRIAL_TIMEOUT)
        );
        first.push(t.first);
        second.push(t.second);
        if let Some(all) = t.all {
            everyone.push(all);
        }
        bench.restart(victim).await?;
        bench.idle_for(Duration::from_secs(2)).await;
    }

    // Watch for false positives for the rest of the run.
    let remaining = bench.options.duration.saturating_sub(run_started.elapsed());
    if !remaining.is_zero() {
        println!("watching for false positives for another {remaining:.0?}");
        bench.idle_for(remaining).await;
    }
    let fp_window = fp_window_started.elapsed();
    let run_cpu = CpuSample::now()?.since(&cpu_at_start);
    let run_lag = lag.reset();
    bench.stop().await;

    println!();
    println!("members                              {n}");
    println!(
        "steady state, per member             {payload_bps:.0} B/s UDP payload, {ip_bps:.0} B/s as iptables counts it \
         (+28 B/datagram), {datagrams_ps:.1} datagrams/s"
    );
    if let Some(counted) = iptables_bps {
        println!("steady state, per member, iptables   {counted:.0} B/s");
    }
    println!(
        "detection, first member reports      p50 {:.2?}  p99 {:.2?}  max {:.2?}  ({} trials)",
        pct(&mut first, 0.50),
        pct(&mut first, 0.99),
        first.iter().max().copied().unwrap_or_default(),
        first.len()
    );
    println!(
        "detection, second member reports     p50 {:.2?}  p99 {:.2?}",
        pct(&mut second, 0.50),
        pct(&mut second, 0.99)
    );
    println!(
        "detection, every member reports      p50 {:.2?}  p99 {:.2?}  ({} of {} trials complete)",
        pct(&mut everyone, 0.50),
        pct(&mut everyone, 0.99),
        everyone.len(),
        first.len()
    );
    println!(
        "false positives                      {} over {:.0?} (suspicions of live members: {}; events lost to lag: {})",
        bench.false_positives.len(),
        fp_window,
        bench.suspects,
        bench.lagged.load(Ordering::Relaxed)
    );
    println!(
        "restarted members not seen by all   {} of {} within 30 s",
        bench.slow_rejoins,
        first.len()
    );
    for (observer, id) in bench.false_positives.iter().take(10) {
        println!("  member {observer} reported {id} down");
    }
    println!(
        "machine while measuring steady state: {:.0}% of {} CPUs busy (this process {:.0}% of one CPU); \
         timer lag p99 {:.1?} max {:.1?}",
        steady_cpu.machine_busy * 100.0,
        steady_cpu.cpus,
        steady_cpu.process_cpus * 100.0,
        steady_lag.p99,
        steady_lag.max
    );
    println!(
        "machine over the whole run:           {:.0}% of {} CPUs busy (this process {:.0}% of one CPU); \
         timer lag p99 {:.1?} max {:.1?}; load average {}",
        run_cpu.machine_busy * 100.0,
        run_cpu.cpus,
        run_cpu.process_cpus * 100.0,
        run_lag.p99,
        run_lag.max,
        crate::load_averages()
    );
    Ok(())
}

struct Trial {
    first: Duration,
    second: Duration,
    all: Option<Duration>,
    reporters: usize,
}

struct Sent {
    bytes: u64,
    datagrams: u64,
}

impl Bench {
    fn config(&self, name: &str) -> GossipConfig {
        let mut config = GossipConfig::lan(name, CLUSTER, self.options.members as u32);
        if let Some(p) = self.options.probe_period {
            config.probe_period = p;
            config.probe_rtt = config.probe_rtt.min(p / 2);
        }
        if let Some(s) = self.options.suspect_to_down {
            config.suspect_to_down = s;
        }
        config.local_health = self.options.local_health;
        config
    }

    fn handle(&self, i: usize) -> &GossipHandle {
        &self.members[i].as_ref().expect("member running").handle
    }

    async fn start_member(&mut self, i: usize, addr: SocketAddr) -> anyhow::Result<()> {
        let socket = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        let (handle, task) = gossip::gossip(self.config(&format!("member-{i:03}")), socket)?;
        let forwarder = {
            let mut events = handle.subscribe();
            let tx = self.seen_tx.clone();
            let lagged = self.lagged.clone();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(event) => {
                            let seen = Seen {
                                observer: i,
                                at: Instant::now(),
                                event,
                            };
                            if tx.send(seen).is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(k)) => {
                            lagged.fetch_add(k, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        };
        let task = tokio::spawn(task.run(CancellationToken::new()));
        if i > 0 {
            handle.join(vec![self.seed]).await?;
        }
        if i >= self.members.len() {
            self.members.resize_with(i + 1, || None);
        }
        self.members[i] = Some(Member {
            handle,
            task,
            forwarder,
        });
        Ok(())
    }

    async fn wait_converged(&mut self) -> anyhow::Result<()> {
        let n = self.options.members;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(300);
        let mut reported = started;
        loop {
            let (mut lagging, mut missing) = (0, 0);
            for m in self.members.iter().flatten() {
                let alive = m
                    .handle
                    .members()
                    .await?
                    .iter()
                    .filter(|i| i.state == gossip::MemberState::Alive)
                    .count();
                if alive != n - 1 {
                    lagging += 1;
                    missing += (n - 1).saturating_sub(alive);
                }
            }
            if lagging == 0 {
                return Ok(());
            }
            if reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                eprintln!(
                    "converging after {:.0?}: {lagging} members miss {missing} others in all",
                    started.elapsed()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{lagging} members still do not see all the others after 5 minutes"
            );
            self.idle_for(Duration::from_millis(500)).await;
        }
    }

    fn total_sent(&self) -> Sent {
        let mut sent = Sent {
            bytes: 0,
            datagrams: 0,
        };
        for m in self.members.iter().flatten() {
            let s = m.handle.stats();
            sent.bytes += s.bytes_sent;
            sent.datagrams += s.datagrams_sent;
        }
        sent
    }

    /// Consumes events for `duration`, recording false positives.
    async fn idle_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while let Ok(Some(seen)) = tokio::time::timeout_at(until, self.seen_rx.recv()).await {
            self.judge(&seen);
        }
    }

    fn drain_events(&mut self) {
        while let Ok(seen) = self.seen_rx.try_recv() {
            self.judge(&seen);
        }
    }

    fn judge(&mut self, seen: &Seen) {
        match &seen.event {
            GossipEvent::Down(id) if !self.killed.contains(id) => {
                self.false_positives.push((seen.observer, id.clone()));
            }
            GossipEvent::Suspect(id) if !self.killed.contains(id) => self.suspects += 1,
            _ => {}
        }
    }

    async fn kill_trial(&mut self, victim: usize) -> anyhow::Result<Trial> {
        let member = self.members[victim].take().context("victim running")?;
        // Not the identity it started with: a member renews itself after a false down.
        let id = member.handle.current_identity();
        self.killed.insert(id.clone());
        let killed_at = Instant::now();
        member.task.abort();
        let _ = member.task.await;
        member.forwarder.abort();

        let expected = self.options.members - 1;
        let mut reporters = HashSet::new();
        let mut times = Vec::new();
        let deadline = killed_at + TRIAL_TIMEOUT;
        while reporters.len() < expected {
            let Ok(Some(seen)) = tokio::time::timeout_at(deadline, self.seen_rx.recv()).await
            else {
                break;
            };
            self.judge(&seen);
            if seen.event == GossipEvent::Down(id.clone())
                && seen.observer != victim
                && reporters.insert(seen.observer)
            {
                times.push(seen.at - killed_at);
            }
        }
        anyhow::ensure!(
            times.len() >= 2,
            "fewer than two members reported {id} down in 30 s"
        );
        Ok(Trial {
            first: times[0],
            second: times[1],
            all: (reporters.len() == expected).then(|| times[times.len() - 1]),
            reporters: reporters.len(),
        })
    }

    /// Starts the victim again on its old address and waits until every member sees
    /// its new identity alive.
    async fn restart(&mut self, victim: usize) -> anyhow::Result<()> {
        let old = self
            .killed
            .iter()
            .find(|id| id.name == format!("member-{victim:03}"))
            .cloned()
            .context("victim identity")?;
        self.start_member(victim, old.addr).await?;
        let new = self.handle(victim).identity().clone();
        let mut seen_by = HashSet::new();
        let deadline = Instant::now() + TRIAL_TIMEOUT;
        while seen_by.len() < self.options.members - 1 {
            let Ok(Some(seen)) = tokio::time::timeout_at(deadline, self.seen_rx.recv()).await
            else {
                println!(
                    "  only {} of {} members saw {new} come back within 30 s",
                    seen_by.len(),
                    self.options.members - 1
                );
                self.slow_rejoins += 1;
                return Ok(());
            };
            self.judge(&seen);
            if seen.event == GossipEvent::Up(new.clone()) {
                seen_by.insert(seen.observer);
            }
        }
        // Late reports of the old identity are still expected, not false positives.
        Ok(())
    }

    async fn stop(&mut self) {
        for m in self.members.iter_mut().filter_map(Option::take) {
            m.task.abort();
            m.forwarder.abort();
        }
    }
}

fn pct(values: &mut [Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let rank = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// How late a 50 ms sleep wakes up on this runtime: a measure of CPU starvation.
struct LagProbe {
    samples: Arc<std::sync::Mutex<Vec<Duration>>>,
}

struct Lag {
    p99: Duration,
    max: Duration,
}

impl LagProbe {
    fn start() -> Self {
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = samples.clone();
        tokio::spawn(async move {
            let period = Duration::from_millis(50);
            loop {
                let asked = Instant::now() + period;
                tokio::time::sleep_until(asked).await;
                let late = Instant::now().saturating_duration_since(asked);
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(late);
            }
        });
        Self { samples }
    }

    /// Lag since the last reset.
    fn reset(&self) -> Lag {
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()));
        Lag {
            p99: pct(&mut samples, 0.99),
            max: samples.iter().max().copied().unwrap_or_default(),
        }
    }
}

/// Machine-wide and this process's CPU time at one moment.
struct CpuSample {
    machine_busy: u64,
    machine_total: u64,
    process_ticks: u64,
    at: std::time::Instant,
    cpus: usize,
}

struct CpuUse {
    /// Fraction of all CPUs busy.
    machine_busy: f64,
    /// This process's CPU time per wall-clock second (1.0 = one CPU).
    process_cpus: f64,
    cpus: usize,
}

impl CpuSample {
    fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("/proc/stat")?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        let total: u64 = fields.iter().take(8).sum();
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        let process_ticks = crate::cpu_ticks(std::process::id())?;
        Ok(Self {
            machine_busy: total - idle,
            machine_total: total,
            process_ticks,
            at: std::time::Instant::now(),
            cpus,
        })
    }

    fn since(&self, before: &CpuSample) -> CpuUse {
        let total = (self.machine_total - before.machine_total).max(1) as f64;
        let wall = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        CpuUse {
            machine_busy: (self.machine_busy - before.machine_busy) as f64 / total,
            process_cpus: (self.process_ticks - before.process_ticks) as f64
                / crate::ticks_per_second()
                / wall,
            cpus: self.cpus,
        }
    }
}

/// `300s`, `5m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 300s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}
