//! The node's desired assignments: a FULL message replaces them, a DELTA applies on
//! top only when its version is the last one + 1.

use constellation_proto::v1::{Assignment, Assignments, AssignmentsKind};
use std::collections::{BTreeMap, BTreeSet};

/// What [`DesiredSet::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied; these allocations were added, changed or removed.
    Changed(BTreeSet<String>),
    /// Not applied, for this reason (a version gap, a DELTA before any FULL...).
    Ignored(String),
}

/// The latest assignment set the control plane sent.
#[derive(Debug, Clone, Default)]
pub struct DesiredSet {
    /// None until the first FULL: until then the agent does not know what to run and
    /// must not remove anything.
    version: Option<u64>,
    assignments: BTreeMap<String, Assignment>,
    /// Restored from the agent's state file and not yet confirmed by a FULL from the
    /// control plane: run what it lists, but remove nothing.
    restored: bool,
}

impl DesiredSet {
    /// True once a FULL has been applied (or a saved set restored).
    pub fn is_known(&self) -> bool {
        self.version.is_some()
    }

    /// True when the set comes from the control plane in this run: containers it
    /// does not list may be removed.
    pub fn is_authoritative(&self) -> bool {
        self.version.is_some() && !self.restored
    }

    /// The whole set as one FULL message (what the state file holds).
    pub fn to_full(&self) -> Assignments {
        Assignments {
            kind: AssignmentsKind::Full as i32,
            version: self.version(),
            upserts: self.assignments.values().cloned().collect(),
            removals: Vec::new(),
        }
    }

    /// Starts from a set saved by an earlier run (see [`Self::to_full`]); ignored once
    /// a FULL has been applied.
    pub fn restore(&mut self, saved: Assignments) -> Applied {
        if self.version.is_some() || saved.kind() != AssignmentsKind::Full {
            return Applied::Ignored("not a FULL, or the set is known already".into());
        }
        let applied = self.apply(saved);
        self.restored = true;
        applied
    }

    /// Version of the last message applied; 0 when none.
    pub fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }

    pub fn get(&self, allocation_id: &str) -> Option<&Assignment> {
        self.assignments.get(allocation_id)
    }

    pub fn contains(&self, allocation_id: &str) -> bool {
        self.assignments.contains_key(allocation_id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.assignments.keys()
    }

    pub fn len(&self) -> usize {
        self.assignments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty()
    }

    pub fn apply(&mut self, msg: Assignments) -> Applied {
        match msg.kind() {
            AssignmentsKind::Full => {
                let mut changed: BTreeSet<String> = self.assignments.keys().cloned().collect();
                self.assignments.clear();
                for a in msg.upserts {
                    if let Some(id) = allocation_id(&a) {
                        changed.insert(id.clone());
                        self.assignments.insert(id, a);
                    }
                }
                for id in &msg.removals {
                    self.assignments.remove(id);
                }
                self.version = Some(msg.version);
                self.restored = false;
                Applied::Changed(changed)
            }
            AssignmentsKind::Delta => {
                let Some(last) = self.version else {
                    return Applied::Ignored(format!(
                        "DELTA version {} before any FULL",
                        msg.version
                    ));
                };
                if self.restored {
                    return Applied::Ignored(format!(
                        "DELTA version {} on a restored set",
                        msg.version
                    ));
                }
                if msg.version != last.wrapping_add(1) {
                    return Applied::Ignored(format!(
                        "DELTA version {} does not follow version {last}",
                        msg.version
                    ));
                }
                let mut changed = BTreeSet::new();
                for a in msg.upserts {
                    if let Some(id) = allocation_id(&a) {
                        changed.insert(id.clone());
                        self.assignments.insert(id, a);
                    }
                }
                for id in msg.removals {
                    self.assignments.remove(&id);
                    changed.insert(id);
                }
                self.version = Some(msg.version);
                Applied::Changed(changed)
            }
            AssignmentsKind::Unspecified => {
                Applied::Ignored(format!("version {} has no kind", msg.version))
            }
        }
    }
}

