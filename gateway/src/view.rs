//! The gateway's materialised view of the cluster: services, nodes, allocations,
//! leases, migrations and the leader, kept in memory and fed by the control plane's
//! `Watch` stream. Every read the gateway serves (REST, WebSocket snapshots, the
//! Traefik document) comes from here.
//!
//! [`View`] is a pure value: built from the `List*` answers ([`View::from_lists`]) and
//! moved forward by [`View::apply`], one event at a time. Events carry whole objects, so
//! applying an event is "put this object" (or "remove it"); replaying events the lists
//! already reflected therefore converges to the same state, which is what lets the
//! feed list five collections at slightly different indexes and watch from the
//! smallest. The [`feed`] task around it does the I/O: list, watch from the view's
//! index, resume from it after a lost stream, re-list when the control plane answers
//! that the index was compacted, and publish [`Snapshot`]s through a
//! `tokio::sync::watch` channel.

use constellation_proto::v1::{
    Allocation, ChangeKind, ClusterStatusResponse, Event, HealthState, Lease,
    ListAllocationsResponse, ListLeasesResponse, ListMigrationsResponse, ListNodesResponse,
    ListServicesResponse, Migration, Node, Service, event::Payload,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The leader as the view last learned it (from `ClusterStatus` or a leadership event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leader {
    pub id: u64,
    pub api_addr: String,
    pub term: u64,
}

/// What the `List*` calls and `ClusterStatus` answered; [`View::from_lists`] builds a
/// view from it.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub services: ListServicesResponse,
    pub nodes: ListNodesResponse,
    /// Listed with `include_terminal`, so the view holds what the events describe.
    pub allocations: ListAllocationsResponse,
    pub leases: ListLeasesResponse,
    pub migrations: ListMigrationsResponse,
    pub status: ClusterStatusResponse,
}

impl Lists {
    /// The smallest index any list reflects: watching from it misses nothing.
    pub fn min_index(&self) -> u64 {
        self.indexes().into_iter().min().unwrap_or(0)
    }

    /// The largest index any list reflects: once the view has applied events up to it,
    /// every collection is at least as new as its list.
    pub fn max_index(&self) -> u64 {
        self.indexes().into_iter().max().unwrap_or(0)
    }

    fn indexes(&self) -> [u64; 6] {
        [
            self.services.index,
            self.nodes.index,
            self.allocations.index,
            self.leases.index,
            self.migrations.index,
            // The leader a status names is replaced by leadership events after it.
            self.status.event_index,
        ]
    }
}

/// The cluster as the gateway sees it. Maps are ordered so that renderings of the
/// same state are byte-identical.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    services: BTreeMap<String, Service>,
    /// By node name (what operators and routes use).
    nodes: BTreeMap<String, Node>,
    /// Node id to its current name, so a renamed node leaves no stale entry.
    node_names: BTreeMap<String, String>,
    /// By allocation id; terminal allocations included while the control plane keeps them.
    allocations: BTreeMap<String, Allocation>,
    /// Allocation ids by service name and by node id, so per-service and per-node
    /// reads do not scan every allocation.
    allocs_by_service: BTreeMap<String, BTreeSet<String>>,
    allocs_by_node: BTreeMap<String, BTreeSet<String>>,
    leases: BTreeMap<String, Lease>,
    /// By migration id.
    migrations: BTreeMap<String, Migration>,
    leader: Option<Leader>,
    /// The last `ClusterStatus` answer (members, terms, log indexes); refreshed by the
    /// feed, not by events.
    cluster: Option<ClusterStatusResponse>,
    /// Index of the last event applied (or the index the lists reflected).
    index: u64,
    /// Which services the last applied events touched, for renderers that keep work
    /// between two states of this view.
    journal: Journal,
}

/// How many applied events the [`Journal`] remembers: a reader further behind starts
/// over from the whole view.
pub const JOURNAL_LEN: usize = 4096;

/// A record of how a view got here: for each event applied since the view was built
/// from lists, the service whose routing it may change (a service event, an allocation
/// or health event of one of its allocations), or "anything" (a node event: every
/// service with an allocation on the node). Readers that derived something from an
/// earlier state of the same view (the Traefik renderer) redo only those services.
///
/// It is history, not state: two views holding the same objects are equal whatever
/// their journals say.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    /// Tells views built from different lists apart (0: the empty default view).
    lineage: u64,
    /// Events recorded since the view was built.
    seq: u64,
    /// What the last `entries.len()` recorded events touched (`None`: anything).
    entries: VecDeque<Option<String>>,
}

impl PartialEq for Journal {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A point in a view's history, to ask later what changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalMark {
    lineage: u64,
    seq: u64,
}

impl Journal {
    fn fresh() -> Self {
        static LINEAGE: AtomicU64 = AtomicU64::new(1);
        Journal {
            lineage: LINEAGE.fetch_add(1, Ordering::Relaxed),
            ..Journal::default()
        }
    }

