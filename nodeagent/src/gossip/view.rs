//! The agent's view of the members its gossip does not consider alive, which the
//! session reports to the control plane as failure-detection evidence
//! (`GossipReport`: the whole view each time).
//!
//! Each member is known by name; an observation is about one generation of the
//! member's identity, and an older generation's news never overrides a newer one's
//! (a restarted or renewed member is a new generation: its `Up` clears the old `Down`).

use super::{GossipEvent, NodeIdentity};
use constellation_proto::v1::{MemberObservation, MemberState};
use std::collections::BTreeMap;

/// Most members the view holds; a cluster is far smaller, the bound only caps memory.
pub const MAX_VIEW_MEMBERS: usize = 4096;

/// Members not alive, by name: (state, generation).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemberView {
    own_name: String,
    members: BTreeMap<String, (MemberState, u64)>,
    /// Highest generation seen alive per name, so a late `Down` of an older generation
    /// is ignored.
    alive: BTreeMap<String, u64>,
}

impl MemberView {
    pub fn new(own_name: impl Into<String>) -> Self {
        Self {
            own_name: own_name.into(),
            ..Default::default()
        }
    }

    /// Applies one gossip event; true when the view changed.
    pub fn apply(&mut self, event: &GossipEvent) -> bool {
        let (identity, state) = match event {
            GossipEvent::Up(id) => (id, MemberState::Alive),
            GossipEvent::Suspect(id) => (id, MemberState::Suspect),
            GossipEvent::Down(id) => (id, MemberState::Down),
            GossipEvent::Metadata { .. } | GossipEvent::Health { .. } => return false,
        };
        self.observe(identity, state)
    }

    fn observe(&mut self, id: &NodeIdentity, state: MemberState) -> bool {
        // Seeds are known by address only, and our own fate is not ours to report.
        if id.name.is_empty() || id.name == self.own_name {
            return false;
        }
        if self.alive.get(&id.name).is_some_and(|g| *g > id.generation) {
            return false;
        }
        if let Some((_, generation)) = self.members.get(&id.name)
            && *generation > id.generation
        {
            return false;
        }
        if state == MemberState::Alive {
            if self.alive.len() < MAX_VIEW_MEMBERS || self.alive.contains_key(&id.name) {
                self.alive.insert(id.name.clone(), id.generation);
            }
            return self.members.remove(&id.name).is_some();
        }
        if self.members.len() >= MAX_VIEW_MEMBERS && !self.members.contains_key(&id.name) {
            tracing::warn!(member = %id.name, "gossip view full; observation dropped");
            return false;
        }
        self.members.insert(id.name.clone(), (state, id.generation)) != Some((state, id.generation))
    }

    /// The view as the session reports it, sorted by name.
    pub fn observations(&self) -> Vec<MemberObservation> {
        self.members
            .iter()
            .map(|(name, (state, generation))| MemberObservation {
                node_name: name.clone(),
                state: *state as i32,
                incarnation: *generation,
                observed_at: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation,
        }
    }

    fn states(view: &MemberView) -> Vec<(String, MemberState, u64)> {
        view.observations()
            .into_iter()
            .map(|o| (o.node_name.clone(), o.state(), o.incarnation))
            .collect()
    }

    #[test]
    fn down_is_reported_until_a_newer_generation_is_up() {
        let mut v = MemberView::new("me");
        assert!(!v.apply(&GossipEvent::Up(id("a", 1))));
        assert!(v.apply(&GossipEvent::Suspect(id("a", 1))));
        assert!(v.apply(&GossipEvent::Down(id("a", 1))));
        assert_eq!(states(&v), [("a".into(), MemberState::Down, 1)]);
        // A late event about the dead generation changes nothing once a newer is up.
        assert!(v.apply(&GossipEvent::Up(id("a", 2))));
        assert!(!v.apply(&GossipEvent::Down(id("a", 1))));
        assert!(states(&v).is_empty());
        assert!(v.apply(&GossipEvent::Down(id("a", 2))));
        assert_eq!(states(&v), [("a".into(), MemberState::Down, 2)]);
    }

    #[test]
    fn own_and_nameless_members_are_never_reported() {
        let mut v = MemberView::new("me");
        assert!(!v.apply(&GossipEvent::Down(id("me", 5))));
        assert!(!v.apply(&GossipEvent::Down(id("", 0))));
        assert!(v.observations().is_empty());
    }

    #[test]
    fn a_refuted_suspicion_clears_the_entry() {
        let mut v = MemberView::new("me");
        assert!(v.apply(&GossipEvent::Suspect(id("b", 3))));
        assert!(v.apply(&GossipEvent::Up(id("b", 3))));
        assert!(v.observations().is_empty());
    }
}
