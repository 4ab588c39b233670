//! The reconciler: makes the node's containers match the desired assignments.
//!
//! Desired is the latest assignment set ([`DesiredSet`]); actual is
//! `runtime.list_owned()`. Per desired allocation: no container → prepare, create,
//! start; a container from another spec hash → stop, remove, create the new one; an
//! exited container → restarted per the spec's restart policy after a [`Backoff`]
//! delay. Owned containers of allocations no longer desired are stopped and removed.
//! Containers without `constellation.managed=true` are never touched (the runtime only
//! lists and reports ours).
//!
//! Until the first FULL assignment set arrives nothing is created or removed: running
//! containers are only observed (and adopted by label once the FULL lists them). When
//! the control plane is unreachable the last desired set stays and reconciling goes on.
//!
//! [`Reconciler::run`] is driven by the runtime's events (one allocation at a time), a
//! full resync every [`RESYNC_PERIOD`], and the earliest pending restart. New
//! allocations start as a pool, `start_concurrency` at a time; while the pool runs it
//! keeps reading assignments, so new allocations join it and other changes wait for
//! it to drain (the engine is not left idle behind the pool's slowest container).

mod backoff;
mod desired;
mod fallback;
mod status;

pub use backoff::{Backoff, BackoffPolicy};
pub use desired::{Applied, DesiredSet};
pub use fallback::{Fallback, FallbackPolicy, Mode, OnPrimaryExit, Probe};
pub use status::StatusQueue;

use crate::runtime::{
    ContainerId, ContainerRuntime, LABEL_SPEC_HASH, Observed, OwnedContainer, RuntimeError,
    fallback_assignment, fallback_label, name_endpoints,
};
use crate::state_file::StateFile;
use constellation_proto::v1::{
    AllocationReport, AllocationState, AllocationStatus, Assignment, Assignments, AssignmentsKind,
    HealthState, RestartCondition,
};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Period of the full resync that catches what events missed.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(60);
/// Stop grace when the spec gives none (or is unknown).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// First wait before pinging the engine again after its events failed.
pub const ENGINE_RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Cap of that wait.
pub const ENGINE_RETRY_MAX: Duration = Duration::from_secs(10);
/// Containers prepared, created and started at once, by default.
pub const DEFAULT_START_CONCURRENCY: usize = 8;
/// Most assignments messages (or container events) handled in one pass.
const MAX_BATCH: usize = 1024;

/// What the reconciler remembers about one allocation between passes.
#[derive(Debug, Clone)]
struct AllocState {
    backoff: Backoff,
    restart_count: u32,
    /// When the next attempt (restart, or prepare after a failure) is due.
    next_restart_at: Option<Instant>,
    stop_grace: Duration,
    /// Whether the primary or a fallback should run.
    fallback: Fallback,
    /// Restart delays of the running fallback (a fresh one per fallback).
    fallback_backoff: Backoff,
    /// When the fallback's next attempt is due.
    fallback_restart_at: Option<Instant>,
}

impl AllocState {
    fn new(policy: BackoffPolicy, fallback: FallbackPolicy) -> Self {
        Self {
            backoff: Backoff::new(policy),
            restart_count: 0,
            next_restart_at: None,
            stop_grace: DEFAULT_STOP_GRACE,
            fallback: Fallback::new(fallback),
            fallback_backoff: Backoff::new(policy),
            fallback_restart_at: None,
        }
    }

