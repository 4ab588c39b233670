//! The Constellation side of the gossip comparison, measured as the system detects a
//! dead node: one control-plane member (bootstrapped, its API alone on a loopback
//! address of its own) and N `constellation-bench gossip-member` processes, each running
//! what the agent runs for membership: its gossip member and its real
//! `Dispatcher.Session` (see `gossip_member.rs`). Members start `join_pace` apart and
//! join through the seeds their sessions hand them, as deployed agents do.
//!
//! - **Bytes.** Over a steady-state window, iptables counts the IP packets from or to
//!   the members' gossip address (the same rules as the Serf side's) and, apart, those
//!   from or to the control plane's API address: the agents' sessions, both directions.
//!   Nothing else talks to that address in the window: the bench's own watch of the
//!   control plane is closed for it and resumed from its index after.
//! - **Detection.** A member process is killed with SIGKILL (its session's connection
//!   breaks, its gossip goes silent) and the time runs until the control plane's Watch
//!   stream delivers its node's change to DOWN. The victim is then started again (same
//!   name and address) and the next trial waits until its node is READY and every
//!   member sees all the others alive.
//! - **False positives.** Any other node changed to DOWN during the run, the steady
//!   window included (its events are replayed when the watch resumes); each is told
//!   with the phase it happened in, by the control plane's time of the event.

use crate::iptables::AddressCounter;
use anyhow::Context;
use constellation_proto::v1 as pb;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use constellation_tests::binaries::{ControlPlane, Start, log_tail};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest wait for every member to start, see the others and be READY.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for a kill to be declared, and for the restarted victim to rejoin.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Quiet time after a rejoin before the next kill, as the in-process bench leaves.
const REJOIN_SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for a started member to bind its gossip socket.
const MEMBER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a member or the control plane gets to exit cleanly before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A watch silent this long is dead: the control plane heartbeats it every 10 s.
const WATCH_SILENCE: Duration = Duration::from_secs(30);
/// Bound on connecting and opening the watch.
const WATCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the closed watch's last packets to leave before bytes are counted.
const WATCH_CLOSE_QUIET: Duration = Duration::from_millis(200);

pub struct Options {
    pub members: usize,
    /// Quiet time after the cluster converged, before bytes are counted.
    pub settle: Duration,
    /// Time between two members' starts.
    pub join_pace: Duration,
    pub steady: Duration,
    pub trials: usize,
    /// Loopback address every member's gossip socket binds (ports the kernel picks).
    pub gossip_bind: IpAddr,
    /// Loopback address of the control plane's API, which only the sessions use.
    pub controlplane_bind: IpAddr,
}

/// What one run measured.
pub struct Measured {
    /// Gossip: IP bytes per second per member, as iptables counts them.
    pub gossip_bytes_per_second: f64,
    /// Agent sessions: IP bytes per second per member, both directions.
    pub session_bytes_per_second: f64,
    /// Kill to the control plane's DOWN, per trial.
    pub detection: Vec<Duration>,
    /// The control plane's reason for each DOWN (the node's status message), per trial.
    pub reasons: Vec<String>,
    /// Nodes declared DOWN that were not killed: node, phase of the run and reason.
    pub false_downs: Vec<String>,
}

pub async fn measure(options: &Options, dir: &Path) -> anyhow::Result<Measured> {
    anyhow::ensure!(options.members >= 3, "at least 3 gossip members");
    let gossip_counter = AddressCounter::install(options.gossip_bind)?;
    let session_counter = AddressCounter::install(options.controlplane_bind)?;
    let api = SocketAddr::new(options.controlplane_bind, 0).to_string();
    let controlplane = ControlPlane::start(
        1,
        &dir.join("controlplane"),
        Start::Bootstrap,
        Some((&api, "127.0.0.1:0")),
    )
    .await?;
    let mut cluster = Cluster {
        exe: std::env::current_exe()?,
        dir: dir.to_owned(),
        watch: NodeWatch::new(controlplane.api_addr.clone()),
        controlplane,
        members: Vec::new(),
        expected_down: None,
        detected: None,
        false_downs: Vec::new(),
        phases: Vec::new(),
    };
    let measured = cluster
        .run(options, &gossip_counter, &session_counter)
        .await;
    cluster.stop().await;
    measured
}

struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    controlplane: ControlPlane,
    watch: NodeWatch,
    members: Vec<Member>,
    /// The killed member whose DOWN is awaited, and when it was killed (monotonic, and
    /// wall clock to tell its DOWN from an older one a resumed watch replays).
    expected_down: Option<(String, Instant, SystemTime)>,
    /// Kill to DOWN of the last victim, and the control plane's reason.
    detected: Option<(Duration, String)>,
    /// Every DOWN not expected: node, phase and reason.
    false_downs: Vec<String>,
    /// When each phase of the run began (wall clock, as the control plane stamps its
    /// events), to tell when a false DOWN happened.
    phases: Vec<(SystemTime, &'static str)>,
}

struct Member {
    name: String,
    /// `bind:0` until the first start, then the address it bound (restarts reuse it).
    addr: SocketAddr,
    process: Option<MemberProcess>,
}

impl Cluster {
    async fn run(
        &mut self,
        options: &Options,
        gossip_counter: &AddressCounter,
        session_counter: &AddressCounter,
    ) -> anyhow::Result<Measured> {
        let n = options.members;
        self.phases.push((SystemTime::now(), "while joining"));
        self.watch.open();
        for i in 0..n {
            self.members.push(Member {
                name: format!("member-{i:03}"),
                addr: SocketAddr::new(options.gossip_bind, 0),
                process: None,
            });
            self.start(i).await?;
            if i == 0 {
                // The seed every later session hands out is a READY node's address.
                self.wait_until(MEMBER_START_TIMEOUT, "member-000 READY", |c| {
                    c.watch.is_ready("member-000")
                })
                .await?;
            }
            self.idle(options.join_pace).await?;
        }
        let started = Instant::now();
        self.wait_converged(CONVERGE_TIMEOUT).await?;
        println!(
            "  constellation: all {n} nodes READY and every member sees all others alive \
             {:.1?} after the last started",
            started.elapsed()
        );
        self.phases.push((SystemTime::now(), "settling"));
        self.idle(options.settle).await?;

        self.phases
            .push((SystemTime::now(), "in the steady window"));
        self.watch.close();
        tokio::time::sleep(WATCH_CLOSE_QUIET).await;
        let (gossip_before, session_before) = (gossip_counter.bytes()?, session_counter.bytes()?);
        let steady_started = Instant::now();
        tokio::time::sleep(options.steady).await;
        let (gossip_after, session_after) = (gossip_counter.bytes()?, session_counter.bytes()?);
        let per_member =
            |bytes: u64| bytes as f64 / steady_started.elapsed().as_secs_f64() / n as f64;
        let gossip_bytes_per_second = per_member(gossip_after - gossip_before);
        let session_bytes_per_second = per_member(session_after - session_before);
        self.watch.open();
        println!(
            "  constellation: steady state, per member, iptables: gossip \
             {gossip_bytes_per_second:.0} B/s, session {session_bytes_per_second:.0} B/s"
        );

        self.phases.push((SystemTime::now(), "in the kill trials"));
        let mut detection = Vec::new();
        let mut reasons = Vec::new();
        for (trial, victim) in crate::peers::victims(n, options.trials).enumerate() {
            let name = self.members[victim].name.clone();
            let mut process = self.members[victim]
                .process
                .take()
                .context("victim running")?;
            self.detected = None;
            self.expected_down = Some((name.clone(), Instant::now(), SystemTime::now()));
            process.child.kill().await?;
            self.wait_until(TRIAL_TIMEOUT, &format!("{name} DOWN"), |c| {
                c.detected.is_some()
            })
            .await?;
            let (took, reason) = self.detected.take().context("detected")?;
            println!(
                "  constellation trial {:>2}: killed {name}; control plane DOWN {took:>8.2?} ({reason})",
                trial + 1
            );
            detection.push(took);
            reasons.push(reason);
            self.start(victim).await?;
            self.wait_converged(TRIAL_TIMEOUT).await?;
            self.idle(REJOIN_SETTLE).await?;
        }
        self.watch.close();
        // What the watch delivered up to now, the last trial's rejoin included.
        self.apply_changes()?;
        for false_down in self.false_downs.iter().take(10) {
            println!("  constellation: false DOWN of {false_down}");
        }
        Ok(Measured {
            gossip_bytes_per_second,
            session_bytes_per_second,
            detection,
            reasons,
            false_downs: std::mem::take(&mut self.false_downs),
        })
    }

