//! Failure detection: which READY nodes the leader declares DOWN, and which nodes it
//! asks gossip to check first.
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
//!   generation, from X's hello), says DOWN, and comes from a node whose own session
//!   is live.
//!
//! A node is declared down when its session is gone **and** either enough agents
//! report it DOWN (two, or a majority of the other live nodes when there are fewer
//! than three), or its heartbeat TTL ran out. After a *closed* session only the TTL
//! counts: an agent restart or upgrade keeps its containers running and must not move
//! them. The TTL grows with the cluster, as Nomad's does:
//! `max(min_ttl, nodes / heartbeats_per_second)`, plus a jitter of up to a quarter
//! derived from the node id (so the decision stays a pure function), so a
//! control-plane hiccup does not expire every node in the same tick.
//!
//! **Checks.** Gossip probes each member about once a second (bytes are what a probe
//! period costs), so on its own it may take several seconds to even suspect a dead
//! node. The session knows sooner: a broken connection at once, a silent one after
//! [`DetectorSettings::check_after`]. The leader then asks a few live agents
//! ([`checks_due`]) to put the node under gossip suspicion at once: a live node
//! refutes within a gossip round or two, a dead one is DOWN after the suspicion time.
//! Because the leader starts those suspicions, SUSPECT never counts as evidence; only
//! a suspicion that ran its course unrefuted (DOWN) does.
//!
//! A new leader knows no session: every node gets `grace` plus its TTL from the moment
//! of the election before the TTL can fail it. Gossip evidence needs no grace: it comes
//! from agents that already reconnected to this leader.
//!
//! [`down_nodes`] and [`checks_due`] are the decisions (pure, tested with proptest);
//! the leader's loop ([`crate::leader`]) feeds them a snapshot of the dispatcher's
//! session registry, writes the verdicts through Raft and sends the checks.

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
    /// A session this long without a heartbeat (or broken) gets its node checked
    /// through gossip (see the module): half the session timeout, so the gossip
    /// verdict is in by the time the session counts as gone.
    pub check_after: Duration,
    /// A check not followed by a verdict is asked again after this long (the agents
    /// asked may have died too).
    pub recheck_after: Duration,
    /// Live agents asked to check a node. Three, as SWIM's indirect probes: any two of
    /// them make the two reports a verdict needs.
    pub checkers: usize,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(3),
            min_ttl: Duration::from_secs(10),
            heartbeats_per_second: 50.0,
            grace: Duration::from_secs(5),
            check_after: Duration::from_millis(1500),
            recheck_after: Duration::from_secs(5),
            checkers: 3,
        }
    }
}

