//! Failure detection: which READY nodes the leader declares DOWN.
//!
//! Two signals, after Nomad (heartbeat TTL) and SWIM (peers' view), so that neither a
//! slow control-plane link nor one agent's flaky network fails a node on its own:
//!
//! - **The session.** Agents hold their dispatcher session with the leader and
//!   heartbeat on it. A session is *gone* when it broke (the connection failed: the
//!   agent's process or machine died), sent no heartbeat for
//!   [`DetectorSettings::session_timeout`] (a partition, a hung machine), or was
//!   closed by the agent (a clean shutdown, usually a restart).
//! - **The gossip.** Agents report the members their gossip does not consider alive.
//!   A report about node X counts when it is about X's current run (its gossip
//!   generation, from X's hello) and comes from a node whose own session is live.
//!
//! A node is declared down when its session is gone **and** either enough agents
//! report it (two, or a majority of the other live nodes when there are fewer than
//! three), or its heartbeat TTL ran out. What a report must say depends on how the
//! session went: after a *broken* session, SUSPECT is enough (the connection already
//! says the process is gone; gossip only rules out a control-plane-side network
//! problem), after a *silent* one it takes DOWN (gossip's suspicion must have run its
//! course), and after a *closed* one only the TTL counts: an agent restart or upgrade
//! keeps its containers running and must not move them. The TTL grows with the cluster, as
//! Nomad's does: `max(min_ttl, nodes / heartbeats_per_second)`, plus a jitter of up to
//! a quarter derived from the node id (so the decision stays a pure function), so a
//! control-plane hiccup does not expire every node in the same tick.
//!
//! A new leader knows no session: every node gets `grace` plus its TTL from the moment
//! of the election before the TTL can fail it. Gossip evidence needs no grace: it comes
//! from agents that already reconnected to this leader.
//!
//! [`down_nodes`] is the decision (pure, tested with proptest); the leader's loop
//! ([`crate::leader`]) feeds it a snapshot of the dispatcher's session registry and
//! writes the verdicts through Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Timing of the failure detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    /// A session with no heartbeat for this long counts as gone. Three heartbeat
    /// periods: one late heartbeat is not a failure.
    pub session_timeout: Duration,
    /// The smallest heartbeat TTL (Nomad's `min_heartbeat_ttl`, 10 s).
    pub min_ttl: Duration,
    /// Heartbeats per second the TTL is sized for (Nomad's
    /// `max_heartbeats_per_second`, 50): with more nodes the TTL grows.
    pub heartbeats_per_second: f64,
    /// Extra time every node gets after this member became leader, before a TTL can
    /// run out. Short by default: agents reconnect within a second or two, and gossip
    /// evidence does not wait for it.
    pub grace: Duration,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(3),
            min_ttl: Duration::from_secs(10),
            heartbeats_per_second: 50.0,
            grace: Duration::from_secs(5),
        }
    }
}

impl DetectorSettings {
    /// The heartbeat TTL of a cluster of `nodes` nodes, before jitter.
    pub fn ttl(&self, nodes: usize) -> Duration {
        let scaled = if self.heartbeats_per_second > 0.0 {
            Duration::from_secs_f64(nodes as f64 / self.heartbeats_per_second)
        } else {
            Duration::ZERO
        };
        self.min_ttl.max(scaled)
    }
}

/// How a node's session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Open,
    /// The connection failed under it (reset, closed without the agent ending it).
    Broken,
    /// The agent ended it (a clean shutdown).
    Closed,
}

/// What a member's gossip says of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// DOWN (else SUSPECT).
    pub down: bool,
    /// The generation of the identity it is about.
    pub generation: u64,
}

/// What the leader knows of one node's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The last heartbeat (or the session's start).
    pub last_heartbeat: Instant,
    /// An ended session is kept for its last heartbeat and how it ended.
    pub state: SessionState,
    /// Generation of the node's gossip identity, from its hello.
    pub gossip_generation: u64,
    /// The node's last gossip report: members it does not consider alive, by name.
    pub reports: BTreeMap<String, Observation>,
}

/// One node declared down, and why (for the node's status message and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub node_id: String,
    pub reason: String,
}