    /// When this allocation next needs a pass without any event.
    fn wake_at(&self) -> Option<Instant> {
        [
            self.next_restart_at,
            self.fallback_restart_at,
            self.fallback.wake_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The containers of one allocation of the current spec, sorted by role.
#[derive(Debug, Default)]
struct Roles {
    primary: Option<OwnedContainer>,
    /// Fallback containers by index in the spec's `fallbacks`.
    fallbacks: BTreeMap<usize, OwnedContainer>,
}

/// Drives a [`ContainerRuntime`] towards the desired assignments and queues status
/// reports on a [`StatusQueue`].
pub struct Reconciler<R> {
    runtime: Arc<R>,
    status: Arc<StatusQueue>,
    desired: DesiredSet,
    allocs: HashMap<String, AllocState>,
    /// Replaces 0.0.0.0 / :: / empty host addresses in endpoints.
    advertise_ip: String,
    /// Where the desired set is saved on every change, if anywhere.
    state_file: Option<StateFile>,
    start_concurrency: usize,
    /// The assignments stream while [`Reconciler::run`] runs: a batch of starts keeps
    /// reading it, so what arrives meanwhile joins the batch instead of waiting for
    /// its slowest container.
    incoming: Option<mpsc::Receiver<Assignments>>,
    /// Allocations changed while a batch was starting, reconciled once it is done.
    deferred: BTreeSet<String>,
    /// A FULL arrived while a batch was starting: everything is reconciled after it.
    deferred_full: bool,
}

/// Why starting a new container failed, and the container if one was created.
#[derive(Debug)]
struct Failure {
    container: Option<ContainerId>,
    message: String,
    /// The engine could not be reached: the attempt does not count against the
    /// container (see [`Reconciler::failed`]).
    engine_unreachable: bool,
}

impl Failure {
    /// `doing` (a step such as "start") failed with `e`, on `container` if one exists.
    fn new(container: Option<&ContainerId>, doing: &str, e: &RuntimeError) -> Self {
        Self {
            container: container.cloned(),
            message: format!("{doing}: {e}"),
            engine_unreachable: e.is_engine_unreachable(),
        }
    }
}

/// Prepares, creates, starts and inspects a container for `a`.
async fn start_one<R: ContainerRuntime>(runtime: &R, a: &Assignment) -> Result<Observed, Failure> {
    let prepared = runtime
        .prepare(a)
        .await
        .map_err(|e| Failure::new(None, "prepare", &e))?;
    let cid = runtime
        .create(a, &prepared)
        .await
        .map_err(|e| Failure::new(None, "create", &e))?;
    runtime
        .start(&cid)
        .await
        .map_err(|e| Failure::new(Some(&cid), "start", &e))?;
    runtime
        .inspect(&cid)
        .await
        .map_err(|e| Failure::new(Some(&cid), "inspect", &e))
}

/// Stops and removes an allocation's containers and deletes its files; returns the
/// last container (for the final report).
async fn remove_containers<R: ContainerRuntime>(
    runtime: &R,
    id: &str,
    containers: Vec<OwnedContainer>,
    grace: Duration,
) -> Option<OwnedContainer> {
    let mut last = None;
    for c in containers {
        tracing::info!(allocation = %id, container = %c.container_id, "reconcile: removing a container no longer assigned");
        if let Err(e) = runtime.stop(&c.container_id, grace).await {
            tracing::warn!(container = %c.container_id, error = %e, "reconcile: stopping failed; removing anyway");
        }
        if let Err(e) = runtime.remove(&c.container_id).await {
            tracing::warn!(container = %c.container_id, error = %e, "reconcile: removing failed");
        }
        last = Some(c);
    }
    if let Err(e) = runtime.release_files(id).await {
        tracing::warn!(allocation = %id, error = %e, "reconcile: releasing files failed");
    }
    last
}

/// The next assignments message; never resolves without a stream or once it ended.
async fn next_incoming(incoming: &mut Option<mpsc::Receiver<Assignments>>) -> Option<Assignments> {
    match incoming {
        Some(rx) => match rx.recv().await {
            Some(msg) => Some(msg),
            None => {
                *incoming = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

fn allocation_id(a: &Assignment) -> Option<String> {
    a.allocation
        .as_ref()
        .map(|al| al.id.clone())
        .filter(|id| !id.is_empty())
}

impl<R: ContainerRuntime + 'static> Reconciler<R> {
    pub fn new(runtime: Arc<R>, status: Arc<StatusQueue>, advertise_ip: impl Into<String>) -> Self {
        Self {
            runtime,
            status,
            desired: DesiredSet::default(),
            allocs: HashMap::new(),
            advertise_ip: advertise_ip.into(),
            state_file: None,
            start_concurrency: DEFAULT_START_CONCURRENCY,
            incoming: None,
            deferred: BTreeSet::new(),
            deferred_full: false,
        }
    }

    /// Containers prepared, created and started at once (at least 1).
    pub fn with_start_concurrency(mut self, n: usize) -> Self {
        self.start_concurrency = n.max(1);
        self
    }

    /// Saves the desired set to `file` on every change, and starts from the set it
    /// holds: those allocations are run (and restarted) before the control plane is
    /// reached, but nothing is removed until a FULL from the control plane arrives.
    pub fn with_state_file(mut self, file: StateFile) -> Self {
        match file.load() {
            Ok(Some(saved)) => {
                if let Applied::Changed(ids) = self.desired.restore(saved) {
                    tracing::info!(
                        allocations = ids.len(), file = %file.path().display(),
                        "reconcile: restored the last assignment set"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: the saved assignment set is unreadable; ignored")
            }
        }
        self.state_file = Some(file);
        self
    }

    pub fn desired(&self) -> &DesiredSet {
        &self.desired
    }

    pub fn status(&self) -> &Arc<StatusQueue> {
        &self.status
    }

    /// Applies an assignments message to the desired set (not to the containers; see
    /// [`Self::handle`]).
    pub fn apply(&mut self, msg: Assignments) -> Applied {
        let applied = self.desired.apply(msg);
        match &applied {
            Applied::Changed(ids) => {
                self.status.set_applied_version(self.desired.version());
                if let Some(f) = &self.state_file
                    && let Err(e) = f.save(&self.desired.to_full())
                {
                    tracing::warn!(error = %e, file = %f.path().display(), "reconcile: saving the assignment set failed");
                }
                tracing::debug!(
                    version = self.desired.version(),
                    changed = ids.len(),
                    desired = self.desired.len(),
                    "reconcile: assignments applied"
                );
            }
            Applied::Ignored(why) => {
                tracing::warn!(reason = %why, "reconcile: assignments ignored; waiting for the next FULL");
            }
        }
        applied
    }

    /// Applies an assignments message and reconciles what it changed (everything for a
    /// FULL).
    pub async fn handle(&mut self, msg: Assignments) {
        self.handle_batch(vec![msg]).await;
    }

    /// Applies assignments messages in order and reconciles what they changed in one
    /// pass (everything when one of them is a FULL).
    pub async fn handle_batch(&mut self, msgs: Vec<Assignments>) {
        let mut full = false;
        let mut changed = BTreeSet::new();
        for msg in msgs {
            let is_full = msg.kind() == AssignmentsKind::Full;
            if let Applied::Changed(ids) = self.apply(msg) {
                full |= is_full;
                changed.extend(ids);
            }
        }
        if full {
            self.reconcile_all().await;
        } else if !changed.is_empty() {
            self.reconcile_ids(changed).await;
        }
    }

    /// Reports every owned container as it is, without changing anything.
    pub async fn observe_all(&mut self) {
        let owned = match self.runtime.list_owned().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: listing containers failed");
                return;
            }
        };
        let mut owned = owned;
        // A running container is observed last, so its report is the one that stays.
        owned.sort_by_key(|c| c.running);
        for c in owned {
            if !c.allocation_id.is_empty() {
                self.observe(&c).await;
            }
        }
    }

    /// One pass over every desired allocation and every owned container. Returns
    /// false when the runtime could not be listed.
    pub async fn reconcile_all(&mut self) -> bool {
        if !self.desired.is_known() {
            self.observe_all().await;
            return true;
        }
        let owned = match self.runtime.list_owned().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: listing containers failed");
                return false;
            }
        };
        let groups = group(owned);
        let ids: BTreeSet<String> = self
            .desired
            .ids()
            .cloned()
            .chain(groups.keys().cloned())
            .chain(self.allocs.keys().cloned())
            .collect();
        self.reconcile_groups(ids, groups).await;
        true
    }

    /// Reconciles one allocation.
    pub async fn reconcile_allocation(&mut self, id: &str) {
        self.reconcile_ids(BTreeSet::from([id.to_owned()])).await;
    }

    /// Reconciles the given allocations after one listing of the containers.
    pub async fn reconcile_ids(&mut self, ids: BTreeSet<String>) {
        let owned = match self.runtime.list_owned().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: listing containers failed");
                return;
            }
        };
        let groups: BTreeMap<String, Vec<OwnedContainer>> = group(owned)
            .into_iter()
            .filter(|(id, _)| ids.contains(id))
            .collect();
        if !self.desired.is_known() {
            for c in groups.values().flatten() {
                self.observe(c).await;
            }
            return;
        }
        self.reconcile_groups(ids, groups).await;
    }

    /// Reconciles `ids`: the allocations that only need a new container first, up to
    /// `start_concurrency` of them at once, then the others one by one.
    async fn reconcile_groups(
        &mut self,
        ids: BTreeSet<String>,
        mut groups: BTreeMap<String, Vec<OwnedContainer>>,
    ) {
        let now = Instant::now();
        let mut fresh = Vec::new();
        for id in &ids {
            if groups.get(id).is_some_and(|g| !g.is_empty()) {
                continue;
            }
            let Some(a) = self.desired.get(id).cloned() else {
                continue;
            };
            self.ensure_state(id, &a);
            let s = &self.allocs[id];
            if s.fallback.mode() == Mode::Primary && s.next_restart_at.is_none_or(|t| t <= now) {
                fresh.push(a);
            }
        }
        if fresh.len() > 1 {
            self.start_new(fresh.clone()).await;
        } else {
            fresh.clear();
        }
        let mut done: BTreeSet<String> = fresh.iter().filter_map(allocation_id).collect();
        if self.desired.is_authoritative() {
            let removals: Vec<(String, Vec<OwnedContainer>)> = ids
                .iter()
                .filter(|id| !self.desired.contains(id))
                .filter_map(|id| groups.remove(id).map(|g| (id.clone(), g)))
                .filter(|(_, g)| !g.is_empty())
                .collect();
            done.extend(removals.iter().map(|(id, _)| id.clone()));
            self.remove_allocations(removals).await;
        }
        for id in ids {
            if done.contains(&id) {
                continue;
            }
            let containers = groups.remove(&id).unwrap_or_default();
            self.reconcile_with(&id, containers).await;
        }
    }

    /// Prepares, creates and starts a container for each assignment, at most
    /// `start_concurrency` at once, and reports each outcome as it comes. While they
    /// start, assignments keep arriving (under [`Reconciler::run`]): the allocations
    /// they add join the queue, so the engine is never left idle waiting for the
    /// batch's slowest container; any other change waits in `deferred` until the
    /// batch is done.
    async fn start_new(&mut self, assignments: Vec<Assignment>) {
        let mut queue: VecDeque<Assignment> = VecDeque::new();
        for a in assignments {
            self.enqueue_start(&mut queue, a);
        }
        tracing::debug!(
            count = queue.len(),
            concurrency = self.start_concurrency,
            "reconcile: starting containers"
        );
        let runtime = self.runtime.clone();
        let mut starting = FuturesUnordered::new();
        loop {
            while starting.len() < self.start_concurrency {
                let Some(a) = queue.pop_front() else { break };
                let runtime = runtime.clone();
                starting.push(async move {
                    let outcome = start_one(&*runtime, &a).await;
                    (a, outcome)
                });
            }
            if starting.is_empty() {
                break;
            }
            tokio::select! {
                Some((a, outcome)) = starting.next() => self.finish_start(a, outcome),
                Some(msg) = next_incoming(&mut self.incoming) => {
                    self.take_in_while_starting(msg, &mut queue);
                }
            }
        }
    }

    /// Marks `a` as being prepared and queues its start.
    fn enqueue_start(&mut self, queue: &mut VecDeque<Assignment>, a: Assignment) {
        if let Some(id) = allocation_id(&a) {
            self.allocs
                .get_mut(&id)
                .expect("state exists")
                .next_restart_at = None;
            self.push(&id, &a, AllocationState::Preparing, None, String::new());
        }
        queue.push_back(a);
    }

    /// Applies an assignments message that arrived while a batch was starting: the
    /// allocations it adds (never seen before, so without a container) are queued;
    /// every other change is left for after the batch. Whatever is queued or starting
    /// already has its state, so "never seen" is "no state".
    fn take_in_while_starting(&mut self, msg: Assignments, queue: &mut VecDeque<Assignment>) {
        let is_full = msg.kind() == AssignmentsKind::Full;
        let Applied::Changed(ids) = self.apply(msg) else {
            return;
        };
        if is_full {
            self.deferred_full = true;
            return;
        }
        for id in ids {
            let new = !self.allocs.contains_key(&id);
            match self.desired.get(&id).cloned() {
                Some(a) if new => {
                    self.ensure_state(&id, &a);
                    if self.allocs[&id].fallback.mode() == Mode::Primary {
                        self.enqueue_start(queue, a);
                    } else {
                        self.deferred.insert(id);
                    }
                }
                _ => {
                    self.deferred.insert(id);
                }
            }
        }
    }

    /// Records the outcome of one start and reports it.
    fn finish_start(&mut self, a: Assignment, outcome: Result<Observed, Failure>) {
        let Some(id) = allocation_id(&a) else {
            return;
        };
        match outcome {
            Ok(obs) => {
                tracing::info!(allocation = %id, container = %obs.container_id, "reconcile: container started");
                if let Some(s) = self.allocs.get_mut(&id) {
                    s.backoff.started(Instant::now());
                }
                let state = if obs.running {
                    AllocationState::Running
                } else {
                    AllocationState::Starting
                };
                let report = self.report(&id, &a, &obs, state, String::new());
                self.status.push(report);
            }
            Err(f) => self.failed(&id, &a, f),
        }
    }

    /// The earliest pending restart or retry.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.allocs.values().filter_map(AllocState::wake_at).min()
    }

    /// Reconciles the allocations whose restart or retry is due.
    pub async fn reconcile_due(&mut self) {
        let now = Instant::now();
        let due: BTreeSet<String> = self
            .allocs
            .iter()
            .filter(|(_, s)| s.wake_at().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        if !due.is_empty() {
            self.reconcile_ids(due).await;
        }
    }

    /// Runs until `cancel`: assignments from `assignments`, the runtime's events, the
    /// periodic resync and pending restarts each trigger a reconcile. Messages and
    /// events that queued up meanwhile are handled together, in one pass.
    pub async fn run(
        mut self,
        assignments: mpsc::Receiver<Assignments>,
        cancel: CancellationToken,
    ) {
        self.incoming = Some(assignments);
        let mut events = self.runtime.events();
        let mut resync = tokio::time::interval(RESYNC_PERIOD);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if std::mem::take(&mut self.deferred_full) {
                self.deferred.clear();
                self.reconcile_all().await;
                continue;
            }
            if !self.deferred.is_empty() {
                let ids = std::mem::take(&mut self.deferred);
                self.reconcile_ids(ids).await;
                continue;
            }
            let wake = self.next_wakeup();
            let due = async move {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                Some(msg) = next_incoming(&mut self.incoming) => {
                    let mut batch = vec![msg];
                    while batch.len() < MAX_BATCH
                        && let Some(m) = self.incoming.as_mut().and_then(|rx| rx.try_recv().ok())
                    {
                        batch.push(m);
                    }
                    self.handle_batch(batch).await;
                }
                event = events.next() => {
                    let mut ids = BTreeSet::new();
                    let mut failed = None;
                    let mut next = Some(event);
                    while let Some(event) = next.take() {
                        match event {
                            Some(Ok(e)) => {
                                if !e.allocation_id.is_empty() {
                                    tracing::debug!(allocation = %e.allocation_id, kind = ?e.kind, "reconcile: container event");
                                    ids.insert(e.allocation_id);
                                }
                            }
                            Some(Err(e)) => failed = Some(e.to_string()),
                            None => failed = Some("the stream ended".into()),
                        }
                        if failed.is_none() && ids.len() < MAX_BATCH {
                            next = events.next().now_or_never();
                        }
                    }
                    if !ids.is_empty() {
                        self.reconcile_ids(ids).await;
                    }
                    if let Some(why) = failed {
                        tracing::warn!(reason = %why, "reconcile: docker events failed; waiting for the engine");
                        if !self.wait_for_engine(&cancel).await {
                            return;
                        }
                        events = self.runtime.events();
                        self.reconcile_all().await;
                    }
                },
                _ = resync.tick() => {
                    self.reconcile_all().await;
                }
                () = due => self.reconcile_due().await,
            }
        }
    }

    /// Pings the engine with growing delays ([`ENGINE_RETRY_INITIAL`] doubling to
    /// [`ENGINE_RETRY_MAX`]) until it answers; false when cancelled first.
    async fn wait_for_engine(&self, cancel: &CancellationToken) -> bool {
        let mut delay = ENGINE_RETRY_INITIAL;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            match self.runtime.ping().await {
                Ok(()) => {
                    tracing::info!("reconcile: docker engine reachable; resynchronising");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "reconcile: docker engine unreachable");
                    delay = (delay * 2).min(ENGINE_RETRY_MAX);
                }
            }
        }
    }

    /// Creates the allocation's state on first sight and refreshes its policies from
    /// the spec. Returns true when it was created.
    fn ensure_state(&mut self, id: &str, a: &Assignment) -> bool {
        let spec = a.spec.clone().unwrap_or_default();
        let policy = BackoffPolicy::from_spec(spec.restart.as_ref());
        let fallback_policy = FallbackPolicy::from_spec(&spec);
        let grace = spec
            .stop_grace_period
            .as_ref()
            .filter(|d| d.seconds >= 0 && d.nanos >= 0)
            .map_or(DEFAULT_STOP_GRACE, |d| {
                Duration::new(d.seconds as u64, d.nanos as u32)
            });
        let fresh = !self.allocs.contains_key(id);
        let state = self
            .allocs
            .entry(id.to_owned())
            .or_insert_with(|| AllocState::new(policy, fallback_policy.clone()));
        state.backoff.set_policy(policy);
        state.fallback_backoff.set_policy(policy);
        state.fallback.set_policy(fallback_policy);
        state.stop_grace = grace;
        fresh
    }

    async fn reconcile_with(&mut self, id: &str, containers: Vec<OwnedContainer>) {
        let now = Instant::now();
        let Some(a) = self.desired.get(id).cloned() else {
            if self.desired.is_authoritative() {
                self.remove_allocation(id, containers).await;
            } else {
                // A restored set may be older than these containers: leave them be
                // until the control plane says.
                for c in &containers {
                    self.observe(c).await;
                }
            }
            return;
        };
        let spec = a.spec.clone().unwrap_or_default();
        let fresh = self.ensure_state(id, &a);
        let grace = self.allocs[id].stop_grace;

        // Keep one primary of the current spec hash (a running one if any) and one
        // container per fallback of the spec; stop and remove the rest.
        let (mut matching, mut stale): (Vec<_>, Vec<_>) = containers
            .into_iter()
            .partition(|c| c.spec_hash == a.spec_hash);
        let replaced = !stale.is_empty();
        matching.sort_by_key(|c| !c.running);
        let mut roles = Roles::default();
        for c in matching {
            if c.fallback.is_empty() {
                if roles.primary.is_none() {
                    roles.primary = Some(c);
                    continue;
                }
            } else if let Some(index) = (0..spec.fallbacks.len())
                .find(|i| fallback_label(&spec, *i).as_deref() == Some(c.fallback.as_str()))
                && !roles.fallbacks.contains_key(&index)
            {
                roles.fallbacks.insert(index, c);
                continue;
            }
            stale.push(c);
        }
        for c in stale {
            tracing::info!(
                allocation = %id, container = %c.container_id, old_hash = %c.spec_hash,
                new_hash = %a.spec_hash, "reconcile: removing a container of another spec"
            );
            self.stop_and_remove(&c.container_id, grace).await;
        }
        let state = self.allocs.get_mut(id).expect("state exists");
        if replaced && roles.primary.is_none() {
            // A new spec starts at once, whatever the old one was waiting for, and
            // gives the primary its chance again.
            state.next_restart_at = None;
            state.fallback_restart_at = None;
            state.fallback.reset();
        }
        if fresh && !roles.primary.as_ref().is_some_and(|c| c.running) {
            // A restarted agent carries on with the fallback it finds running.
            if let Some((index, _)) = roles.fallbacks.iter().find(|(_, c)| c.running) {
                state.fallback.adopt(*index, now);
            }
        }

        match state.fallback.mode() {
            Mode::Primary => {
                for (_, c) in std::mem::take(&mut roles.fallbacks) {
                    tracing::info!(allocation = %id, container = %c.container_id, "reconcile: removing the fallback; the primary runs");
                    self.stop_and_remove(&c.container_id, grace).await;
                }
                match roles.primary {
                    Some(c) => self.tend(id, &a, &c.container_id, now).await,
                    None => self.create_and_start(id, &a, now).await,
                }
            }
            Mode::Fallback { index, .. } => {
                if state.fallback.probe_due(now) {
                    return self.probe(id, &a, index, roles, now).await;
                }
                if let Some(c) = roles.primary.as_ref().filter(|c| c.running) {
                    // The fallback may need the primary's host ports.
                    self.stop(&c.container_id, grace).await;
                }
                self.tend_fallback(id, &a, index, roles, false, now).await;
            }
            Mode::Probing { .. } => self.tend_probe(id, &a, roles, now).await,
        }
    }

    /// The primary's recovery interval is up: stop the fallback and start the primary.
    async fn probe(&mut self, id: &str, a: &Assignment, index: usize, roles: Roles, now: Instant) {
        let state = self.allocs.get_mut(id).expect("state exists");
        state.fallback.start_probe(now);
        state.next_restart_at = None;
        state.restart_count = state.restart_count.saturating_add(1);
        let grace = state.stop_grace;
        tracing::info!(allocation = %id, fallback = index, "reconcile: probing the primary");
        if let Some(c) = roles.fallbacks.get(&index) {
            self.stop(&c.container_id, grace).await;
        }
        let Some(c) = roles.primary.clone() else {
            return self.create_and_start(id, a, now).await;
        };
        if let Err(e) = self.runtime.start(&c.container_id).await {
            tracing::warn!(allocation = %id, error = %e, "reconcile: starting the primary for a probe failed");
            if let Some(s) = self.allocs.get_mut(id) {
                s.fallback.primary_exited(u32::MAX, Instant::now());
            }
            return self.tend_fallback(id, a, index, roles, true, now).await;
        }
        if let Some(s) = self.allocs.get_mut(id) {
            s.backoff.started(Instant::now());
        }
        self.report_container(id, a, &c.container_id).await;
    }

    /// A probe runs: decide from the primary's state whether it is back.
    async fn tend_probe(&mut self, id: &str, a: &Assignment, roles: Roles, now: Instant) {
        let Some(c) = roles.primary.clone() else {
            return self.create_and_start(id, a, now).await;
        };
        let obs = match self.runtime.inspect(&c.container_id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(allocation = %id, container = %c.container_id, error = %e, "reconcile: inspect failed");
                return;
            }
        };
        let state = self.allocs.get_mut(id).expect("state exists");
        let grace = state.stop_grace;
        match state
            .fallback
            .primary_observed(obs.running, obs.health, now)
        {
            Probe::Recovered => {
                tracing::info!(allocation = %id, container = %c.container_id, "reconcile: the primary recovered; removing the fallback");
                state.fallback_restart_at = None;
                for c in roles.fallbacks.values() {
                    self.stop_and_remove(&c.container_id, grace).await;
                }
                let report = self.report(id, a, &obs, AllocationState::Running, String::new());
                self.status.push(report);
            }
            Probe::Failed(index) => {
                tracing::info!(
                    allocation = %id, exit_code = obs.exit_code, health = ?obs.health,
                    "reconcile: the primary failed its probe; back to the fallback"
                );
                if obs.running {
                    self.stop(&c.container_id, grace).await;
                }
                self.tend_fallback(id, a, index, roles, true, now).await;
            }
            Probe::Pending | Probe::None => {
                let state = if obs.running {
                    AllocationState::Running
                } else {
                    AllocationState::Starting
                };
                let report = self.report(id, a, &obs, state, String::new());
                self.status.push(report);
            }
        }
    }

    /// Fallback `index` should run: create it, restart it after its backoff delay, or
    /// (with `resume`, after a failed probe stopped it) start it at once.
    async fn tend_fallback(
        &mut self,
        id: &str,
        a: &Assignment,
        index: usize,
        mut roles: Roles,
        resume: bool,
        now: Instant,
    ) {
        let Some(fa) = fallback_assignment(a, index) else {
            return;
        };
        let label = fallback_label(a.spec.as_ref().expect("checked"), index).unwrap_or_default();
        let grace = self.allocs[id].stop_grace;
        for (i, c) in roles.fallbacks.clone() {
            if i != index {
                self.stop_and_remove(&c.container_id, grace).await;
                roles.fallbacks.remove(&i);
            }
        }
        let state = self.allocs.get_mut(id).expect("state exists");
        let Some(c) = roles.fallbacks.remove(&index) else {
            if state.fallback_restart_at.is_some_and(|t| t > now) {
                return;
            }
            state.fallback_restart_at = None;
            tracing::info!(allocation = %id, fallback = %label, "reconcile: starting the fallback");
            let started = async {
                let prepared = self
                    .runtime
                    .prepare(&fa)
                    .await
                    .map_err(|e| format!("prepare: {e}"))?;
                let cid = self
                    .runtime
                    .create(&fa, &prepared)
                    .await
                    .map_err(|e| format!("create: {e}"))?;
                self.runtime
                    .start(&cid)
                    .await
                    .map_err(|e| format!("start: {e}"))?;
                Ok::<_, String>(cid)
            }
            .await;
            return match started {
                Ok(cid) => {
                    if let Some(s) = self.allocs.get_mut(id) {
                        s.fallback_backoff.started(Instant::now());
                    }
                    self.report_fallback(id, a, &cid, &label).await;
                }
                Err(message) => self.fallback_failed(id, a, &label, message),
            };
        };
        let obs = match self.runtime.inspect(&c.container_id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(allocation = %id, container = %c.container_id, error = %e, "reconcile: inspect failed");
                return;
            }
        };
        let state = self.allocs.get_mut(id).expect("state exists");
        if obs.running {
            state.fallback_backoff.observe_running(now);
            state.fallback_restart_at = None;
            let mut report = self.report(id, a, &obs, AllocationState::Running, String::new());
            set_fallback(&mut report, &label);
            self.status.push(report);
            return;
        }
        let due = match (resume, state.fallback_restart_at) {
            (true, _) => true,
            (false, None) => {
                let next = state
                    .fallback
                    .fallback_exited(state.fallback_backoff.attempts(), now);
                if next != index {
                    tracing::warn!(allocation = %id, fallback = %label, "reconcile: the fallback exhausted its restarts; trying the next one");
                    state.fallback_backoff = Backoff::new(state.backoff.policy());
                    state.fallback_restart_at = None;
                    self.stop_and_remove(&c.container_id, grace).await;
                    roles.fallbacks.clear();
                    return Box::pin(self.tend_fallback(id, a, next, roles, false, now)).await;
                }
                let delay = state.fallback_backoff.failed(now);
                state.fallback_restart_at = Some(now + delay);
                tracing::info!(allocation = %id, fallback = %label, exit_code = obs.exit_code, ?delay, "reconcile: the fallback exited; restarting after a delay");
                let mut report =
                    self.report(id, a, &obs, AllocationState::Restarting, String::new());
                set_fallback(&mut report, &label);
                self.status.push(report);
                false
            }
            (false, Some(t)) => t <= now,
        };
        if !due {
            return;
        }
        let state = self.allocs.get_mut(id).expect("state exists");
        state.fallback_restart_at = None;
        if let Err(e) = self.runtime.start(&c.container_id).await {
            return self.fallback_failed(id, a, &label, format!("start: {e}"));
        }
        if let Some(s) = self.allocs.get_mut(id) {
            s.fallback_backoff.started(Instant::now());
        }
        self.report_fallback(id, a, &c.container_id, &label).await;
    }

    /// Starting the fallback failed: FAILED with `message`, retried after its delay.
    fn fallback_failed(&mut self, id: &str, a: &Assignment, label: &str, message: String) {
        let now = Instant::now();
        let state = self.allocs.get_mut(id).expect("state exists");
        let delay = state.fallback_backoff.failed(now);
        state.fallback_restart_at = Some(now + delay);
        tracing::warn!(allocation = %id, fallback = %label, error = %message, retry_in = ?delay, "reconcile: fallback failed");
        self.push(id, a, AllocationState::Failed, None, message);
        if let Some(mut r) = self.status.latest(id) {
            set_fallback(&mut r, label);
            self.status.push(r);
        }
    }

    async fn report_fallback(&mut self, id: &str, a: &Assignment, cid: &ContainerId, label: &str) {
        self.report_container(id, a, cid).await;
        if let Some(mut r) = self.status.latest(id) {
            set_fallback(&mut r, label);
            self.status.push(r);
        }
    }

    async fn stop(&self, id: &ContainerId, grace: Duration) {
        if let Err(e) = self.runtime.stop(id, grace).await {
            tracing::warn!(container = %id, error = %e, "reconcile: stopping failed");
        }
    }

    async fn remove_allocation(&mut self, id: &str, containers: Vec<OwnedContainer>) {
        if containers.is_empty() && !self.allocs.contains_key(id) {
            return;
        }
        let grace = self
            .allocs
            .get(id)
            .map_or(DEFAULT_STOP_GRACE, |s| s.stop_grace);
        let last = remove_containers(&*self.runtime, id, containers, grace).await;
        self.removed(id, last);
    }

    /// Removes the containers of several allocations no longer assigned, at most
    /// `start_concurrency` allocations at once.
    async fn remove_allocations(&mut self, removals: Vec<(String, Vec<OwnedContainer>)>) {
        let runtime = self.runtime.clone();
        let jobs: Vec<_> = removals
            .into_iter()
            .map(|(id, containers)| {
                let grace = self
                    .allocs
                    .get(&id)
                    .map_or(DEFAULT_STOP_GRACE, |s| s.stop_grace);
                (id, containers, grace)
            })
            .collect();
        let done: Vec<(String, Option<OwnedContainer>)> =
            futures::stream::iter(jobs.into_iter().map(|(id, containers, grace)| {
                let runtime = runtime.clone();
                async move {
                    let last = remove_containers(&*runtime, &id, containers, grace).await;
                    (id, last)
                }
            }))
            .buffer_unordered(self.start_concurrency)
            .collect()
            .await;
        for (id, last) in done {
            self.removed(&id, last);
        }
    }

    /// The allocation's containers are gone: forget it and report it STOPPED.
    fn removed(&mut self, id: &str, last: Option<OwnedContainer>) {
        let known = self.allocs.remove(id);
        self.status.push_final(AllocationReport {
            allocation_id: id.to_owned(),
            status: Some(AllocationStatus {
                state: AllocationState::Stopped as i32,
                container_id: last
                    .as_ref()
                    .map(|c| c.container_id.0.clone())
                    .unwrap_or_default(),
                restart_count: known.map_or(0, |s| s.restart_count),
                updated_at: Some(timestamp(SystemTime::now())),
                ..Default::default()
            }),
            spec_hash: last.map(|c| c.spec_hash).unwrap_or_default(),
        });
    }

    async fn stop_and_remove(&self, id: &ContainerId, grace: Duration) {
        if let Err(e) = self.runtime.stop(id, grace).await {
            tracing::warn!(container = %id, error = %e, "reconcile: stopping failed; removing anyway");
        }
        if let Err(e) = self.runtime.remove(id).await {
            tracing::warn!(container = %id, error = %e, "reconcile: removing failed");
        }
    }

    /// No container for the allocation: prepare, create and start one, unless a retry
    /// after a failure is not due yet.
    async fn create_and_start(&mut self, id: &str, a: &Assignment, now: Instant) {
        let state = self.allocs.get_mut(id).expect("state exists");
        if state.next_restart_at.is_some_and(|t| t > now) {
            return;
        }
        state.next_restart_at = None;
        self.push(id, a, AllocationState::Preparing, None, String::new());
        let prepared = match self.runtime.prepare(a).await {
            Ok(p) => p,
            Err(e) => return self.failed(id, a, Failure::new(None, "prepare", &e)),
        };
        let cid = match self.runtime.create(a, &prepared).await {
            Ok(c) => c,
            Err(e) => return self.failed(id, a, Failure::new(None, "create", &e)),
        };
        self.push(id, a, AllocationState::Starting, Some(&cid), String::new());
        if let Err(e) = self.runtime.start(&cid).await {
            return self.failed(id, a, Failure::new(Some(&cid), "start", &e));
        }
        tracing::info!(allocation = %id, container = %cid, "reconcile: container started");
        if let Some(s) = self.allocs.get_mut(id) {
            s.backoff.started(Instant::now());
        }
        self.report_container(id, a, &cid).await;
    }

    /// The allocation has a container of its spec: keep it running per the restart
    /// policy.
    async fn tend(&mut self, id: &str, a: &Assignment, cid: &ContainerId, now: Instant) {
        let obs = match self.runtime.inspect(cid).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => return self.create_and_start(id, a, now).await,
            Err(e) => {
                tracing::warn!(allocation = %id, container = %cid, error = %e, "reconcile: inspect failed");
                return;
            }
        };
        // Delays count from when the exit was seen, not from the start of the pass.
        let now = Instant::now().max(now);
        let state = self.allocs.get_mut(id).expect("state exists");
        if obs.running {
            state.backoff.observe_running(now);
            state.next_restart_at = None;
            let report = self.report(id, a, &obs, AllocationState::Running, String::new());
            self.status.push(report);
            return;
        }
        let condition = a
            .spec
            .as_ref()
            .and_then(|s| s.restart.as_ref())
            .map_or(RestartCondition::Always, |r| r.condition());
        let restart = match condition {
            RestartCondition::Never => false,
            RestartCondition::OnFailure => obs.exit_code != 0 || obs.oom_killed,
            RestartCondition::Always | RestartCondition::Unspecified => true,
        };
        if !restart {
            state.next_restart_at = None;
            let report = self.report(id, a, &obs, AllocationState::Exited, String::new());
            self.status.push(report);
            return;
        }
        match state.next_restart_at {
            None => {
                if let OnPrimaryExit::RunFallback(index) =
                    state.fallback.primary_exited(state.backoff.attempts(), now)
                {
                    tracing::warn!(
                        allocation = %id, container = %cid, exit_code = obs.exit_code,
                        failures = state.backoff.attempts(), "reconcile: the primary exhausted its restarts; running the fallback"
                    );
                    state.fallback_restart_at = None;
                    state.fallback_backoff = Backoff::new(state.backoff.policy());
                    return self
                        .tend_fallback(id, a, index, Roles::default(), false, now)
                        .await;
                }
                let delay = state.backoff.failed(now);
                state.next_restart_at = Some(now + delay);
                tracing::info!(
                    allocation = %id, container = %cid, exit_code = obs.exit_code,
                    oom_killed = obs.oom_killed, ?delay, "reconcile: container exited; restarting after a delay"
                );
                let report = self.report(id, a, &obs, AllocationState::Restarting, String::new());
                self.status.push(report);
            }
            Some(t) if t > now => {}
            Some(_) => {
                state.next_restart_at = None;
                state.restart_count = state.restart_count.saturating_add(1);
                tracing::info!(allocation = %id, container = %cid, restarts = state.restart_count, "reconcile: restarting container");
                if let Err(e) = self.runtime.start(cid).await {
                    return self.failed(id, a, Failure::new(Some(cid), "restart", &e));
                }
                if let Some(s) = self.allocs.get_mut(id) {
                    s.backoff.started(Instant::now());
                }
                self.report_container(id, a, cid).await;
            }
        }
    }

    /// An attempt failed: FAILED with its message, retried after the backoff delay.
    /// When the engine could not be reached the attempt is not counted (neither the
    /// backoff nor the restart budget that switches to a fallback moves: a long engine
    /// outage must not make a healthy service look broken) and is retried after
    /// [`ENGINE_RETRY_INITIAL`].
    fn failed(&mut self, id: &str, a: &Assignment, failure: Failure) {
        let Failure {
            container,
            message,
            engine_unreachable,
        } = failure;
        let cid = container.as_ref();
        let now = Instant::now();
        let state = self.allocs.get_mut(id).expect("state exists");
        if engine_unreachable {
            state.next_restart_at = Some(now + ENGINE_RETRY_INITIAL);
            tracing::warn!(allocation = %id, error = %message, "reconcile: docker engine unreachable; the attempt does not count");
            return self.push(id, a, AllocationState::Failed, cid, message);
        }
        if let OnPrimaryExit::RunFallback(_) =
            state.fallback.primary_exited(state.backoff.attempts(), now)
        {
            // The fallback starts on the next pass, which is due now.
            state.next_restart_at = None;
            state.fallback_restart_at = Some(now);
            state.fallback_backoff = Backoff::new(state.backoff.policy());
            tracing::warn!(allocation = %id, error = %message, "reconcile: the primary failed; running the fallback");
            return self.push(id, a, AllocationState::Failed, cid, message);
        }
        let delay = state.backoff.failed(now);
        state.next_restart_at = Some(now + delay);
        tracing::warn!(allocation = %id, error = %message, retry_in = ?delay, "reconcile: allocation failed");
        self.push(id, a, AllocationState::Failed, cid, message);
    }

    /// Inspects the container and reports it.
    async fn report_container(&mut self, id: &str, a: &Assignment, cid: &ContainerId) {
        match self.runtime.inspect(cid).await {
            Ok(obs) => {
                let state = if obs.running {
                    AllocationState::Running
                } else {
                    AllocationState::Starting
                };
                let report = self.report(id, a, &obs, state, String::new());
                self.status.push(report);
            }
            Err(e) => {
                tracing::warn!(allocation = %id, container = %cid, error = %e, "reconcile: inspect failed")
            }
        }
    }

    /// Reports a container as it is (before the desired set is known).
    async fn observe(&mut self, c: &OwnedContainer) {
        match self.runtime.inspect(&c.container_id).await {
            Ok(obs) => {
                let state = if obs.running {
                    AllocationState::Running
                } else {
                    AllocationState::Exited
                };
                let a = Assignment::default();
                let mut report = self.report(&c.allocation_id, &a, &obs, state, String::new());
                report.spec_hash = c.spec_hash.clone();
                set_fallback(&mut report, &c.fallback);
                self.status.push(report);
            }
            Err(e) => {
                tracing::debug!(container = %c.container_id, error = %e, "reconcile: inspect failed")
            }
        }
    }

    /// A report without a container observation.
    fn push(
        &mut self,
        id: &str,
        a: &Assignment,
        state: AllocationState,
        cid: Option<&ContainerId>,
        message: String,
    ) {
        let s = self.allocs.get(id);
        let status = AllocationStatus {
            state: state as i32,
            health: HealthState::Unspecified as i32,
            container_id: cid.map(|c| c.0.clone()).unwrap_or_default(),
            restart_count: s.map_or(0, |s| s.restart_count),
            message,
            updated_at: Some(timestamp(SystemTime::now())),
            next_restart_at: s.and_then(|s| s.next_restart_at).map(instant_timestamp),
            ..Default::default()
        };
        self.status.push(AllocationReport {
            allocation_id: id.to_owned(),
            status: Some(status),
            spec_hash: a.spec_hash.clone(),
        });
    }

    fn report(
        &self,
        id: &str,
        a: &Assignment,
        obs: &Observed,
        state: AllocationState,
        message: String,
    ) -> AllocationReport {
        let s = self.allocs.get(id);
        let endpoints = reachable_endpoints(&obs.endpoints, &self.advertise_ip);
        let mut endpoints = endpoints;
        if let Some(spec) = &a.spec {
            name_endpoints(&mut endpoints, spec);
        }
        let message = if message.is_empty() {
            obs.error.clone()
        } else {
            message
        };
        let spec_hash = obs
            .labels
            .get(LABEL_SPEC_HASH)
            .cloned()
            .unwrap_or_else(|| a.spec_hash.clone());
        AllocationReport {
            allocation_id: id.to_owned(),
            status: Some(AllocationStatus {
                state: state as i32,
                health: obs.health as i32,
                container_id: obs.container_id.0.clone(),
                restart_count: s.map_or(0, |s| s.restart_count),
                exit_code: if obs.running { 0 } else { obs.exit_code },
                oom_killed: obs.oom_killed,
                message,
                endpoints,
                started_at: obs.started_at,
                updated_at: Some(timestamp(SystemTime::now())),
                next_restart_at: s.and_then(|s| s.next_restart_at).map(instant_timestamp),
                networks: obs.networks.clone(),
                ..Default::default()
            }),
            spec_hash,
        }
    }
}

