//! The one task that owns foca: it reads the socket, fires timers in deadline order,
//! runs commands, sends what foca produces, and turns foca's notifications into
//! [`GossipEvent`]s.

use super::broadcast::{
    Handler, HealthDigest, Item, ItemTable, NodeMetadata, SharedTable, Version,
};
use super::config::GossipConfig;
use super::identity::{GossipCodec, NodeIdentity};
use super::timers::TimerQueue;
use super::wire::{self, ENVELOPE_LEN, Kind, Rejected};
use super::{Command, GossipEvent, GossipStats, MemberInfo, MemberState};
use crate::Result;
use foca::{
    AccumulatingRuntime, Codec, Foca, Incarnation, Member, OwnedNotification, State, Timer,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;

/// How often suspicion changes are looked for (foca does not notify them) and joining
/// is retried. Suspicion is advisory, so a fifth of a second is timely enough.
const SCAN_PERIOD: Duration = Duration::from_millis(200);
/// Datagrams already queued in the socket that are handled before due timers fire.
const QUEUED_DATAGRAMS_BEFORE_TIMERS: usize = 256;
/// A timer handled this late means the process was starved of CPU (or paused).
const LATE_TIMER: Duration = Duration::from_millis(50);
/// Highest local health score: suspicion lasts up to (1 + this) times its setting.
const MAX_HEALTH_SCORE: u32 = 8;
/// Checks (suspicions started on the control plane's request) under way at once; more
/// requests are dropped until some end (the control plane asks again if need be).
const MAX_PENDING_CHECKS: usize = 64;
/// Direct pushes of our items sent per scan (50 a second). When many members join at
/// once (a cold start, or a wave of rejoins after an overload) pushing to each at once
/// would add a datagram per member per join to the storm; spread out, a new member of a
/// 200-node cluster still has everyone's items within about four seconds.
const PUSHES_PER_SCAN: usize = 10;

type Swim = Foca<NodeIdentity, GossipCodec, SmallRng, Handler>;

/// A prepared gossip member; [`GossipTask::run`] runs it.
pub struct GossipTask {
    config: GossipConfig,
    tag: u32,
    foca: Swim,
    runtime: AccumulatingRuntime<NodeIdentity>,
    /// Set once shutdown began and this member is leaving the cluster.
    leaving: bool,
    /// Local health, after Lifeguard: 0 when this process keeps up; raised when its
    /// timers run late or the cluster declared it down, lowered after calm probe
    /// periods. Suspicions it starts last `(1 + score)` times `suspect_to_down`, so a
    /// starved member does not declare others down for its own slowness.
    health_score: u32,
    /// When the score last changed, or the last late timer.
    health_changed: Instant,
    timers: TimerQueue<Timer<NodeIdentity>>,
    socket: UdpSocket,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    events: broadcast::Sender<GossipEvent>,
    stats: Arc<GossipStats>,
    table: SharedTable,
    /// What consumers were last told about each address.
    reported: HashMap<SocketAddr, (NodeIdentity, MemberState)>,
    seeds: Vec<SocketAddr>,
    last_announce: Option<Instant>,
    metadata: NodeMetadata,
    metadata_counter: u64,
    health: HealthDigest,
    health_counter: u64,
    /// Our own items, each length-prefixed, as sent directly to members that join.
    own_items: Vec<Vec<u8>>,
    /// Members that joined and still need our items, oldest first, each once.
    pending_pushes: VecDeque<SocketAddr>,
    send_buf: Vec<u8>,
    current: watch::Sender<NodeIdentity>,
    /// Suspicions this member started on request ([`Command::Check`]), soonest first.
    checks: Vec<PendingCheck>,
}

/// A suspicion started on request: when `due` comes and the member is still suspect
/// under `incarnation` (it did not refute), it is declared down.
struct PendingCheck {
    id: NodeIdentity,
    incarnation: Incarnation,
    due: Instant,
}

impl GossipTask {
    pub(crate) fn new(
        config: GossipConfig,
        identity: NodeIdentity,
        socket: UdpSocket,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<GossipEvent>,
        stats: Arc<GossipStats>,
        current: watch::Sender<NodeIdentity>,
    ) -> Result<Self> {
        let table = SharedTable::new(ItemTable::new(config.name.clone(), config.max_nodes));
        let seed = std::collections::hash_map::RandomState::new().hash_one(&identity);
        let foca = Foca::with_custom_broadcast(
            identity,
            config.foca_config(ENVELOPE_LEN),
            SmallRng::seed_from_u64(seed),
            GossipCodec,
            Handler {
                table: table.clone(),
            },
        );
        Ok(Self {
            tag: wire::cluster_tag(&config.cluster),
            metadata: config.metadata.clone(),
            send_buf: Vec::with_capacity(config.max_datagram),
            config,
            foca,
            runtime: AccumulatingRuntime::new(),
            leaving: false,
            health_score: 0,
            health_changed: Instant::now(),
            timers: TimerQueue::default(),
            socket,
            commands,
            commands_open: true,
            events,
            stats,
            table,
            reported: HashMap::new(),
            seeds: Vec::new(),
            last_announce: None,
            metadata_counter: 0,
            health: HealthDigest::default(),
            health_counter: 0,
            own_items: Vec::new(),
            pending_pushes: VecDeque::new(),
            current,
            checks: Vec::new(),
        })
    }

    /// Runs the member until `shutdown`, then leaves the cluster (others see it down at
    /// once instead of after the suspicion time). Dropping the future instead is a
    /// crash, as far as the cluster can tell.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(identity = %self.foca.identity(), "gossip: started");
        self.queue_own_items();
        let mut datagram = vec![0u8; self.config.max_datagram + 1];
        let mut scan = interval(SCAN_PERIOD);
        scan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let refresh_every = self.config.metadata_refresh;
        let mut refresh = interval_at(Instant::now() + refresh_every, refresh_every);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.next_deadline();
            let next_check = self.checks.first().map(|c| c.due);
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Step::Shutdown,
                _ = sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => Step::Timers,
                _ = sleep_until(next_check.unwrap_or_else(Instant::now)), if next_check.is_some() => Step::Checks,
                received = self.socket.recv_from(&mut datagram) => Step::Datagram(received),
                command = self.commands.recv(), if self.commands_open => Step::Command(command),
                _ = scan.tick() => Step::Scan,
                _ = refresh.tick() => Step::Refresh,
            };
            match step {
                Step::Shutdown => break,
                Step::Timers => {
                    if self.config.local_health {
                        self.observe_lateness(Instant::now());
                        self.receive_queued(&mut datagram).await;
                    }
                    self.fire_due_timers().await;
                }
                Step::Checks => {
                    if self.config.local_health {
                        self.receive_queued(&mut datagram).await;
                    }
                    self.end_due_checks().await;
                }
                Step::Datagram(Ok((len, from))) => self.receive(&datagram[..len], from).await,
                // ICMP errors from earlier sends surface here on some systems; the
                // socket itself is fine.
                Step::Datagram(Err(e)) => tracing::trace!(error = %e, "gossip: receive error"),
                Step::Command(Some(command)) => self.command(command).await,
                Step::Command(None) => self.commands_open = false,
                Step::Scan => self.scan().await,
                Step::Refresh => {
                    self.queue_own_items();
                    self.flush().await;
                }
            }
        }
        self.leaving = true;
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            tracing::debug!(error = %e, "gossip: leaving");
        }
        self.flush().await;
        tracing::info!(identity = %self.foca.identity(), "gossip: left the cluster");
        Ok(())
    }

    /// Handles the datagrams already waiting in the socket (at most a bounded number).
    /// Run before due timers fire: when this process was starved of CPU, an ack that
    /// arrived in time may still sit in the socket, and firing the probe's timer first
    /// would suspect a member for this member's own slowness (Lifeguard's point).
    async fn receive_queued(&mut self, datagram: &mut [u8]) {
        for _ in 0..QUEUED_DATAGRAMS_BEFORE_TIMERS {
            match self.socket.try_recv_from(datagram) {
                Ok((len, from)) => {
                    let received = datagram[..len].to_vec();
                    self.receive(&received, from).await;
                }
                Err(_) => break,
            }
        }
    }

    /// Updates the local health score from how late the earliest due timer is handled.
    fn observe_lateness(&mut self, now: Instant) {
        let late = self
            .timers
            .next_deadline()
            .is_some_and(|deadline| now.saturating_duration_since(deadline) > LATE_TIMER);
        if late {
            self.health_changed = now;
            self.set_health_score(self.health_score + 1);
        } else if self.health_score > 0
            && now.saturating_duration_since(self.health_changed) >= self.config.probe_period * 4
        {
            self.health_changed = now;
            self.set_health_score(self.health_score - 1);
        }
    }

    fn set_health_score(&mut self, score: u32) {
        let score = score.min(MAX_HEALTH_SCORE);
        if score == self.health_score {
            return;
        }
        self.health_score = score;
        tracing::debug!(score, "gossip: local health score changed");
        self.apply_config();
    }

    /// Hands the settings to foca, the suspicion time scaled by local health.
    fn apply_config(&mut self) {
        let mut config = self.config.foca_config(ENVELOPE_LEN);
        config.suspect_to_down_after = self.config.suspect_to_down * (1 + self.health_score);
        if let Err(e) = self.foca.set_config(config) {
            tracing::warn!(error = %e, "gossip: could not change the settings");
        }
    }

    async fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(error = %e, "gossip: timer");
            }
            self.flush().await;
        }
    }

    async fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        self.stats
            .datagrams_received
            .fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        if datagram.len() > self.config.max_datagram {
            self.dropped_malformed(from, "oversized datagram");
            return;
        }
        match wire::open(datagram, self.tag) {
            Err(Rejected::Foreign) => {
                self.stats.dropped_foreign.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "gossip: dropped a datagram from another cluster");
            }
            Err(Rejected::Malformed) => self.dropped_malformed(from, "bad envelope"),
            Ok((Kind::Foca, payload)) => {
                match self.foca.handle_data(payload, &mut self.runtime) {
                    Ok(()) => {}
                    Err(
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig
                        | foca::Error::CustomBroadcast(_),
                    ) => self.dropped_malformed(from, "undecodable foca message"),
                    Err(e) => tracing::debug!(%from, error = %e, "gossip: message"),
                }
                self.flush().await;
            }
            Ok((Kind::Push, payload)) => {
                if self.receive_push(payload).is_err() {
                    self.dropped_malformed(from, "undecodable push");
                }
                self.emit_accepted_items();
            }
            Ok((Kind::Introduce, payload)) => self.receive_introduction(payload, from).await,
        }
    }

    /// A member that saw us join introduces itself: learn it if it is new to us. Only an
    /// identity at the address it was sent from, and alive, is taken; anything foca
    /// already knows of that identity stays as foca has it.
    async fn receive_introduction(&mut self, mut payload: &[u8], from: SocketAddr) {
        let member = match GossipCodec.decode_member(&mut payload) {
            Ok(member) if payload.is_empty() => member,
            _ => return self.dropped_malformed(from, "undecodable introduction"),
        };
        if member.id().addr != from
            || member.state() != State::Alive
            || member.id() == self.foca.identity()
        {
            return;
        }
        let known = self
            .foca
            .iter_membership_state()
            .find(|m| m.id() == member.id())
            .map(|m| m.state());
        let result = match known {
            None => self
                .foca
                .apply_many(std::iter::once(member), false, &mut self.runtime),
            // We hold it as suspect, yet it just spoke: a suspicion whose refutation
            // finished spreading before we joined, which only our own probe of it would
            // clear (minutes away in a large cluster). Its answer to an announce carries
            // its current incarnation, which clears it now.
            Some(State::Suspect) => self.foca.announce(member.id().clone(), &mut self.runtime),
            Some(State::Alive | State::Down) => return,
        };
        if let Err(e) = result {
            tracing::debug!(%from, error = %e, "gossip: introduction");
        }
        self.flush().await;
    }

    fn dropped_malformed(&self, from: SocketAddr, why: &'static str) {
        self.stats.dropped_malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, why, "gossip: dropped a datagram");
    }

    /// Items sent straight to us: `[u16 length][item]...`.
    fn receive_push(&mut self, mut payload: &[u8]) -> std::result::Result<(), ()> {
        let mut table = self.table.lock();
        while !payload.is_empty() {
            let (len, rest) = payload.split_first_chunk::<2>().ok_or(())?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len == 0 || rest.len() < len {
                return Err(());
            }
            let item = Item::decode(&rest[..len]).map_err(drop)?;
            table.accept(&item);
            payload = &rest[len..];
        }
        Ok(())
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Join(seeds) => {
                let own = self.foca.identity().addr;
                self.seeds = seeds.into_iter().filter(|s| *s != own).collect();
                self.announce_to_seeds().await;
            }
            Command::SetMetadata(metadata) => {
                self.metadata = metadata;
                self.metadata_counter += 1;
                self.queue_own_items();
                self.flush().await;
            }
            Command::SetHealth(digest) => {
                self.health = digest;
                self.health_counter += 1;
                self.queue_own_items();
                self.flush().await;
            }
            Command::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Command::Check { name, generation } => self.start_check(&name, generation).await,
            Command::Resize(members) => {
                if self.config.resize(members) {
                    tracing::info!(
                        members = members.get(),
                        suspect_to_down = ?self.config.suspect_to_down,
                        "gossip: tuned for the cluster size"
                    );
                    self.apply_config();
                }
            }
        }
    }

    /// Suspects the member `name` of `generation` as a failed probe would, so it
    /// refutes if alive. Members already suspect get a deadline too: whoever suspected
    /// them may be gone, and a second deadline for the same incarnation is harmless.
    async fn start_check(&mut self, name: &str, generation: u64) {
        let found = self
            .foca
            .iter_membership_state()
            .find(|m| m.id().name == name && m.id().generation == generation)
            .map(|m| (m.id().clone(), m.incarnation(), m.state()));
        let Some((id, incarnation, state)) = found else {
            tracing::debug!(
                member = name,
                generation,
                "gossip: check of a member not known"
            );
            return;
        };
        if state == State::Down || self.checks.iter().any(|c| c.id == id) {
            return;
        }
        if self.checks.len() >= MAX_PENDING_CHECKS {
            tracing::warn!(member = %id, "gossip: too many checks under way; this one is dropped");
            return;
        }
        tracing::info!(member = %id, "gossip: checking a member on the control plane's request");
        if state == State::Alive {
            let suspect = Member::new(id.clone(), incarnation, State::Suspect);
            if let Err(e) = self
                .foca
                .apply_many(std::iter::once(suspect), true, &mut self.runtime)
            {
                tracing::debug!(error = %e, "gossip: suspecting");
            }
        }
        // Scaled by local health as foca's own suspicions are (see `set_health_score`).
        let due = Instant::now() + self.config.suspect_to_down * (1 + self.health_score);
        self.checks.push(PendingCheck {
            id,
            incarnation,
            due,
        });
        self.checks.sort_by_key(|c| c.due);
        self.flush().await;
    }

    /// Declares down the checked members that did not refute in time, as foca's own
    /// suspicion timer does: only while still suspect under the same incarnation (a
    /// refutation raises it).
    async fn end_due_checks(&mut self) {
        let now = Instant::now();
        let due = self.checks.partition_point(|c| c.due <= now);
        for check in self.checks.drain(..due).collect::<Vec<_>>() {
            let unrefuted = self.foca.iter_membership_state().any(|m| {
                m.id() == &check.id
                    && m.state() == State::Suspect
                    && m.incarnation() == check.incarnation
            });
            if !unrefuted {
                continue;
            }
            tracing::info!(member = %check.id, "gossip: a checked member did not refute; down");
            let down = Member::new(check.id, check.incarnation, State::Down);
            if let Err(e) = self
                .foca
                .apply_many(std::iter::once(down), true, &mut self.runtime)
            {
                tracing::debug!(error = %e, "gossip: declaring down");
            }
        }
        self.flush().await;
    }

    fn members(&self) -> Vec<MemberInfo> {
        let table = self.table.lock();
        self.foca
            .iter_membership_state()
            .map(|m| {
                let items = table.get(&m.id().name);
                MemberInfo {
                    identity: m.id().clone(),
                    state: member_state(m.state()),
                    metadata: items.and_then(|i| i.metadata.clone()),
                    health: items.and_then(|i| i.health),
                }
            })
            .collect()
    }

    async fn announce_to_seeds(&mut self) {
        self.last_announce = Some(Instant::now());
        for seed in self.seeds.clone() {
            if let Err(e) = self
                .foca
                .announce(NodeIdentity::seed(seed), &mut self.runtime)
            {
                tracing::debug!(%seed, error = %e, "gossip: announce");
            }
        }
        self.flush().await;
    }

    /// Suspicion changes (foca tracks them but does not notify) and join retries.
    async fn scan(&mut self) {
        let mut changes = Vec::new();
        for member in self.foca.iter_membership_state() {
            let id = member.id();
            if let Some((known, reported)) = self.reported.get_mut(&id.addr)
                && known == id
            {
                match (*reported, member.state()) {
                    (MemberState::Alive, State::Suspect) => {
                        *reported = MemberState::Suspect;
                        changes.push(GossipEvent::Suspect(id.clone()));
                    }
                    (MemberState::Suspect, State::Alive) => {
                        *reported = MemberState::Alive;
                        changes.push(GossipEvent::Up(id.clone()));
                    }
                    _ => {}
                }
            }
        }
        for event in changes {
            self.emit(event);
        }
        for _ in 0..PUSHES_PER_SCAN {
            let Some(to) = self.pending_pushes.pop_front() else {
                break;
            };
            self.push_own_items(to).await;
        }
        let retry_due = self
            .last_announce
            .is_none_or(|at| at.elapsed() >= self.config.join_retry);
        if !self.seeds.is_empty() && self.foca.num_members() == 0 && retry_due {
            self.announce_to_seeds().await;
        }
    }

    /// Hands our metadata and health digest to foca under their current versions and
    /// keeps their wire form for direct pushes.
    fn queue_own_items(&mut self) {
        let identity = self.foca.identity();
        let generation = identity.generation;
        let items = [
            Item::Metadata {
                node: identity.name.clone(),
                version: Version {
                    generation,
                    counter: self.metadata_counter,
                },
                metadata: self.metadata.clone(),
            },
            Item::Health {
                node: identity.name.clone(),
                version: Version {
                    generation,
                    counter: self.health_counter,
                },
                digest: self.health,
            },
        ];
        self.own_items.clear();
        for item in items {
            // Sizes were checked when the metadata was set; a failure here is a bug
            // worth a log line, not a crash.
            match item.encode("gossip item") {
                Ok(bytes) => {
                    if let Err(e) = self.foca.add_broadcast(&bytes) {
                        tracing::warn!(error = %e, "gossip: cannot queue our item");
                    }
                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    self.own_items.push(framed);
                }
                Err(e) => tracing::warn!(error = %e, "gossip: cannot encode our item"),
            }
        }
    }

    /// Sends, schedules and reports everything foca produced, until nothing is left
    /// (reacting to a notification may produce more).
    async fn flush(&mut self) {
        while self.runtime.backlog() > 0 {
            while let Some((to, data)) = self.runtime.to_send() {
                self.send(Kind::Foca, to.addr, &data).await;
            }
            let now = Instant::now();
            while let Some((after, timer)) = self.runtime.to_schedule() {
                self.timers.push(now + after, timer);
            }
            while let Some(notification) = self.runtime.to_notify() {
                self.notified(notification).await;
            }
        }
        self.emit_accepted_items();
    }

    async fn notified(&mut self, notification: OwnedNotification<NodeIdentity>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                self.reported
                    .insert(id.addr, (id.clone(), MemberState::Alive));
                tracing::debug!(member = %id, "gossip: member up");
                // A member that just joined has none of our items: hand them over
                // directly rather than hoping a later gossip round reaches it.
                if !self.pending_pushes.contains(&id.addr)
                    && self.pending_pushes.len() < self.config.max_nodes
                {
                    self.pending_pushes.push_back(id.addr);
                }
                self.emit(GossipEvent::Up(id));
            }
            OwnedNotification::MemberDown(id) => {
                self.reported
                    .insert(id.addr, (id.clone(), MemberState::Down));
                tracing::debug!(member = %id, "gossip: member down");
                if !self.foca.iter_members().any(|m| m.id().name == id.name) {
                    self.table.lock().forget(&id.name);
                }
                self.emit(GossipEvent::Down(id));
            }
            OwnedNotification::Rename(old, new) => {
                let was = self
                    .reported
                    .get(&old.addr)
                    .filter(|(known, _)| *known == old)
                    .map(|(_, state)| *state);
                tracing::debug!(%old, %new, "gossip: member renamed");
                match was {
                    // A restart the cluster had not noticed: same address, new identity,
                    // both alive. foca will not send MemberUp for it, so we do.
                    Some(MemberState::Alive | MemberState::Suspect) => {
                        self.reported
                            .insert(new.addr, (new.clone(), MemberState::Alive));
                        self.emit(GossipEvent::Up(new));
                    }
                    // Down before: foca follows with MemberUp if the new one is alive.
                    _ => {
                        self.reported.insert(new.addr, (new, MemberState::Down));
                    }
                }
            }
            OwnedNotification::Active => {
                tracing::info!(identity = %self.foca.identity(), "gossip: joined the cluster");
            }
            OwnedNotification::Idle => {
                tracing::warn!("gossip: no other member is alive; retrying the seeds");
            }
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(identity = %id, "gossip: the cluster declared us down; rejoined");
                // Being declared down means we did not refute in time: likely slow.
                if self.config.local_health {
                    self.health_changed = Instant::now();
                    self.set_health_score(self.health_score + 1);
                }
                self.current.send_replace(id);
                self.queue_own_items();
            }
            // Leaving makes our own identity defunct: expected then.
            OwnedNotification::Defunct if self.leaving => {}
            OwnedNotification::Defunct => {
                tracing::error!("gossip: declared down and unable to renew the identity");
            }
        }
    }

    /// Sends our items to one member, as few datagrams as they fit in.
    async fn push_own_items(&mut self, to: SocketAddr) {
        let room = self.config.max_datagram - ENVELOPE_LEN;
        let mut datagram = Vec::with_capacity(room);
        for framed in std::mem::take(&mut self.own_items) {
            if !datagram.is_empty() && datagram.len() + framed.len() > room {
                self.send(Kind::Push, to, &datagram).await;
                datagram.clear();
            }
            datagram.extend_from_slice(&framed);
            self.own_items.push(framed);
        }
        self.send(Kind::Push, to, &datagram).await;
        let me = Member::new(self.foca.identity().clone(), 0, State::Alive);
        let mut introduction = Vec::new();
        match GossipCodec.encode_member(&me, &mut introduction) {
            Ok(()) => self.send(Kind::Introduce, to, &introduction).await,
            Err(e) => tracing::debug!(error = %e, "gossip: encoding our introduction"),
        }
    }

    fn emit_accepted_items(&mut self) {
        let accepted = self.table.lock().take_accepted();
        for item in accepted {
            self.emit(match item {
                Item::Metadata {
                    node,
                    version,
                    metadata,
                } => GossipEvent::Metadata {
                    node,
                    version,
                    metadata,
                },
                Item::Health {
                    node,
                    version,
                    digest,
                } => GossipEvent::Health {
                    node,
                    version,
                    digest,
                },
            });
        }
    }

    fn emit(&self, event: GossipEvent) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }

    async fn send(&mut self, kind: Kind, to: SocketAddr, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        self.send_buf.clear();
        wire::write_envelope(&mut self.send_buf, kind, self.tag);
        self.send_buf.extend_from_slice(payload);
        if self.send_buf.len() > self.config.max_datagram {
            // foca bounds its messages and our items are bounded; never send more.
            tracing::warn!(
                len = self.send_buf.len(),
                "gossip: datagram over the limit not sent"
            );
            return;
        }
        match self.socket.send_to(&self.send_buf, to).await {
            Ok(sent) => {
                self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_sent
                    .fetch_add(sent as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%to, error = %e, "gossip: send");
            }
        }
    }
}

enum Step {
    Shutdown,
    Timers,
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Command(Option<Command>),
    Checks,
    Scan,
    Refresh,
}

fn member_state(state: State) -> MemberState {
    match state {
        State::Alive => MemberState::Alive,
        State::Suspect => MemberState::Suspect,
        State::Down => MemberState::Down,
    }
}
