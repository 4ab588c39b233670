//! Read-only queries for the service layer and the dispatcher. Every list comes back
//! in a stable order (by name or id unless stated).

use constellation_proto::v1::{
    Allocation, Config, Event, LeadershipCommand, Lease, Migration, Node, SecretMeta, Service,
    Topic,
};

use super::allocations::is_terminal;
use super::events::Compacted;
use super::objects::secret_meta;
use super::{State, time};

/// Which allocations [`State::allocations`] lists; empty strings match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationFilter {
    pub service_name: String,
    /// The node's current name (allocations are matched by the node's id).
    pub node_name: String,
    /// Also list terminal allocations (desired STOP, or LOST/STOPPED/FAILED).
    pub include_terminal: bool,
}

impl State {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// Every service, by name.
    pub fn services(&self) -> impl ExactSizeIterator<Item = &Service> {
        self.services.values()
    }

    /// The node registered under `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.node_names.get(name).and_then(|id| self.nodes.get(id))
    }

    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// How many nodes the state knows.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.node_names.values().filter_map(|id| self.nodes.get(id))
    }

    pub fn allocation(&self, id: &str) -> Option<&Allocation> {
        self.allocations.get(id)
    }

    /// The allocations matching `filter`, by id.
    pub fn allocations(&self, filter: &AllocationFilter) -> Vec<&Allocation> {
        let node_id = match filter.node_name.as_str() {
            "" => None,
            name => match self.node_names.get(name) {
                Some(id) => Some(id.as_str()),
                None => return Vec::new(),
            },
        };
        let candidates: Box<dyn Iterator<Item = &Allocation>> =
            match (node_id, filter.service_name.as_str()) {
                (Some(id), _) => Box::new(self.allocations_of_node(id)),
                (None, "") => Box::new(self.allocations.values()),
                (None, service) => Box::new(self.allocations_of_service(service)),
            };
        candidates
            .filter(|a| filter.service_name.is_empty() || a.service_name == filter.service_name)
            .filter(|a| filter.include_terminal || !is_terminal(a))
            .collect()
    }

    /// Every allocation placed on the node, terminal ones included, by id.
    pub fn allocations_of_node(&self, node_id: &str) -> impl Iterator<Item = &Allocation> {
        self.allocs_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocations.get(id))
    }

    /// Every allocation of the service, terminal ones included, by id.
    pub fn allocations_of_service(&self, service: &str) -> impl Iterator<Item = &Allocation> {
        self.allocs_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocations.get(id))
    }

    pub fn lease(&self, name: &str) -> Option<&Lease> {
        self.leases.get(name)
    }

    /// Every held lease, by name.
    pub fn leases(&self) -> impl ExactSizeIterator<Item = &Lease> {
        self.leases.values()
    }

    /// The highest fencing token ever issued for the lease name (0: never).
    pub fn lease_token(&self, name: &str) -> u64 {
        self.lease_tokens.get(name).copied().unwrap_or(0)
    }

    /// The migration with this id, else the latest started one of the service named so.
    pub fn migration(&self, id_or_service: &str) -> Option<&Migration> {
        self.migrations.get(id_or_service).or_else(|| {
            self.migrations
                .values()
                .filter(|m| m.service_name == id_or_service)
                .max_by_key(|m| (time::key(m.started_at.as_ref()), m.id.as_str()))
        })
    }

    /// Migrations (of one service, when `service` is given), oldest started first,
    /// ties by id.
    pub fn migrations(&self, service: Option<&str>) -> Vec<&Migration> {
        let mut list: Vec<&Migration> = self
            .migrations
            .values()
            .filter(|m| service.is_none_or(|s| m.service_name == s))
            .collect();
        list.sort_by_key(|m| (time::key(m.started_at.as_ref()), m.id.as_str()));
        list
    }

    /// What reads show of every secret (never its data), by name.
    pub fn secret_metas(&self) -> Vec<SecretMeta> {
        self.secrets.values().map(secret_meta).collect()
    }

    pub fn secret_meta(&self, name: &str) -> Option<SecretMeta> {
        self.secrets.get(name).map(secret_meta)
    }

    /// A secret's data, for the assignments of agents whose allocations reference it.
    pub fn secret_data(&self, name: &str) -> Option<&[u8]> {
        self.secrets
            .get(name)
            .and_then(|r| r.spec.as_ref())
            .map(|s| s.data.as_slice())
    }

    pub fn config(&self, name: &str) -> Option<&Config> {
        self.configs.get(name)
    }

    /// Every config, by name.
    pub fn configs(&self) -> impl ExactSizeIterator<Item = &Config> {
        self.configs.values()
    }

    /// Index of the last event applied: a list read with it and a Watch from it miss
    /// nothing.
    pub fn event_index(&self) -> u64 {
        self.events.index()
    }

    /// Index of the oldest retained event (the next index when none is retained).
    pub fn oldest_retained_index(&self) -> u64 {
        self.events.oldest_retained()
    }

    /// The last leadership the log recorded.
    pub fn leadership(&self) -> Option<&LeadershipCommand> {
        self.leadership.as_ref()
    }

    /// Every retained event after `from_index` whose topic is in `topics` (empty, or
    /// containing `TOPIC_UNSPECIFIED`, means all), oldest first. `Ok(empty)` when
    /// `from_index` is the current index or ahead of it (the client waits);
    /// [`Compacted`] when some event after `from_index` is no longer retained.
    pub fn events_after(&self, from_index: u64, topics: &[Topic]) -> Result<Vec<Event>, Compacted> {
        self.events.after(from_index, topics)
    }
}
