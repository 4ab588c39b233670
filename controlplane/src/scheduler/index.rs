//! The planner's node indexes: what lets one placement find its node without scanning
//! every node of the cluster.
//!
//! The best node for a new allocation (see [`super::plan`]) is the eligible node with
//! the smallest key (spread counts, allocations of the service, allocations overall,
//! name), then by id: the order `min_by_key` over nodes by id used to give. Two facts
//! make the search cheap:
//!
//! * A node's spread counts depend only on its *group*: its values of the spread
//!   attributes. Clusters have few groups (zones), and the counts of each are kept
//!   per service ([`Tally`]).
//! * Within a group, a node holding no allocation of the service ranks before every
//!   node holding one; among those the order is (allocations overall, name, id), the
//!   same for every service. [`Nodes`] keeps, per list of spread attributes, the
//!   accepting nodes of each group in that order ([`Partition`]), updated whenever a
//!   node's allocation count changes. So the best untouched node of a group is the
//!   first one of its ordered set that is eligible, usually the very first.
//!
//! Nodes that already hold allocations of the service are few (at most its replica
//! count) and kept per group in their own order by the service's [`Tally`]. The result
//! is the node the full scan picks, for every input (a proptest compares them).
//!
//! Every change of a node's usage goes through [`Nodes::take`] and [`Nodes::give_back`]
//! so the ordered sets never go stale.
//!
//! [`Allocations`] gathers the state's allocations per service and per node in one
//! pass, so a plan that finds nothing to do costs one walk over them rather than an
//! index lookup per allocation and per question.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use constellation_proto::v1::{Allocation, Node, NodeResources, NodeStatus, ServiceSpec};

use super::{NodeUsage, accepts_new, attribute, constraints_hold};
use crate::state::{AllocationFilter, State, is_terminal};

/// The state's allocations as one plan reads them.
#[derive(Debug)]
pub(super) struct Allocations<'a> {
    /// Service name → its allocations, terminal ones included, by id.
    by_service: HashMap<&'a str, Vec<&'a Allocation>>,
    /// Service name → its live allocations ([`super::is_live`]), by id.
    live_by_service: HashMap<&'a str, Vec<&'a Allocation>>,
    /// Node id → its non-terminal allocations.
    per_node: HashMap<&'a str, usize>,
}

impl<'a> Allocations<'a> {
    pub(super) fn new(state: &'a State) -> Self {
        let all = AllocationFilter {
            include_terminal: true,
            ..Default::default()
        };
        let up: HashSet<&'a str> = state
            .nodes()
            .filter(|n| n.status() != NodeStatus::Down)
            .map(|n| n.id.as_str())
            .collect();
        let mut by_service: HashMap<&'a str, Vec<&'a Allocation>> = HashMap::new();
        let mut live_by_service: HashMap<&'a str, Vec<&'a Allocation>> = HashMap::new();
        let mut per_node: HashMap<&'a str, usize> = HashMap::new();
        for alloc in state.allocations(&all) {
            let service = alloc.service_name.as_str();
            by_service.entry(service).or_default().push(alloc);
            if is_terminal(alloc) {
                continue;
            }
            *per_node.entry(alloc.node_id.as_str()).or_default() += 1;
            if up.contains(alloc.node_id.as_str()) {
                live_by_service.entry(service).or_default().push(alloc);
            }
        }
        Self {
            by_service,
            live_by_service,
            per_node,
        }
    }

    /// Every allocation of the service, terminal ones included, by id.
    pub(super) fn of_service(&self, service: &str) -> &[&'a Allocation] {
        self.by_service.get(service).map_or(&[], Vec::as_slice)
    }

    /// The live allocations of the service, by id (as the state holds them: this
    /// plan's releases are not taken out).
    pub(super) fn live_of_service(&self, service: &str) -> &[&'a Allocation] {
        self.live_by_service.get(service).map_or(&[], Vec::as_slice)
    }

    /// Non-terminal allocations on the node.
    pub(super) fn on_node(&self, node_id: &str) -> usize {
        self.per_node.get(node_id).copied().unwrap_or(0)
    }

    /// Allocations of services the state does not hold, by id.
    pub(super) fn orphans(&self, state: &State) -> Vec<&'a Allocation> {
        let mut orphans: Vec<&'a Allocation> = self
            .by_service
            .iter()
            .filter(|(name, _)| state.service(name).is_none())
            .flat_map(|(_, allocs)| allocs.iter().copied())
            .collect();
        orphans.sort_by(|a, b| a.id.cmp(&b.id));
        orphans
    }
}

/// A node's place in a group: allocations overall, name, id.
type Rank<'a> = (usize, &'a str, &'a str);

/// The values of the spread attributes on one node (missing ones are "").
type Group<'a> = Vec<&'a str>;

/// The accepting nodes for one list of spread attributes, per group, each group in
/// [`Rank`] order.
#[derive(Debug, Default)]
struct Partition<'a> {
    groups: BTreeMap<Group<'a>, BTreeSet<Rank<'a>>>,
}

