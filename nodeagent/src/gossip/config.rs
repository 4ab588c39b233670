//! The gossip settings ([`GossipConfig`]), why each has its default, and their mapping
//! onto foca's [`foca::Config`] (a pure function, tested).

use super::broadcast::NodeMetadata;
use crate::{Error, Result};
use std::net::IpAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// Largest UDP datagram the gossip layer sends or accepts, envelope included. 1400 bytes
/// stays under a 1500-byte Ethernet MTU with room for IP, UDP and tunnel headers (VXLAN,
/// WireGuard), so datagrams are never fragmented (RFC 8085's advice).
pub const DEFAULT_MAX_DATAGRAM: usize = 1400;
/// Smallest datagram limit accepted: IPv6's minimum MTU (1280) less its headers, so a
/// full-size broadcast item and a few members always fit.
pub const MIN_MAX_DATAGRAM: usize = 1200;
/// Node names are DNS-like labels; longer identities are refused on the wire too.
pub const MAX_NAME_LEN: usize = 253;

/// Settings of one gossip member, tuned for nodes on one LAN (sub-millisecond round
/// trips, negligible loss) and for the expected cluster size. Build it with
/// [`GossipConfig::lan`] and override fields when measurements say so; the bench
/// (`constellation-bench gossip`) shows the effect of each on bytes and detection time.
///
/// Time to declare a crashed member down, roughly: wait until some member probes it
/// (about one `probe_period` on average, at most ~4.6 periods for the 99th percentile,
/// because every member probes one other per period in shuffled round-robin), plus
/// one `probe_period` for the failed probe cycle, plus `suspect_to_down`; or, when
/// the control plane asks for a check, just `suspect_to_down`.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node's name, unique in the cluster; it travels in every identity.
    pub name: String,
    /// Cluster id. Every datagram carries a 32-bit tag derived from it, and datagrams
    /// with another tag are dropped before decoding, so two clusters sharing a network
    /// (or a stray packet on the port) never merge memberships.
    pub cluster: String,
    /// IP other members reach this node on, when the socket is bound to an unspecified
    /// address (0.0.0.0 or ::). With a concrete bind address, that address is used.
    pub advertise_ip: Option<IpAddr>,
    /// Cluster size this member is tuned for; sets how often updates are retransmitted
    /// (6·log10(n+1) times, see `max_transmissions`) and scales `suspect_to_down`.
    pub expected_members: NonZeroU32,
    /// How often this member probes one other member (shuffled round-robin). One
    /// second, as memberlist (Serf, Consul, Nomad): a ping and an ack of about 86 bytes
    /// each on the wire, so about 170 B/s per member in steady state. Probing alone
    /// then takes seconds to suspect a dead member (about 4.6 periods at the 99th
    /// percentile before anyone probes it); the control plane does not wait for that:
    /// when a node's session breaks or falls silent it asks a few agents to suspect
    /// it at once ([`super::GossipHandle::check`]), so a dead node is DOWN about
    /// `suspect_to_down` later.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe indirectly.
    /// 100 ms is ~100x a LAN round trip, so only a stalled or dead member misses it,
    /// and leaves time for the indirect round within the probe period.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly when the direct probe times out. Three, as
    /// SWIM and memberlist: enough to route around one lossy path.
    pub indirect_probes: NonZeroUsize,
    /// How long a suspected member has to refute the suspicion before it is declared
    /// down. The suspicion and the refutation both spread epidemically (a few gossip
    /// rounds of `gossip_period`), so this must cover a few such rounds at the cluster
    /// size: [`GossipConfig::lan`] uses 0.5 s · log10(n), at least 0.6 s (1.15 s for
    /// 200 members). Longer is safer against false positives, shorter detects faster.
    pub suspect_to_down: Duration,
    /// How often pending updates are pushed to `gossip_fanout` random members, on top
    /// of riding on probes. 100 ms spreads a change to 200 members in ~0.5 s; it costs
    /// nothing in steady state because nothing is sent when nothing is pending.
    pub gossip_period: Duration,
    /// Members each gossip round goes to. Three, as memberlist's LAN default.
    pub gossip_fanout: NonZeroUsize,
    /// How often one random member is asked for its member list (foca's periodic
    /// announce). It repairs missed joins; an answer is a full datagram, so 30 s costs
    /// ~50 B/s per member.
    pub announce_period: Duration,
    /// How often two members believed down are re-announced to, so a healed partition
    /// merges back without operator action. 60 s: rare, since it only matters after
    /// partitions.
    pub announce_down_period: Duration,
    /// How long to wait before re-announcing to the seeds while this member knows no
    /// one (startup, or everyone else gone).
    pub join_retry: Duration,
    /// How often this member re-sends its own metadata and health digest into the
    /// gossip stream, so a member that lost an earlier datagram converges. New members
    /// get them at once: every member sends its own directly to a member it sees join.
    pub metadata_refresh: Duration,
    /// Largest datagram sent or accepted, envelope included.
    pub max_datagram: usize,
    /// Members whose metadata is remembered; beyond it new nodes' metadata is ignored
    /// (bounds memory against a misbehaving peer).
    pub max_nodes: usize,
    /// Events buffered for each subscriber; a slower subscriber loses the oldest and
    /// is told how many (`RecvError::Lagged`), then should re-list with `members()`.
    pub event_buffer: usize,
    /// Metadata announced at start.
    pub metadata: NodeMetadata,
    /// Lifeguard-style local health: handle queued acks before timers and lengthen
    /// suspicions while this process runs late. On by default; off only to measure it.
    pub local_health: bool,
}