/// The READY nodes to declare down now.
///
/// `ready` lists the READY nodes as (id, name); `sessions` is keyed by node id (nodes
/// this leader never saw have no entry); `leader_since` is when this member became
/// leader. Same input, same verdicts.
pub fn down_nodes(
    settings: &DetectorSettings,
    ready: &[(String, String)],
    sessions: &BTreeMap<String, SessionView>,
    leader_since: Instant,
    now: Instant,
) -> Vec<Verdict> {
    let live = |id: &str| {
        sessions.get(id).is_some_and(|s| {
            s.state == SessionState::Open
                && now.saturating_duration_since(s.last_heartbeat) < settings.session_timeout
        })
    };
    let live_ids: BTreeSet<&str> = ready
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| live(id))
        .collect();
    let ttl = settings.ttl(ready.len());
    let mut verdicts = Vec::new();
    for (id, name) in ready {
        if live_ids.contains(id.as_str()) {
            continue;
        }
        let session = sessions.get(id);
        let generation = session.map_or(0, |s| s.gossip_generation);
        // What a report must say to count, by how the session went (see the module).
        let (counts, gone): (fn(&Observation) -> bool, &str) = match session.map(|s| s.state) {
            Some(SessionState::Broken) => (|_| true, "session broke"),
            Some(SessionState::Closed) => (|_| false, "session closed"),
            Some(SessionState::Open) => (|o| o.down, "session silent"),
            None => (|o| o.down, "no session"),
        };
        let reporters: Vec<&str> = ready
            .iter()
            .filter(|(other, _)| other != id && live_ids.contains(other.as_str()))
            .filter(|(other, _)| {
                sessions[other]
                    .reports
                    .get(name)
                    .is_some_and(|o| o.generation >= generation && counts(o))
            })
            .map(|(_, other_name)| other_name.as_str())
            .collect();
        let others = live_ids.len();
        let needed = 2.min(others / 2 + 1);
        if others > 0 && reporters.len() >= needed {
            verdicts.push(Verdict {
                node_id: id.clone(),
                reason: format!(
                    "{gone} and gossip from {} confirms it",
                    reporters.join(", ")
                ),
            });
            continue;
        }
        let ttl = ttl + jitter(id, ttl);
        let since_election = leader_since + settings.grace;
        let last_contact = session.map_or(leader_since, |s| s.last_heartbeat);
        let deadline = last_contact.max(since_election) + ttl;
        if now >= deadline {
            verdicts.push(Verdict {
                node_id: id.clone(),
                reason: format!(
                    "no heartbeat for {:.1} s (TTL {:.1} s)",
                    now.saturating_duration_since(last_contact).as_secs_f64(),
                    ttl.as_secs_f64()
                ),
            });
        }
    }
    verdicts
}