/// Every node of the state with its usage as the plan changed it, by id.
#[derive(Debug)]
pub(super) struct Nodes<'a> {
    by_id: BTreeMap<&'a str, NodeUsage<'a>>,
    /// By list of spread attributes; built on first use, then kept up to date.
    partitions: BTreeMap<Vec<String>, Partition<'a>>,
}

/// The values of `attrs` on `node`.
fn group_of<'a>(node: &'a Node, attrs: &[String]) -> Group<'a> {
    attrs
        .iter()
        .map(|a| attribute(node, a).unwrap_or(""))
        .collect()
}

fn rank<'a>(usage: &NodeUsage<'a>) -> Rank<'a> {
    (
        usage.allocations,
        node_name(usage.node),
        usage.node.id.as_str(),
    )
}

fn node_name(node: &Node) -> &str {
    node.description.as_ref().map_or("", |d| d.name.as_str())
}

impl<'a> Nodes<'a> {
    pub(super) fn new(usages: impl IntoIterator<Item = NodeUsage<'a>>) -> Self {
        Self {
            by_id: usages
                .into_iter()
                .map(|u| (u.node.id.as_str(), u))
                .collect(),
            partitions: BTreeMap::new(),
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<&NodeUsage<'a>> {
        self.by_id.get(id)
    }

    /// Reserves `need` and one allocation on the node.
    pub(super) fn take(&mut self, id: &str, need: &NodeResources) {
        self.change(id, |usage| {
            usage.used.cpu_millis = usage.used.cpu_millis.saturating_add(need.cpu_millis);
            usage.used.memory_bytes = usage.used.memory_bytes.saturating_add(need.memory_bytes);
            usage.allocations += 1;
        });
    }

    /// Gives back `reserved` and one allocation on the node.
    pub(super) fn give_back(&mut self, id: &str, reserved: &NodeResources) {
        self.change(id, |usage| {
            usage.used.cpu_millis = usage.used.cpu_millis.saturating_sub(reserved.cpu_millis);
            usage.used.memory_bytes = usage
                .used
                .memory_bytes
                .saturating_sub(reserved.memory_bytes);
            usage.allocations = usage.allocations.saturating_sub(1);
        });
    }

    fn change(&mut self, id: &str, f: impl FnOnce(&mut NodeUsage<'a>)) {
        let Some(usage) = self.by_id.get_mut(id) else {
            return;
        };
        let before = rank(usage);
        f(usage);
        let after = rank(usage);
        if before == after || !accepts_new(usage.node) {
            return;
        }
        for (attrs, partition) in &mut self.partitions {
            let group = group_of(usage.node, attrs);
            if let Some(set) = partition.groups.get_mut(&group) {
                set.remove(&before);
                set.insert(after);
            }
        }
    }

    /// Builds the partition for `attrs` unless it exists.
    fn ensure_partition(&mut self, attrs: &[String]) {
        if !self.partitions.contains_key(attrs) {
            let mut partition = Partition::default();
            for usage in self.by_id.values().filter(|u| accepts_new(u.node)) {
                partition
                    .groups
                    .entry(group_of(usage.node, attrs))
                    .or_default()
                    .insert(rank(usage));
            }
            self.partitions.insert(attrs.to_vec(), partition);
        }
    }

    /// The best eligible node for one more allocation of `spec`, whose allocations so
    /// far `tally` counts (see [`super::plan`] for eligibility and the order).
    pub(super) fn best(
        &mut self,
        spec: &ServiceSpec,
        need: &NodeResources,
        tally: &Tally<'a>,
    ) -> Option<&'a str> {
        let max_per_node = spec.placement.as_ref().map_or(0, |p| p.max_per_node) as usize;
        self.ensure_partition(&tally.attrs);
        let partition = &self.partitions[tally.attrs.as_slice()];
        let mut groups: Vec<(Vec<usize>, &Group<'a>)> = partition
            .groups
            .keys()
            .map(|group| (tally.spread_counts(group), group))
            .collect();
        groups.sort();
        let by_id = &self.by_id;
        let eligible = |id: &str, here: usize| {
            by_id.get(id).is_some_and(|u| {
                accepts_new(u.node)
                    && (max_per_node == 0 || here < max_per_node)
                    && u.fits(need)
                    && constraints_hold(spec, u.node)
            })
        };
        // (spread counts, allocations of the service, rank)
        let mut best: Option<(Vec<usize>, usize, Rank<'a>)> = None;
        for (counts, group) in groups {
            if best.as_ref().is_some_and(|b| counts > b.0) {
                break;
            }
            let untouched = partition.groups[group]
                .iter()
                .find(|r| tally.here(r.2) == 0 && eligible(r.2, 0))
                .map(|r| (0, *r));
            let candidate = untouched.or_else(|| {
                tally
                    .touched
                    .get(group)?
                    .iter()
                    .find(|(here, r)| eligible(r.2, *here))
                    .copied()
            });
            if let Some((here, r)) = candidate {
                let key = (counts, here, r);
                if best.as_ref().is_none_or(|b| key < *b) {
                    best = Some(key);
                }
            }
        }
        best.map(|(_, _, r)| r.2)
    }
}

#[cfg(test)]
impl<'a> Nodes<'a> {
    /// The best node by scanning every node: the definition [`Nodes::best`] must meet.
    pub(super) fn best_by_scan(
        &self,
        spec: &ServiceSpec,
        need: &NodeResources,
        per_node: &BTreeMap<String, usize>,
    ) -> Option<&'a str> {
        let placement = spec.placement.clone().unwrap_or_default();
        let max_per_node = placement.max_per_node as usize;
        let here = |id: &str| per_node.get(id).copied().unwrap_or(0);
        // Allocations of the service on nodes sharing `node`'s value of `attr`.
        let spread_count = |attr: &str, node: &Node| {
            let value = attribute(node, attr).unwrap_or("");
            per_node
                .iter()
                .filter(|(id, _)| {
                    self.by_id
                        .get(id.as_str())
                        .is_some_and(|u| attribute(u.node, attr).unwrap_or("") == value)
                })
                .map(|(_, n)| n)
                .sum::<usize>()
        };
        self.by_id
            .iter()
            .filter(|(id, usage)| {
                accepts_new(usage.node)
                    && constraints_hold(spec, usage.node)
                    && (max_per_node == 0 || here(id) < max_per_node)
                    && usage.fits(need)
            })
            .min_by_key(|(id, usage)| {
                let spread: Vec<usize> = placement
                    .spreads
                    .iter()
                    .map(|s| spread_count(&s.attribute, usage.node))
                    .collect();
                (spread, here(id), usage.allocations, usage.name())
            })
            .map(|(id, _)| *id)
    }
}

/// One service's allocations per node and per spread group, as the plan places them.
#[derive(Debug)]
pub(super) struct Tally<'a> {
    /// The service's spread attributes, in order.
    attrs: Vec<String>,
    /// Node id → allocations of the service there.
    per_node: BTreeMap<String, usize>,
    /// Per spread attribute: value → allocations of the service on nodes with it.
    counts: Vec<BTreeMap<&'a str, usize>>,
    /// Known nodes holding allocations of the service, per group, by (allocations of
    /// the service, rank).
    touched: BTreeMap<Group<'a>, BTreeSet<(usize, Rank<'a>)>>,
}