    /// Starts member `i` (again) and learns the address it bound.
    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &self.members[i];
        let log = self.dir.join(format!("{}.log", member.name));
        let (process, addr) = MemberProcess::spawn(
            &self.exe,
            &member.name,
            member.addr,
            &self.controlplane.api_addr,
            &log,
        )
        .await?;
        self.members[i].addr = addr;
        self.members[i].process = Some(process);
        Ok(())
    }

    /// Until every node is READY and every member sees all `n - 1` others alive.
    async fn wait_converged(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let n = self.members.len();
        let deadline = Instant::now() + timeout;
        let mut reported = Instant::now();
        loop {
            self.apply_changes()?;
            self.check_members()?;
            let ready = self
                .members
                .iter()
                .filter(|m| self.watch.is_ready(&m.name))
                .count();
            let seeing = self
                .members
                .iter()
                .filter(|m| m.process.as_ref().and_then(MemberProcess::alive) == Some(n - 1))
                .count();
            if ready == n && seeing == n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let short: Vec<String> = self
                    .members
                    .iter()
                    .filter_map(|m| {
                        let alive = m.process.as_ref().and_then(MemberProcess::alive);
                        (alive != Some(n - 1)).then(|| format!("{} sees {alive:?}", m.name))
                    })
                    .take(10)
                    .collect();
                anyhow::bail!(
                    "after {timeout:?}, {ready} of {n} nodes READY and {seeing} of {n} members \
                     see all others alive (short: {})",
                    short.join(", ")
                );
            }
            if reported.elapsed() >= Duration::from_secs(5) {
                reported = Instant::now();
                eprintln!(
                    "  converging: {ready} of {n} nodes READY, {seeing} of {n} members see all others"
                );
            }
            self.watch.changed_within(Duration::from_millis(100)).await;
        }
    }

    /// Until `done`, applying the control plane's node changes as they come.
    async fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.apply_changes()?;
            if done(self) {
                return Ok(());
            }
            self.check_members()?;
            anyhow::ensure!(Instant::now() < deadline, "no {what} within {timeout:?}");
            self.watch.changed_within(Duration::from_millis(100)).await;
        }
    }

    /// Lets `duration` pass, still following the control plane.
    async fn idle(&mut self, duration: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.apply_changes()?;
            self.check_members()?;
            let left = until.saturating_duration_since(Instant::now());
            self.watch
                .changed_within(left.min(Duration::from_millis(500)))
                .await;
        }
        self.apply_changes()
    }

    /// Takes the watch's node changes: the awaited DOWN is a detection, any other DOWN
    /// a false positive.
    fn apply_changes(&mut self) -> anyhow::Result<()> {
        for change in self.watch.take()? {
            if change.status != pb::NodeStatus::Down {
                continue;
            }
            match self.expected_down.take() {
                Some((victim, killed_at, killed_wall))
                    if victim == change.name && change.time >= killed_wall =>
                {
                    let took = change.at.saturating_duration_since(killed_at);
                    self.detected = Some((took, change.message));
                }
                other => {
                    self.expected_down = other;
                    let phase = self
                        .phases
                        .iter()
                        .rev()
                        .find(|(began, _)| *began <= change.time)
                        .map_or("before the run", |(_, phase)| *phase);
                    let false_down = format!("{} {phase} ({})", change.name, change.message);
                    self.false_downs.push(false_down);
                }
            }
        }
        Ok(())
    }

    /// Fails when a member that should run has exited, with the end of its log.
    fn check_members(&self) -> anyhow::Result<()> {
        for member in &self.members {
            if member
                .process
                .as_ref()
                .is_some_and(|p| p.exited.load(Ordering::Relaxed))
            {
                let log = self.dir.join(format!("{}.log", member.name));
                anyhow::bail!(
                    "{} exited; its log ends:\n{}",
                    member.name,
                    log_tail(&log, 10)
                );
            }
        }
        Ok(())
    }

    /// Members first (their sessions end cleanly), then the control plane.
    async fn stop(&mut self) {
        self.watch.close();
        let stops = self
            .members
            .iter_mut()
            .filter_map(|m| m.process.take())
            .map(MemberProcess::stop);
        futures::future::join_all(stops).await;
        let _ = self.controlplane.process.terminate(STOP_TIMEOUT).await;
    }
}

