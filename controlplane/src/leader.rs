//! Work only the leader does: recording each new leadership in the log (so leadership
//! changes are ordered among the other events), expiring leases, having gossip check
//! the nodes whose session broke and declaring failed nodes down ([`crate::failover`]),
//! and running the scheduler.
//!
//! # The lease clock story
//!
//! Wall clocks of different machines disagree and may jump, so no member ever compares
//! a lease's `expires_at` with its own wall clock. `expires_at` is an estimate for
//! people. What decides expiry is the leader's *monotonic* clock:
//!
//! 1. The holder starts its own countdown of `ttl` when it *sends* its acquire or renew
//!    request, and stops acting under the lease (and stops using its fencing token)
//!    when that countdown runs out without a confirmed renewal.
//! 2. The leader starts the lease's countdown of `ttl` when it *observes* the applied
//!    acquire or renew, which happens after the holder sent it. So the leader's
//!    countdown ends later than the holder's, by the message delay plus commit time.
//! 3. Only then does the leader propose `ExpireLease { name, fencing_token }`. It
//!    applies only if the lease still carries that token: a renewal committed in
//!    between wins.
//! 4. A new leader knows nothing of the old leader's countdowns, so it restarts every
//!    lease's countdown at the full `ttl` from the moment it took over. A lease can
//!    therefore outlive its TTL by up to one election, but it never expires early.
//!
//! Two holders never overlap: a lease is given to another holder only after it was
//! released or expired, and expiry (2, 3) comes after the old holder's own countdown
//! (1) has ended, as long as clocks *rates* agree within the margin the message delay
//! gives (the assumption every lease system makes). Whatever a holder does under the
//! lease carries the fencing token, which strictly increases per lease, so a holder
//! that was paused past its TTL is refused by whoever checks the token.

use crate::api::dispatcher::{SessionRegistry, lock};
use crate::cluster::Cluster;
use crate::failover::{self, DetectorSettings};
use crate::scheduler::{self, Scheduled};
use constellation_proto::v1 as pb;
use openraft::ServerState;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the leader checks for due leases; the precision of expiry.
const TICK: Duration = Duration::from_millis(100);

/// The leader's countdown for each lease, on its monotonic clock.
#[derive(Debug, Default)]
pub struct LeaseClocks {
    /// Lease name → (the lease version the countdown started for, its deadline).
    clocks: BTreeMap<String, (LeaseVersion, Instant)>,
}

/// What identifies one acquisition or renewal of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseVersion {
    token: u64,
    expires_at: Option<(i64, i32)>,
}

impl LeaseClocks {
    /// Starts a full countdown for every lease that is new or was renewed since the last
    /// call, and forgets leases that are gone.
    pub fn observe(&mut self, leases: &[pb::Lease], now: Instant) {
        let mut next = BTreeMap::new();
        for lease in leases {
            let version = LeaseVersion {
                token: lease.fencing_token,
                expires_at: lease.expires_at.as_ref().map(|t| (t.seconds, t.nanos)),
            };
            let ttl = lease.ttl.as_ref().map_or(Duration::ZERO, |d| {
                Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
            });
            let clock = match self.clocks.remove(&lease.name) {
                Some((seen, deadline)) if seen == version => (seen, deadline),
                _ => (version, now + ttl),
            };
            next.insert(lease.name.clone(), clock);
        }
        self.clocks = next;
    }

    /// Leases whose countdown has run out, with the token their expiry must carry.
    pub fn due(&self, now: Instant) -> Vec<(String, u64)> {
        self.clocks
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(name, (version, _))| (name.clone(), version.token))
            .collect()
    }

    /// Forgets every countdown: on losing or gaining leadership, all restart in full.
    pub fn clear(&mut self) {
        self.clocks.clear();
    }
}