impl<'a> Tally<'a> {
    /// The tally of `spec` from its allocations per node id.
    pub(super) fn new(
        spec: &ServiceSpec,
        per_node: &BTreeMap<String, usize>,
        nodes: &Nodes<'a>,
    ) -> Self {
        let attrs: Vec<String> = spec
            .placement
            .iter()
            .flat_map(|p| &p.spreads)
            .map(|s| s.attribute.clone())
            .collect();
        let mut tally = Self {
            counts: vec![BTreeMap::new(); attrs.len()],
            attrs,
            per_node: BTreeMap::new(),
            touched: BTreeMap::new(),
        };
        for (id, n) in per_node {
            tally.add(id, *n, nodes);
        }
        tally
    }

    /// Allocations of the service on the node.
    pub(super) fn here(&self, id: &str) -> usize {
        self.per_node.get(id).copied().unwrap_or(0)
    }

    /// Counts `n` more allocations of the service on node `id`. Its entry in `touched`
    /// must still carry the node's current rank (or be gone).
    fn add(&mut self, id: &str, n: usize, nodes: &Nodes<'a>) {
        let before = self.here(id);
        *self.per_node.entry(id.to_owned()).or_default() += n;
        let Some(usage) = nodes.get(id) else {
            return;
        };
        let group = group_of(usage.node, &self.attrs);
        for (counts, value) in self.counts.iter_mut().zip(&group) {
            *counts.entry(value).or_default() += n;
        }
        let set = self.touched.entry(group).or_default();
        set.remove(&(before, rank(usage)));
        set.insert((before + n, rank(usage)));
    }

    /// Records one placement on node `id` and takes `need` there.
    pub(super) fn place(&mut self, id: &str, need: &NodeResources, nodes: &mut Nodes<'a>) {
        // Out of the touched set under the node's old rank, back in under the new one.
        let here = self.here(id);
        if let Some(usage) = nodes.get(id) {
            let group = group_of(usage.node, &self.attrs);
            if let Some(set) = self.touched.get_mut(&group) {
                set.remove(&(here, rank(usage)));
            }
        }
        nodes.take(id, need);
        self.add(id, 1, nodes);
    }

    /// The spread counts of a group: per attribute, allocations of the service on nodes
    /// with the group's value.
    fn spread_counts(&self, group: &Group<'a>) -> Vec<usize> {
        self.counts
            .iter()
            .zip(group)
            .map(|(counts, value)| counts.get(value).copied().unwrap_or(0))
            .collect()
    }
}