/// One `gossip-member` process. Its stdout is read by a task of its own (the lines
/// `gossip_member.rs` describes); its stderr goes to its log file.
struct MemberProcess {
    child: Child,
    /// The last `alive N` it printed; `usize::MAX` before the first.
    alive: Arc<AtomicUsize>,
    /// Its stdout closed: it exited.
    exited: Arc<AtomicBool>,
}

impl MemberProcess {
    async fn spawn(
        exe: &Path,
        name: &str,
        addr: SocketAddr,
        controlplane: &str,
        log: &Path,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(exe)
            .args(["gossip-member", "--name", name])
            .args(["--gossip-listen", &addr.to_string()])
            .args(["--controlplane", controlplane])
            // Held open: the member stops when it closes (see `gossip_member.rs`).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let alive = Arc::new(AtomicUsize::new(usize::MAX));
        let exited = Arc::new(AtomicBool::new(false));
        let (bound_tx, bound_rx) = oneshot::channel();
        {
            let (alive, exited) = (alive.clone(), exited.clone());
            tokio::spawn(async move {
                let mut bound_tx = Some(bound_tx);
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match line.split_once(' ') {
                        Some(("gossip", addr)) => {
                            if let (Ok(addr), Some(tx)) = (addr.parse(), bound_tx.take()) {
                                let _ = tx.send(addr);
                            }
                        }
                        Some(("alive", count)) => {
                            if let Ok(count) = count.parse() {
                                alive.store(count, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
                exited.store(true, Ordering::Relaxed);
            });
        }
        let process = Self {
            child,
            alive,
            exited,
        };
        let bound = tokio::time::timeout(MEMBER_START_TIMEOUT, bound_rx).await;
        match bound {
            Ok(Ok(addr)) => Ok((process, addr)),
            _ => {
                process.stop().await;
                anyhow::bail!(
                    "{name} did not bind its gossip socket within {MEMBER_START_TIMEOUT:?}; \
                     its log ends:\n{}",
                    log_tail(log, 10)
                )
            }
        }
    }

    /// Other members it last said it sees alive.
    fn alive(&self) -> Option<usize> {
        Some(self.alive.load(Ordering::Relaxed)).filter(|&n| n != usize::MAX)
    }

    /// Closes its stdin (a clean shutdown, its session says goodbye), then SIGKILL if it
    /// has not exited within [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// One node's change as the control plane's Watch stream delivered it.
struct NodeChange {
    /// When the bench received it.
    at: Instant,
    /// When the control plane applied it.
    time: SystemTime,
    index: u64,
    name: String,
    status: pb::NodeStatus,
    message: String,
}

/// The control plane's node events (Watch, topic NODE), received by a task that stamps
/// each with its arrival time; closed and resumed from the last index applied, so a
/// resumed watch replays what happened while it was closed and nothing twice.
struct NodeWatch {
    api_addr: String,
    tx: mpsc::UnboundedSender<anyhow::Result<NodeChange>>,
    rx: mpsc::UnboundedReceiver<anyhow::Result<NodeChange>>,
    task: Option<JoinHandle<()>>,
    /// What [`NodeWatch::changed_within`] received, not yet taken.
    waited: Option<anyhow::Result<NodeChange>>,
    /// Index of the last node event applied.
    applied: u64,
    status: HashMap<String, pb::NodeStatus>,
}

impl NodeWatch {
    fn new(api_addr: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            api_addr,
            tx,
            rx,
            task: None,
            waited: None,
            applied: 0,
            status: HashMap::new(),
        }
    }

    fn open(&mut self) {
        self.close();
        let (addr, from, tx) = (self.api_addr.clone(), self.applied, self.tx.clone());
        self.task = Some(tokio::spawn(async move {
            if let Err(e) = forward_node_events(&addr, from, &tx).await {
                let _ = tx.send(Err(e));
            }
        }));
    }

    /// Ends the stream and its connection.
    fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// The changes received since the last call, in order, each applied once.
    fn take(&mut self) -> anyhow::Result<Vec<NodeChange>> {
        let mut changes = Vec::new();
        let waited = self.waited.take();
        for received in waited
            .into_iter()
            .chain(std::iter::from_fn(|| self.rx.try_recv().ok()))
        {
            let change = received.context("watching the control plane's nodes")?;
            if change.index <= self.applied {
                continue;
            }
            self.applied = change.index;
            self.status.insert(change.name.clone(), change.status);
            changes.push(change);
        }
        Ok(changes)
    }

    /// Waits until something was received or `timeout` passed (it stays queued).
    async fn changed_within(&mut self, timeout: Duration) {
        if self.waited.is_none()
            && let Ok(received) = tokio::time::timeout(timeout, self.rx.recv()).await
        {
            // Never None: this struct holds a sender.
            self.waited = received;
        }
    }

    fn is_ready(&self, name: &str) -> bool {
        self.status.get(name) == Some(&pb::NodeStatus::Ready)
    }
}

async fn forward_node_events(
    addr: &str,
    from: u64,
    tx: &mpsc::UnboundedSender<anyhow::Result<NodeChange>>,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(WATCH_CONNECT_TIMEOUT);
    let channel = tokio::time::timeout(WATCH_CONNECT_TIMEOUT, channel.connect())
        .await
        .context("connecting to the control plane")??;
    let request = pb::WatchRequest {
        from_index: from,
        topics: vec![pb::Topic::Node as i32],
    };
    let mut stream = tokio::time::timeout(
        WATCH_CONNECT_TIMEOUT,
        ControlPlaneClient::new(channel).watch(request),
    )
    .await
    .context("opening the watch")??
    .into_inner();
    loop {
        let response = tokio::time::timeout(WATCH_SILENCE, stream.message())
            .await
            .with_context(|| format!("the watch was silent for {WATCH_SILENCE:?}"))??
            .context("the control plane ended the watch")?;
        let at = Instant::now();
        for event in response.events {
            let Some(pb::event::Payload::Node(change)) = event.payload else {
                continue;
            };
            if change.kind() == pb::ChangeKind::Deleted {
                continue;
            }
            let node = change.node.unwrap_or_default();
            let time = event.time.map_or(UNIX_EPOCH, |t| {
                UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
            });
            let change = NodeChange {
                at,
                time,
                index: event.index,
                status: node.status(),
                name: node.description.map(|d| d.name).unwrap_or_default(),
                message: node.status_message,
            };
            if tx.send(Ok(change)).is_err() {
                return Ok(());
            }
        }
    }
}