/// Up to a quarter of `ttl`, fixed per node id (FNV-1a of the id).
fn jitter(node_id: &str, ttl: Duration) -> Duration {
    let hash = node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    ttl.mul_f64((hash % 1000) as f64 / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ready(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (format!("id-{n}"), n.to_string()))
            .collect()
    }

    fn session(at: Instant, state: SessionState, down: &[(&str, u64)]) -> SessionView {
        let reports = down.iter().map(|(n, g)| {
            let o = Observation {
                down: true,
                generation: *g,
            };
            (n.to_string(), o)
        });
        SessionView {
            last_heartbeat: at,
            state,
            gossip_generation: 7,
            reports: reports.collect(),
        }
    }

    /// Node a's session in `state`, and b and c live and reporting a down (about
    /// `generation`), all last heard from at `at`.
    fn a_reported_by_b_and_c(
        at: Instant,
        state: SessionState,
        generation: u64,
    ) -> BTreeMap<String, SessionView> {
        BTreeMap::from([
            ("id-a".to_string(), session(at, state, &[])),
            ("id-b".to_string(), session(at, Open, &[("a", generation)])),
            ("id-c".to_string(), session(at, Open, &[("a", generation)])),
        ])
    }

    fn suspect(mut view: SessionView, name: &str) -> SessionView {
        view.reports.insert(
            name.into(),
            Observation {
                down: false,
                generation: 7,
            },
        );
        view
    }

    use SessionState::{Broken, Closed, Open};

    fn ids(verdicts: &[Verdict]) -> Vec<&str> {
        verdicts.iter().map(|v| v.node_id.as_str()).collect()
    }

    #[test]
    fn a_gone_session_confirmed_by_two_reporters_is_down_at_once() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let mut sessions = a_reported_by_b_and_c(now, Broken, 7);
        let v = down_nodes(&s, &ready(&["a", "b", "c"]), &sessions, t0, now);
        assert_eq!(ids(&v), ["id-a"]);
        assert!(v[0].reason.contains("b, c"), "{}", v[0].reason);
        // One reporter of two live others is not enough.
        sessions.insert("id-c".into(), session(now, Open, &[]));
        assert!(down_nodes(&s, &ready(&["a", "b", "c"]), &sessions, t0, now).is_empty());
    }

    #[test]
    fn suspicion_counts_after_a_broken_session_only() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let nodes = ready(&["a", "b", "c"]);
        let mut sessions = BTreeMap::new();
        sessions.insert("id-b".into(), suspect(session(now, Open, &[]), "a"));
        sessions.insert("id-c".into(), suspect(session(now, Open, &[]), "a"));
        sessions.insert("id-a".into(), session(now, Broken, &[]));
        assert_eq!(ids(&down_nodes(&s, &nodes, &sessions, t0, now)), ["id-a"]);
        // Silent (a partition, perhaps on the control plane's side): it takes DOWN.
        let silent = now + s.session_timeout;
        sessions.insert("id-a".into(), session(now, Open, &[]));
        for id in ["id-b", "id-c"] {
            sessions.get_mut(id).unwrap().last_heartbeat = silent;
        }
        assert!(down_nodes(&s, &nodes, &sessions, t0, silent).is_empty());
    }

    #[test]
    fn a_closed_session_waits_for_its_ttl_whatever_gossip_says() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let nodes = ready(&["a", "b", "c"]);
        let mut sessions = BTreeMap::new();
        sessions.insert("id-a".into(), session(now, Closed, &[]));
        let later = now + s.ttl(3);
        sessions.insert("id-b".into(), session(later, Open, &[("a", 7)]));
        sessions.insert("id-c".into(), session(later, Open, &[("a", 7)]));
        assert!(down_nodes(&s, &nodes, &sessions, t0, now + Duration::from_secs(9)).is_empty());
        let v = down_nodes(&s, &nodes, &sessions, t0, later + s.ttl(3));
        assert_eq!(ids(&v), ["id-a"]);
        assert!(v[0].reason.starts_with("no heartbeat"), "{}", v[0].reason);
    }

    #[test]
    fn a_live_session_is_never_down_whatever_gossip_says() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(600);
        let s = DetectorSettings::default();
        let sessions = a_reported_by_b_and_c(now, Open, 7);
        assert!(down_nodes(&s, &ready(&["a", "b", "c"]), &sessions, t0, now).is_empty());
    }

    #[test]
    fn reports_about_an_earlier_run_do_not_count() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        // a runs generation 7; the reports are about its generation 6.
        let sessions = a_reported_by_b_and_c(now, Broken, 6);
        assert!(down_nodes(&s, &ready(&["a", "b", "c"]), &sessions, t0, now).is_empty());
    }

    #[test]
    fn with_one_other_node_its_report_is_a_majority() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let mut sessions = BTreeMap::new();
        sessions.insert("id-a".into(), session(now, Broken, &[]));
        sessions.insert("id-b".into(), session(now, Open, &[("a", 7)]));
        assert_eq!(
            ids(&down_nodes(&s, &ready(&["a", "b"]), &sessions, t0, now)),
            ["id-a"]
        );
    }

    #[test]
    fn a_silent_session_expires_after_its_ttl_and_not_before() {
        let t0 = Instant::now();
        let s = DetectorSettings::default();
        let last = t0 + Duration::from_secs(100);
        let mut sessions = BTreeMap::new();
        // Open but silent (a partition): gone after session_timeout, down after the TTL.
        sessions.insert("id-a".into(), session(last, Open, &[]));
        let nodes = ready(&["a"]);
        let at = |secs: f64| last + Duration::from_secs_f64(secs);
        assert!(down_nodes(&s, &nodes, &sessions, t0, at(9.9)).is_empty());
        let ttl = s.ttl(1) + jitter("id-a", s.ttl(1));
        assert!(
            down_nodes(
                &s,
                &nodes,
                &sessions,
                t0,
                last + ttl - Duration::from_millis(1)
            )
            .is_empty()
        );
        let v = down_nodes(&s, &nodes, &sessions, t0, last + ttl);
        assert_eq!(ids(&v), ["id-a"]);
        assert!(v[0].reason.starts_with("no heartbeat"), "{}", v[0].reason);
    }

    #[test]
    fn after_an_election_unseen_nodes_get_grace_plus_ttl() {
        let t0 = Instant::now();
        let s = DetectorSettings::default();
        let nodes = ready(&["a"]);
        let ttl = s.ttl(1) + jitter("id-a", s.ttl(1));
        let sessions = BTreeMap::new();
        let just_before = t0 + s.grace + ttl - Duration::from_millis(1);
        assert!(down_nodes(&s, &nodes, &sessions, t0, just_before).is_empty());
        assert_eq!(
            ids(&down_nodes(&s, &nodes, &sessions, t0, t0 + s.grace + ttl)),
            ["id-a"]
        );
    }

    #[test]
    fn the_ttl_grows_with_the_cluster() {
        let s = DetectorSettings::default();
        assert_eq!(s.ttl(3), Duration::from_secs(10));
        assert_eq!(s.ttl(500), Duration::from_secs(10));
        assert_eq!(s.ttl(1000), Duration::from_secs(20));
    }

    proptest! {
        /// Whatever the sessions and reports: a node with a live session is never
        /// declared down, nothing is declared down within the session timeout of its
        /// last heartbeat, and the verdicts depend only on the input.
        #[test]
        fn never_down_while_heard_from(
            nodes in proptest::collection::vec((0u64..40_000, 0u8..3, 0u64..3, proptest::collection::btree_set(0usize..6, 0..6)), 1..6),
            leader_ms in 0u64..20_000,
            now_ms in 0u64..60_000,
        ) {
            let t0 = Instant::now();
            let s = DetectorSettings::default();
            let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
            let ready: Vec<(String, String)> = names.iter().map(|n| (format!("id-{n}"), n.clone())).collect();
            let mut sessions = BTreeMap::new();
            for (i, (heartbeat_ms, state, generation, down)) in nodes.iter().enumerate() {
                let state = [Open, Broken, Closed][*state as usize];
                let reports = down.iter().filter(|d| **d < names.len()).map(|d| {
                    (names[*d].clone(), Observation { down: *d % 2 == 0, generation: 1 })
                });
                sessions.insert(ready[i].0.clone(), SessionView {
                    last_heartbeat: t0 + Duration::from_millis(*heartbeat_ms),
                    state,
                    gossip_generation: *generation,
                    reports: reports.collect(),
                });
            }
            let now = t0 + Duration::from_millis(now_ms);
            let leader_since = t0 + Duration::from_millis(leader_ms);
            let verdicts = down_nodes(&s, &ready, &sessions, leader_since, now);
            prop_assert_eq!(&verdicts, &down_nodes(&s, &ready, &sessions, leader_since, now));
            for v in &verdicts {
                let session = &sessions[&v.node_id];
                let heard = now.saturating_duration_since(session.last_heartbeat) < s.session_timeout;
                prop_assert!(!(session.state == Open && heard), "{} declared down while heard from", v.node_id);
                if session.state == Closed {
                    prop_assert!(v.reason.starts_with("no heartbeat"), "{}", v.reason);
                }
                if v.reason.starts_with("no heartbeat") {
                    prop_assert!(now >= leader_since + s.grace + s.min_ttl);
                    prop_assert!(now >= session.last_heartbeat + s.min_ttl);
                }
            }
        }
    }
}