/// Runs until `shutdown`: while this member leads, records its leadership once per
/// term, expires leases whose countdown ran out, declares down the nodes the failure
/// detector gives up on (from this member's agent `sessions`), and runs the scheduler
/// whenever the state changed since its last successful plan (a plan is a function of
/// the state and the time) or a time the scheduler reported has come (a reschedule's
/// delay, a drain's or a rolling update's wait).
pub async fn run(
    cluster: Cluster,
    sessions: SessionRegistry,
    detector: DetectorSettings,
    shutdown: CancellationToken,
) {
    let metrics = cluster.raft().metrics();
    let applied = cluster.applied_events();
    let mut clocks = LeaseClocks::default();
    let mut recorded_term = None;
    let mut planned_at = None;
    // When a delayed decision comes due: plan then even if the state did not change.
    let mut wake_at = None;
    let mut leader_since = None;
    let mut asked = BTreeMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let evidence = lock(&sessions).evidence.clone();
    loop {
        let on_evidence = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            // A session ended or a gossip report came: the failure detector's input
            // changed, and waiting for the tick would add up to its period to failover.
            () = evidence.notified() => true,
        };
        let (leading, term) = {
            let m = metrics.borrow();
            (m.state == ServerState::Leader, m.current_term)
        };
        if !leading {
            clocks.clear();
            recorded_term = None;
            planned_at = None;
            wake_at = None;
            leader_since = None;
            asked.clear();
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        if recorded_term != Some(term) {
            clocks.clear();
            if record_leadership(&cluster, term).await {
                recorded_term = Some(term);
            }
        }
        if !on_evidence {
            expire_due_leases(&cluster, &mut clocks).await;
        }
        let declared = detect_failures(&cluster, &sessions, &detector, since, &mut asked).await;
        // On evidence only the detector's input changed; a verdict changes what to
        // schedule, so the scheduler follows at once, else it waits for the tick.
        if on_evidence && !declared {
            continue;
        }
        let index = *applied.borrow();
        let due =
            wake_at.is_some_and(|at| scheduler::reschedule::is_due(&at, &crate::cluster::now()));
        if (planned_at != Some(index) || due)
            && let Scheduled::Settled { wake_at: next } = scheduler::schedule_once(&cluster).await
        {
            (planned_at, wake_at) = (Some(index), next);
        }
    }
}

async fn record_leadership(cluster: &Cluster, term: u64) -> bool {
    let api_addr = cluster
        .leader()
        .map(|(_, m)| m.api_addr)
        .unwrap_or_default();
    let command = pb::Command {
        op: Some(pb::command::Op::Leadership(pb::LeadershipCommand {
            leader_id: cluster.id(),
            term,
            leader_api_addr: api_addr,
        })),
        ..Default::default()
    };
    match cluster.write(command).await {
        Ok(_) => {
            tracing::info!(term, "leading; leadership recorded");
            true
        }
        Err(e) => {
            tracing::warn!(term, error = %e, "could not record leadership");
            false
        }
    }
}

/// Writes DOWN for every READY node the failure detector gives up on, and ends its
/// session if one is still open (a partitioned agent reconnects afresh once it can);
/// asks live agents to check through gossip the nodes whose session broke or fell
/// silent (`asked` remembers when, by node id). Says whether it declared any node down.
async fn detect_failures(
    cluster: &Cluster,
    sessions: &SessionRegistry,
    detector: &DetectorSettings,
    leader_since: Instant,
    asked: &mut BTreeMap<String, failover::Asked>,
) -> bool {
    let ready = cluster
        .read(pb::ReadConsistency::Stale, |s| {
            s.nodes()
                .filter(|n| n.status() == pb::NodeStatus::Ready)
                .map(|n| {
                    let name = n.description.as_ref().map(|d| d.name.clone());
                    (n.id.clone(), name.unwrap_or_default())
                })
                .collect::<Vec<_>>()
        })
        .await;
    let ready = match ready {
        Ok(ready) => ready,
        Err(e) => {
            tracing::warn!(error = %e, "read nodes");
            return false;
        }
    };
    let views = lock(sessions).views();
    let now = Instant::now();
    // Kept past `recheck_after` so a recheck knows its round; forgotten once the node
    // has long stopped being checked (it came back, or was declared down).
    asked.retain(|_, a| now.saturating_duration_since(a.at) < detector.recheck_after * 4);
    let checks = failover::checks_due(detector, &ready, &views, asked, now);
    for check in &checks {
        let at = failover::Asked {
            generation: check.generation,
            at: now,
            round: check.round,
        };
        asked.insert(check.node_id.clone(), at);
    }
    ask_for_checks(sessions, checks);
    let verdicts = failover::down_nodes(detector, &ready, &views, leader_since, now);
    let mut declared = false;
    for verdict in verdicts {
        let command = pb::Command {
            op: Some(pb::command::Op::SetNodeStatus(pb::SetNodeStatusCommand {
                node_id: verdict.node_id.clone(),
                status: pb::NodeStatus::Down as i32,
                message: verdict.reason.clone(),
                last_seen: None,
            })),
            ..Default::default()
        };
        match cluster.write(command).await {
            Ok(_) => {
                declared = true;
                lock(sessions).end_node(&verdict.node_id);
                tracing::warn!(node_id = %verdict.node_id, reason = %verdict.reason, "node declared down");
            }
            Err(e) => {
                tracing::warn!(node_id = %verdict.node_id, error = %e, "could not declare node down")
            }
        }
    }
    declared
}