impl GossipConfig {
    /// Settings for a LAN cluster of about `expected_members` nodes (see each field).
    pub fn lan(name: impl Into<String>, cluster: impl Into<String>, expected_members: u32) -> Self {
        let expected_members = NonZeroU32::new(expected_members.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            name: name.into(),
            cluster: cluster.into(),
            advertise_ip: None,
            expected_members,
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(100),
            indirect_probes: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            suspect_to_down: suspicion_for(expected_members),
            gossip_period: Duration::from_millis(100),
            gossip_fanout: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            announce_period: Duration::from_secs(30),
            announce_down_period: Duration::from_secs(60),
            join_retry: Duration::from_secs(1),
            metadata_refresh: Duration::from_secs(60),
            max_datagram: DEFAULT_MAX_DATAGRAM,
            max_nodes: 10_000,
            event_buffer: 4096,
            metadata: NodeMetadata::default(),
            local_health: true,
        }
    }

    /// Checks every setting; the error names the field and the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| Err(Error::Config(format!("gossip.{field}: {why}")));
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return bad("name", "must be 1 to 253 bytes");
        }
        if self.cluster.is_empty() {
            return bad("cluster", "must not be empty");
        }
        if self.probe_period.is_zero() {
            return bad("probe_period", "must be more than zero");
        }
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return bad(
                "probe_rtt",
                "must be more than zero and less than probe_period",
            );
        }
        for (field, value) in [
            ("suspect_to_down", self.suspect_to_down),
            ("gossip_period", self.gossip_period),
            ("announce_period", self.announce_period),
            ("announce_down_period", self.announce_down_period),
            ("join_retry", self.join_retry),
            ("metadata_refresh", self.metadata_refresh),
        ] {
            if value.is_zero() {
                return bad(field, "must be more than zero");
            }
        }
        if !(MIN_MAX_DATAGRAM..=65_000).contains(&self.max_datagram) {
            return bad("max_datagram", "must be 1200 to 65000 bytes");
        }
        if self.max_nodes == 0 {
            return bad("max_nodes", "must be more than zero");
        }
        if self.event_buffer == 0 {
            return bad("event_buffer", "must be more than zero");
        }
        self.metadata.check_size("metadata")?;
        Ok(())
    }

    /// Retunes the suspicion time for a cluster of `members` ([`suspicion_for`]; any
    /// override of `suspect_to_down` is replaced). Retransmissions keep the size the
    /// member was built for: a count that grows while a cluster starts would otherwise
    /// cut them exactly during the join storm they are sized for. True when the
    /// suspicion time changed.
    pub fn resize(&mut self, members: NonZeroU32) -> bool {
        let suspect_to_down = suspicion_for(members);
        let changed = suspect_to_down != self.suspect_to_down;
        self.suspect_to_down = suspect_to_down;
        changed
    }

    /// foca's configuration for these settings; `envelope_len` bytes of each datagram
    /// are ours, the rest is foca's.
    pub(crate) fn foca_config(&self, envelope_len: usize) -> foca::Config {
        let mut config = foca::Config::new_lan(self.expected_members);
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = self.indirect_probes;
        config.suspect_to_down_after = self.suspect_to_down;
        config.max_packet_size =
            NonZeroUsize::new(self.max_datagram - envelope_len).unwrap_or(NonZeroUsize::MIN);
        // Tell a member declared down that it is, so it renews its identity and rejoins
        // at once instead of talking into the void.
        config.notify_down_members = true;
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.announce_period,
            num_members: NonZeroUsize::MIN,
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.announce_down_period,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_period,
            num_members: self.gossip_fanout,
        });
        // foca's default (24 h) keeps a down address known, so a stale identity cannot
        // come back; memory stays bounded by the number of addresses ever seen.
        config.max_transmissions = max_transmissions(self.expected_members);
        config
    }
}