    fn record(&mut self, touched: Option<&str>) {
        self.seq += 1;
        if self.entries.len() == JOURNAL_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back(touched.map(str::to_owned));
    }
}

impl View {
    /// A view of what the lists hold, at their smallest index; apply events from there.
    pub fn from_lists(lists: Lists) -> View {
        let index = lists.min_index();
        let mut view = View {
            index,
            journal: Journal::fresh(),
            ..View::default()
        };
        for service in lists.services.services {
            if let Some(name) = service_name(&service) {
                view.services.insert(name.to_owned(), service);
            }
        }
        for node in lists.nodes.nodes {
            view.put_node(node);
        }
        for alloc in lists.allocations.allocations {
            view.put_allocation(alloc);
        }
        for lease in lists.leases.leases {
            view.leases.insert(lease.name.clone(), lease);
        }
        for migration in lists.migrations.migrations {
            view.migrations.insert(migration.id.clone(), migration);
        }
        view.set_cluster(lists.status);
        view
    }

    /// Moves the view forward by one event. Events at or below the view's index are
    /// applied too (they carry whole objects, so a replay converges); the index only
    /// grows.
    pub fn apply(&mut self, event: &Event) {
        self.index = self.index.max(event.index);
        let Some(payload) = &event.payload else {
            return;
        };
        match payload {
            Payload::Service(e) => {
                let Some(service) = &e.service else { return };
                let Some(name) = service_name(service) else {
                    return;
                };
                self.journal.record(Some(name));
                if e.kind() == ChangeKind::Deleted {
                    self.services.remove(name);
                } else {
                    self.services.insert(name.to_owned(), service.clone());
                }
            }
            Payload::Node(e) => {
                let Some(node) = &e.node else { return };
                self.journal.record(None);
                if e.kind() == ChangeKind::Deleted {
                    self.remove_node(&node.id);
                } else {
                    self.put_node(node.clone());
                }
            }
            Payload::Allocation(e) => {
                let Some(alloc) = &e.allocation else { return };
                if let Some(old) = self.allocations.get(&alloc.id)
                    && old.service_name != alloc.service_name
                {
                    let old = old.service_name.clone();
                    self.journal.record(Some(&old));
                }
                self.journal.record(Some(&alloc.service_name));
                if e.kind() == ChangeKind::Deleted {
                    self.remove_allocation(&alloc.id);
                } else {
                    self.put_allocation(alloc.clone());
                }
            }
            Payload::Health(e) => {
                // The allocation event of the same change already carries the new
                // health; this keeps the view right should it ever come alone.
                if let Some(alloc) = self.allocations.get_mut(&e.allocation_id)
                    && let Some(status) = alloc.status.as_mut()
                {
                    status.health = e.current;
                    self.journal.record(Some(&alloc.service_name));
                }
            }
            Payload::Leadership(e) => {
                self.leader = Some(Leader {
                    id: e.leader_id,
                    api_addr: e.leader_api_addr.clone(),
                    term: e.term,
                });
            }
            Payload::Lease(e) => {
                let Some(lease) = &e.lease else { return };
                if e.kind() == ChangeKind::Deleted {
                    self.leases.remove(&lease.name);
                } else {
                    self.leases.insert(lease.name.clone(), lease.clone());
                }
            }
            Payload::Migration(e) => {
                let Some(migration) = &e.migration else {
                    return;
                };
                if e.kind() == ChangeKind::Deleted {
                    self.migrations.remove(&migration.id);
                } else {
                    self.migrations
                        .insert(migration.id.clone(), migration.clone());
                }
            }
        }
    }

    /// Records a `ClusterStatus` answer; it also names the leader when one is known.
    pub fn set_cluster(&mut self, status: ClusterStatusResponse) {
        if let Some(leader_id) = status.leader_id {
            let api_addr = status
                .members
                .iter()
                .find(|m| m.id == leader_id)
                .map(|m| m.api_addr.clone())
                .unwrap_or_default();
            let newer = self.leader.as_ref().is_none_or(|l| status.term >= l.term);
            if newer {
                self.leader = Some(Leader {
                    id: leader_id,
                    api_addr,
                    term: status.term,
                });
            }
        }
        self.cluster = Some(status);
    }

    /// Moves the index forward without an event (a Watch heartbeat's `last_index`).
    pub fn advance_to(&mut self, index: u64) {
        self.index = self.index.max(index);
    }

    fn put_allocation(&mut self, alloc: Allocation) {
        self.remove_allocation(&alloc.id);
        index_insert(&mut self.allocs_by_service, &alloc.service_name, &alloc.id);
        index_insert(&mut self.allocs_by_node, &alloc.node_id, &alloc.id);
        self.allocations.insert(alloc.id.clone(), alloc);
    }

    fn remove_allocation(&mut self, id: &str) {
        if let Some(old) = self.allocations.remove(id) {
            index_remove(&mut self.allocs_by_service, &old.service_name, id);
            index_remove(&mut self.allocs_by_node, &old.node_id, id);
        }
    }