/// Sends each check to its askers' sessions, without waiting: a session whose stream
/// is full misses it, and the check is asked again after `recheck_after`.
fn ask_for_checks(sessions: &SessionRegistry, checks: Vec<failover::Check>) {
    if checks.is_empty() {
        return;
    }
    let sessions = lock(sessions);
    for check in checks {
        let message = pb::ControlMessage {
            kind: Some(pb::control_message::Kind::Command(pb::AgentCommand {
                kind: Some(pb::agent_command::Kind::CheckMember(pb::CheckMember {
                    name: check.name.clone(),
                    gossip_generation: check.generation,
                })),
            })),
        };
        let mut sent = Vec::new();
        for asker in &check.askers {
            if let Some(info) = sessions.live.get(asker)
                && info.to_agent.try_send(Ok(message.clone())).is_ok()
            {
                sent.push(asker.as_str());
            }
        }
        tracing::info!(node_id = %check.node_id, node = %check.name, askers = ?sent, "session gone: gossip asked to check the node");
    }
}

async fn expire_due_leases(cluster: &Cluster, clocks: &mut LeaseClocks) {
    let leases = match cluster
        .read(pb::ReadConsistency::Stale, |s| {
            s.leases().cloned().collect::<Vec<_>>()
        })
        .await
    {
        Ok(leases) => leases,
        Err(e) => return tracing::warn!(error = %e, "read leases"),
    };
    let now = Instant::now();
    clocks.observe(&leases, now);
    for (name, fencing_token) in clocks.due(now) {
        let command = pb::Command {
            op: Some(pb::command::Op::ExpireLease(pb::ExpireLeaseCommand {
                name: name.clone(),
                fencing_token,
            })),
            ..Default::default()
        };
        match cluster.write(command).await {
            Ok(_) => tracing::info!(lease = %name, fencing_token, "lease expired"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "could not expire lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lease(name: &str, token: u64, expires: i64, ttl_secs: i64) -> pb::Lease {
        pb::Lease {
            name: name.into(),
            holder: "h".into(),
            fencing_token: token,
            ttl: Some(pbjson_types::Duration {
                seconds: ttl_secs,
                nanos: 0,
            }),
            expires_at: Some(pbjson_types::Timestamp {
                seconds: expires,
                nanos: 0,
            }),
            acquired_at: None,
        }
    }

    #[test]
    fn a_lease_is_due_only_a_full_ttl_after_it_was_last_seen_changing() {
        let t0 = Instant::now();
        let mut clocks = LeaseClocks::default();
        clocks.observe(&[lease("a", 1, 100, 10)], t0);
        assert!(clocks.due(t0 + Duration::from_secs(9)).is_empty());
        // Renewed at t0+5: the countdown restarts.
        clocks.observe(&[lease("a", 1, 105, 10)], t0 + Duration::from_secs(5));
        assert!(clocks.due(t0 + Duration::from_secs(14)).is_empty());
        assert_eq!(
            clocks.due(t0 + Duration::from_secs(15)),
            vec![("a".to_string(), 1)]
        );
    }

    #[test]
    fn unchanged_leases_keep_their_deadline_and_gone_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut clocks = LeaseClocks::default();
        clocks.observe(&[lease("a", 1, 100, 10), lease("b", 4, 100, 1)], t0);
        clocks.observe(&[lease("a", 1, 100, 10)], t0 + Duration::from_secs(3));
        assert!(clocks.due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(clocks.due(t0 + Duration::from_secs(10)).len(), 1);
    }

    #[test]
    fn a_new_leader_restarts_every_countdown_in_full() {
        let t0 = Instant::now();
        let mut clocks = LeaseClocks::default();
        clocks.observe(&[lease("a", 1, 100, 10)], t0);
        clocks.clear();
        clocks.observe(&[lease("a", 1, 100, 10)], t0 + Duration::from_secs(8));
        assert!(clocks.due(t0 + Duration::from_secs(17)).is_empty());
    }

    proptest! {
        /// Whatever the sequence of observations, nothing is ever due earlier than a
        /// full TTL after the last change of that lease was observed.
        #[test]
        fn never_due_early(steps in proptest::collection::vec((0u64..3, 0i64..3, 1u64..2000), 1..40), ttl in 1i64..5) {
            let t0 = Instant::now();
            let mut clocks = LeaseClocks::default();
            let mut now = t0;
            let mut last_change: Option<(u64, i64, Instant)> = None;
            for (token, expires, advance_ms) in steps {
                now += Duration::from_millis(advance_ms);
                clocks.observe(&[lease("a", token, expires, ttl)], now);
                match last_change {
                    Some((t, e, _)) if t == token && e == expires => {}
                    _ => last_change = Some((token, expires, now)),
                }
                let (_, _, changed_at) = last_change.unwrap();
                let due = !clocks.due(now).is_empty();
                prop_assert_eq!(due, now >= changed_at + Duration::from_secs(ttl as u64));
            }
        }
    }
}