/// Suspicion time for a cluster size: 0.5 s · log10(n), at least 0.6 s.
pub fn suspicion_for(expected_members: NonZeroU32) -> Duration {
    let scaled = 0.5 * f64::from(expected_members.get()).log10();
    Duration::from_millis((scaled.max(0.6) * 1000.0) as u64)
}

/// Retransmissions of each update: 6·log10(n+1), at least 4.
///
/// Every member that learns an update retransmits it k times to random members, so a
/// given member misses it with probability about e^-k. memberlist (Serf) uses
/// 4·log10(n+1) and repairs misses with a full TCP state exchange every 30 s; foca has
/// no such exchange (its periodic announce returns one datagram, ~45 members), and with
/// k = 10 at 200 members about two of the 40,000 (joiner, member) pairs of a cold start
/// were missed for minutes (measured). k = 14 makes that e^-14 · 40,000 ≈ 0.03. The
/// extra retransmissions cost bytes only while something changes.
fn max_transmissions(expected_members: NonZeroU32) -> NonZeroU8 {
    let n = (6.0 * f64::from(expected_members.get().saturating_add(1)).log10()).ceil();
    NonZeroU8::new(n.clamp(4.0, 255.0) as u8).unwrap_or(NonZeroU8::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_defaults_are_valid_for_every_size() {
        for n in [1, 2, 5, 50, 200, 1000, 100_000] {
            let c = GossipConfig::lan("node-1", "c", n);
            c.validate().unwrap();
            let f = c.foca_config(8);
            assert_eq!(f.max_packet_size.get(), DEFAULT_MAX_DATAGRAM - 8);
            assert!(f.probe_rtt < f.probe_period);
        }
    }

    #[test]
    fn suspicion_grows_with_cluster_size() {
        let s = |n| suspicion_for(NonZeroU32::new(n).unwrap());
        assert_eq!(s(1), Duration::from_millis(600));
        assert_eq!(s(5), Duration::from_millis(600));
        assert_eq!(s(200), Duration::from_millis(1150));
        assert!(s(1000) > s(200));
    }

    #[test]
    fn retransmissions_scale_logarithmically() {
        let m = |n| max_transmissions(NonZeroU32::new(n).unwrap()).get();
        assert_eq!(m(1), 4);
        assert_eq!(m(50), 11);
        assert_eq!(m(200), 14);
    }

    #[test]
    fn resizing_retunes_the_suspicion_time_only() {
        let n = |n| NonZeroU32::new(n).unwrap();
        let mut c = GossipConfig::lan("n", "c", 100);
        let transmissions = c.foca_config(8).max_transmissions;
        assert!(c.resize(n(3)));
        assert_eq!(c.suspect_to_down, Duration::from_millis(600));
        assert_eq!(c.foca_config(8).suspect_to_down_after, c.suspect_to_down);
        assert_eq!(c.foca_config(8).max_transmissions, transmissions);
        assert!(!c.resize(n(5)), "the same suspicion time changes nothing");
        assert!(c.resize(n(200)));
        assert_eq!(c.suspect_to_down, Duration::from_millis(1150));
        c.validate().unwrap();
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut c = GossipConfig::lan("n", "c", 5);
        c.probe_rtt = c.probe_period;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("gossip.probe_rtt:"), "{e}");
        let mut c = GossipConfig::lan("", "c", 5);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("gossip.name:")
        );
        c.name = "n".into();
        c.max_datagram = 100;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("gossip.max_datagram:")
        );
    }
}