impl DetectorSettings {
    /// Sizes the session timeouts for agents heartbeating every `period`: gone after
    /// three periods of silence, checked through gossip after one and a half (the
    /// defaults are those of the default 1 s period).
    pub fn follow_heartbeat(&mut self, period: Duration) {
        self.session_timeout = period * 3;
        self.check_after = period * 3 / 2;
    }

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
        // Whether reports count at all, by how the session went (see the module).
        let (counts, gone) = match session.map(|s| s.state) {
            Some(SessionState::Broken) => (true, "session broke"),
            Some(SessionState::Closed) => (false, "session closed"),
            Some(SessionState::Open) => (true, "session silent"),
            None => (true, "no session"),
        };
        let reporters: Vec<&str> = ready
            .iter()
            .filter(|(other, _)| other != id && live_ids.contains(other.as_str()))
            .filter(|(other, _)| {
                sessions[other]
                    .reports
                    .get(name)
                    .is_some_and(|o| counts && o.down && o.generation >= generation)
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

/// Up to a quarter of `ttl`, fixed per node id.
fn jitter(node_id: &str, ttl: Duration) -> Duration {
    ttl.mul_f64((fnv1a(&[node_id]) % 1000) as f64 / 4000.0)
}

/// FNV-1a over the parts, each followed by a zero byte: a stable hash for decisions
/// that must be pure functions of their input.
fn fnv1a(parts: &[&str]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// When the leader last asked for a node to be checked, about which run of it, and
/// how many times in a row (each round asks other agents: one that joined gossip
/// lately may not know the node yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub generation: u64,
    pub at: Instant,
    pub round: u32,
}

/// A node to check through gossip, and the live agents (node ids) to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub node_id: String,
    pub name: String,
    pub generation: u64,
    pub askers: Vec<String>,
    /// 0 for the first check of this run of the node, then one more per recheck.
    pub round: u32,
}

/// The READY nodes to have checked now (see the module): the session broke, or fell
/// silent for `check_after`, and no check of this run of the node was asked within
/// `recheck_after` (`asked`, by node id). A closed session is not checked: the agent
/// said goodbye, and only its TTL counts. The askers are up to `checkers` other nodes
/// with live sessions, picked by a hash of both ids and the round, so checks spread
/// over the cluster and a recheck asks others. Same input, same checks.
pub fn checks_due(
    settings: &DetectorSettings,
    ready: &[(String, String)],
    sessions: &BTreeMap<String, SessionView>,
    asked: &BTreeMap<String, Asked>,
    now: Instant,
) -> Vec<Check> {
    let silent_for = |s: &SessionView| now.saturating_duration_since(s.last_heartbeat);
    let live: Vec<&str> = ready
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| {
            sessions.get(*id).is_some_and(|s| {
                s.state == SessionState::Open && silent_for(s) < settings.session_timeout
            })
        })
        .collect();
    let mut checks = Vec::new();
    for (id, name) in ready {
        let Some(session) = sessions.get(id) else {
            continue;
        };
        let failing = match session.state {
            SessionState::Broken => true,
            SessionState::Open => silent_for(session) >= settings.check_after,
            SessionState::Closed => false,
        };
        let before = asked
            .get(id)
            .filter(|a| a.generation == session.gossip_generation);
        if !failing
            || before.is_some_and(|a| now.saturating_duration_since(a.at) < settings.recheck_after)
        {
            continue;
        }
        let round = before.map_or(0, |a| a.round.saturating_add(1));
        let salt = round.to_string();
        let mut askers: Vec<&str> = live.iter().copied().filter(|o| *o != id).collect();
        askers.sort_by_key(|o| (fnv1a(&[id, o, &salt]), *o));
        askers.truncate(settings.checkers);
        if askers.is_empty() {
            continue;
        }
        checks.push(Check {
            node_id: id.clone(),
            name: name.clone(),
            generation: session.gossip_generation,
            askers: askers.into_iter().map(str::to_owned).collect(),
            round,
        });
    }
    checks
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
    fn suspicion_never_counts() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let nodes = ready(&["a", "b", "c"]);
        let mut sessions = BTreeMap::new();
        sessions.insert("id-b".into(), suspect(session(now, Open, &[]), "a"));
        sessions.insert("id-c".into(), suspect(session(now, Open, &[]), "a"));
        sessions.insert("id-a".into(), session(now, Broken, &[]));
        // The leader's own check may have started that suspicion: it proves nothing.
        assert!(down_nodes(&s, &nodes, &sessions, t0, now).is_empty());
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
    fn a_broken_session_is_checked_at_once_by_live_others_and_not_asked_again_soon() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let nodes = ready(&["a", "b", "c", "d", "e"]);
        let mut sessions: BTreeMap<String, SessionView> = ["b", "c", "d", "e"]
            .iter()
            .map(|n| (format!("id-{n}"), session(now, Open, &[])))
            .collect();
        sessions.insert("id-a".into(), session(now, Broken, &[]));
        let checks = checks_due(&s, &nodes, &sessions, &BTreeMap::new(), now);
        assert_eq!(checks.len(), 1);
        let check = &checks[0];
        assert_eq!((check.node_id.as_str(), check.name.as_str()), ("id-a", "a"));
        assert_eq!(check.generation, 7);
        assert_eq!(check.askers.len(), s.checkers);
        assert!(!check.askers.contains(&"id-a".to_string()));
        let asked = BTreeMap::from([(
            "id-a".to_string(),
            Asked {
                generation: 7,
                at: now,
                round: 0,
            },
        )]);
        let beat = |sessions: &mut BTreeMap<String, SessionView>, at: Instant| {
            for view in sessions.values_mut().filter(|v| v.state == Open) {
                view.last_heartbeat = at;
            }
        };
        let soon = now + s.recheck_after - Duration::from_millis(1);
        beat(&mut sessions, soon);
        assert!(checks_due(&s, &nodes, &sessions, &asked, soon).is_empty());
        let later = now + s.recheck_after;
        beat(&mut sessions, later);
        let again = checks_due(&s, &nodes, &sessions, &asked, later);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].round, 1);
        beat(&mut sessions, soon);
        // A new run of the node (another generation) is checked afresh.
        sessions.get_mut("id-a").unwrap().gossip_generation = 8;
        assert_eq!(checks_due(&s, &nodes, &sessions, &asked, soon).len(), 1);
    }

    #[test]
    fn a_silent_session_is_checked_after_check_after_and_a_closed_one_never() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let s = DetectorSettings::default();
        let nodes = ready(&["a", "b"]);
        let mut sessions = BTreeMap::from([
            ("id-a".to_string(), session(now, Open, &[])),
            ("id-b".to_string(), session(now, Open, &[])),
        ]);
        let none = BTreeMap::new();
        let just_before = now + s.check_after - Duration::from_millis(1);
        sessions.get_mut("id-b").unwrap().last_heartbeat = just_before;
        assert!(checks_due(&s, &nodes, &sessions, &none, just_before).is_empty());
        let at = now + s.check_after;
        sessions.get_mut("id-b").unwrap().last_heartbeat = at;
        let checks = checks_due(&s, &nodes, &sessions, &none, at);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].askers, ["id-b"]);
        sessions.get_mut("id-a").unwrap().state = Closed;
        assert!(checks_due(&s, &nodes, &sessions, &none, at).is_empty());
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
            let checks = checks_due(&s, &ready, &sessions, &BTreeMap::new(), now);
            prop_assert_eq!(&checks, &checks_due(&s, &ready, &sessions, &BTreeMap::new(), now));
            for c in &checks {
                let target = &sessions[&c.node_id];
                prop_assert!(target.state != Closed, "{} checked after a goodbye", c.node_id);
                prop_assert!(target.state == Broken || now.saturating_duration_since(target.last_heartbeat) >= s.check_after);
                prop_assert!(!c.askers.is_empty() && c.askers.len() <= s.checkers);
                for asker in &c.askers {
                    let a = &sessions[asker];
                    prop_assert!(asker != &c.node_id);
                    prop_assert!(a.state == Open && now.saturating_duration_since(a.last_heartbeat) < s.session_timeout);
                }
            }
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