fn set_fallback(report: &mut AllocationReport, label: &str) {
    if let Some(s) = report.status.as_mut() {
        s.active_fallback = label.to_owned();
    }
}

fn group(owned: Vec<OwnedContainer>) -> BTreeMap<String, Vec<OwnedContainer>> {
    let mut groups: BTreeMap<String, Vec<OwnedContainer>> = BTreeMap::new();
    for c in owned {
        if c.allocation_id.is_empty() {
            tracing::debug!(container = %c.container_id, "reconcile: managed container without an allocation label; left alone");
            continue;
        }
        groups.entry(c.allocation_id.clone()).or_default().push(c);
    }
    groups
}

pub fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn instant_timestamp(t: Instant) -> pbjson_types::Timestamp {
    timestamp(SystemTime::now() + t.saturating_duration_since(Instant::now()))
}

/// The endpoints others can reach: a port bound on every address is reported at the
/// node's advertise address. Docker binds a port published on every address once per
/// family (0.0.0.0 and ::), sometimes on two different host ports; only the binding of
/// the advertise address's family is reachable there, so the other one is left out.
fn reachable_endpoints(
    observed: &[constellation_proto::v1::Endpoint],
    advertise_ip: &str,
) -> Vec<constellation_proto::v1::Endpoint> {
    let advertise_v6 = advertise_ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_ipv6());
    let mut seen = BTreeSet::new();
    observed
        .iter()
        .filter_map(|e| {
            let mut e = e.clone();
            let wildcard = match e.host_ip.as_str() {
                "" => Some(advertise_v6),
                "0.0.0.0" => Some(false),
                "::" => Some(true),
                _ => None,
            };
            match wildcard {
                Some(v6) if v6 != advertise_v6 => return None,
                Some(_) => e.host_ip = advertise_ip.to_owned(),
                None => {}
            }
            seen.insert((e.container_port, e.protocol, e.host_ip.clone(), e.host_port))
                .then_some(e)
        })
        .collect()
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;
    use constellation_proto::v1::Endpoint;

    fn ep(ip: &str, port: u32) -> Endpoint {
        Endpoint {
            container_port: 8080,
            host_ip: ip.into(),
            host_port: port,
            ..Default::default()
        }
    }

    #[test]
    fn wildcard_bindings_of_the_other_family_are_left_out() {
        let got = reachable_endpoints(&[ep("0.0.0.0", 32813), ep("::", 32812)], "10.1.2.3");
        assert_eq!(got, vec![ep("10.1.2.3", 32813)]);
        let got = reachable_endpoints(&[ep("0.0.0.0", 1), ep("::", 2)], "fd00::1");
        assert_eq!(got, vec![ep("fd00::1", 2)]);
    }

    #[test]
    fn specific_bindings_stay_and_duplicates_go() {
        let got = reachable_endpoints(&[ep("127.0.0.1", 5), ep("127.0.0.1", 5)], "10.1.2.3");
        assert_eq!(got, vec![ep("127.0.0.1", 5)]);
    }
}