    fn put_node(&mut self, node: Node) {
        let Some(name) = node.description.as_ref().map(|d| d.name.clone()) else {
            return;
        };
        if let Some(old) = self.node_names.insert(node.id.clone(), name.clone())
            && old != name
        {
            self.nodes.remove(&old);
        }
        self.nodes.insert(name, node);
    }

    fn remove_node(&mut self, id: &str) {
        if let Some(name) = self.node_names.remove(id) {
            self.nodes.remove(&name);
        }
    }

    /// Every service, by name.
    pub fn services(&self) -> &BTreeMap<String, Service> {
        &self.services
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every allocation the control plane keeps (terminal ones included), by id.
    pub fn allocations(&self) -> &BTreeMap<String, Allocation> {
        &self.allocations
    }

    /// The allocations of one service, by id.
    pub fn allocations_of_service<'a>(
        &'a self,
        service: &str,
    ) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.allocs_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocations.get(id))
    }

    /// The allocations placed on the node with this id, by allocation id.
    pub fn allocations_of_node<'a>(
        &'a self,
        node_id: &str,
    ) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.allocs_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocations.get(id))
    }

    /// Every held lease, by name.
    pub fn leases(&self) -> &BTreeMap<String, Lease> {
        &self.leases
    }

    /// Every migration, by id.
    pub fn migrations(&self) -> &BTreeMap<String, Migration> {
        &self.migrations
    }

    pub fn leader(&self) -> Option<&Leader> {
        self.leader.as_ref()
    }

    /// The last `ClusterStatus` answer, if any.
    pub fn cluster(&self) -> Option<&ClusterStatusResponse> {
        self.cluster.as_ref()
    }

    /// Index of the last event the view reflects.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The node with this id.
    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.node_names
            .get(id)
            .and_then(|name| self.nodes.get(name))
    }

    /// This point of the view's history.
    pub fn mark(&self) -> JournalMark {
        JournalMark {
            lineage: self.journal.lineage,
            seq: self.journal.seq,
        }
    }

    /// The services the events applied since `mark` touched, when the journal can tell:
    /// `None` when `mark` is of another view (built from other lists), older than the
    /// journal remembers, or when a node changed since (anything may have).
    pub fn touched_since(&self, mark: JournalMark) -> Option<BTreeSet<&str>> {
        let journal = &self.journal;
        if mark.lineage != journal.lineage || mark.seq > journal.seq {
            return None;
        }
        let behind = usize::try_from(journal.seq - mark.seq).ok()?;
        if behind > journal.entries.len() {
            return None;
        }
        journal
            .entries
            .iter()
            .skip(journal.entries.len() - behind)
            .map(|touched| touched.as_deref())
            .collect()
    }

    /// The view without the parts events do not carry (the `ClusterStatus` answer),
    /// for comparing a view moved by events with one built from lists.
    #[cfg(test)]
    fn without_cluster(&self) -> View {
        View {
            cluster: None,
            ..self.clone()
        }
    }
}

fn index_insert(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    index
        .entry(key.to_owned())
        .or_default()
        .insert(id.to_owned());
}

/// Removes `id` under `key`, and the key once empty (so equal views compare equal).
fn index_remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

fn service_name(service: &Service) -> Option<&str> {
    service.spec.as_ref().map(|s| s.name.as_str())
}

/// Healthy as the gateway routes it: running, and either passing its health check or
/// without one.
pub fn allocation_healthy(alloc: &Allocation) -> bool {
    alloc.status.as_ref().is_some_and(|s| {
        s.state() == constellation_proto::v1::AllocationState::Running
            && matches!(s.health(), HealthState::Healthy | HealthState::None)
    }) && alloc.desired_state() != constellation_proto::v1::AllocationDesiredState::Stop
}

/// One published state of the view: the view itself and how current it is.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub view: Arc<View>,
    /// The view has caught up with the control plane at least once.
    pub synced: bool,
    /// Since when the stream has been lost (`None` while connected and caught up).
    pub lost_since: Option<Instant>,
    /// How long a lost stream is tolerated before the view counts as stale.
    pub stale_after: Duration,
}

impl Snapshot {
    /// Before the first sync: empty, not synced, lost since `now`.
    pub fn initial(stale_after: Duration) -> Self {
        Snapshot {
            view: Arc::new(View::default()),
            synced: false,
            lost_since: Some(Instant::now()),
            stale_after,
        }
    }

    /// Fresh: synced, and the stream is connected and caught up or was lost for no
    /// longer than `stale_after`. Readers that must not serve old data (the Traefik
    /// document) refuse to answer from a view that is not fresh.
    pub fn is_fresh(&self) -> bool {
        self.is_fresh_at(Instant::now())
    }

    pub fn is_fresh_at(&self, now: Instant) -> bool {
        self.synced
            && self
                .lost_since
                .is_none_or(|since| now.saturating_duration_since(since) <= self.stale_after)
    }
}

pub mod feed;

#[cfg(test)]
mod tests;