fn allocation_id(a: &Assignment) -> Option<String> {
    a.allocation
        .as_ref()
        .map(|al| al.id.clone())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::Allocation;

    fn assignment(id: &str, hash: &str) -> Assignment {
        Assignment {
            allocation: Some(Allocation {
                id: id.into(),
                ..Default::default()
            }),
            spec_hash: hash.into(),
            ..Default::default()
        }
    }

    fn msg(kind: AssignmentsKind, version: u64, up: &[(&str, &str)], rm: &[&str]) -> Assignments {
        Assignments {
            kind: kind as i32,
            version,
            upserts: up.iter().map(|(i, h)| assignment(i, h)).collect(),
            removals: rm.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_replaces_and_delta_applies_in_order() {
        let mut d = DesiredSet::default();
        assert!(!d.is_known());
        use AssignmentsKind::{Delta, Full};
        assert_eq!(
            d.apply(msg(Full, 1, &[("a", "1"), ("b", "1")], &[])),
            Applied::Changed(set(&["a", "b"]))
        );
        assert!(d.is_known());
        assert_eq!(d.version(), 1);
        assert_eq!(
            d.apply(msg(Delta, 2, &[("a", "2"), ("c", "1")], &["b"])),
            Applied::Changed(set(&["a", "b", "c"]))
        );
        assert_eq!(d.ids().cloned().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(d.get("a").unwrap().spec_hash, "2");
        // A FULL replaces everything, whatever its version (a new session restarts at 1).
        assert_eq!(
            d.apply(msg(Full, 1, &[("c", "1"), ("d", "1")], &[])),
            Applied::Changed(set(&["a", "c", "d"]))
        );
        assert_eq!(d.ids().cloned().collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(d.version(), 1);
    }

    #[test]
    fn a_restored_set_runs_but_only_a_full_makes_it_authoritative() {
        use AssignmentsKind::{Delta, Full};
        let mut before = DesiredSet::default();
        before.apply(msg(Full, 3, &[("a", "1"), ("b", "1")], &[]));
        let saved = before.to_full();
        let mut d = DesiredSet::default();
        assert_eq!(d.restore(saved.clone()), Applied::Changed(set(&["a", "b"])));
        assert!(d.is_known() && !d.is_authoritative());
        assert_eq!(d.version(), 3);
        // A DELTA of the new session cannot apply on top of an old set.
        assert!(matches!(
            d.apply(msg(Delta, 4, &[], &["a"])),
            Applied::Ignored(_)
        ));
        d.apply(msg(Full, 1, &[("b", "1")], &[]));
        assert!(d.is_authoritative());
        assert!(matches!(d.restore(saved), Applied::Ignored(_)));
        assert_eq!(d.ids().cloned().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn gaps_and_early_deltas_are_ignored() {
        use AssignmentsKind::{Delta, Full};
        let mut d = DesiredSet::default();
        assert!(matches!(
            d.apply(msg(Delta, 1, &[("a", "1")], &[])),
            Applied::Ignored(_)
        ));
        assert!(!d.is_known());
        d.apply(msg(Full, 5, &[("a", "1")], &[]));
        // Version 7 skips 6: ignored, and so are stale ones.
        assert!(matches!(
            d.apply(msg(Delta, 7, &[], &["a"])),
            Applied::Ignored(_)
        ));
        assert!(matches!(
            d.apply(msg(Delta, 5, &[], &["a"])),
            Applied::Ignored(_)
        ));
        assert!(d.contains("a"));
        assert_eq!(d.version(), 5);
        assert_eq!(
            d.apply(msg(Delta, 6, &[], &["a"])),
            Applied::Changed(set(&["a"]))
        );
        assert!(d.is_empty());
        assert!(matches!(
            d.apply(msg(AssignmentsKind::Unspecified, 7, &[], &[])),
            Applied::Ignored(_)
        ));
    }
}
