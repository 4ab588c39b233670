//! Flags and config file of `constellation-controlplane` (one struct is both; see
//! `constellation_proto::process` for the precedence rules), and their resolution
//! into a checked [`Config`].

use crate::{Error, Result};
use constellation_proto::process::LogFlags;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_RAFT_LISTEN: &str = "127.0.0.1:7401";
/// Bounds of `--heartbeat-period`: below, heartbeats would cost more than the work they
/// watch; above, a silent node would go unnoticed for minutes.
pub const HEARTBEAT_PERIOD_MIN: std::time::Duration = std::time::Duration::from_millis(100);
pub const HEARTBEAT_PERIOD_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// Largest `snapshot_after_mib`: 1 TiB, far past any log worth keeping (and the byte
/// count it gives cannot overflow).
pub const MAX_SNAPSHOT_AFTER_MIB: u64 = 1024 * 1024;

/// Run a member of the Constellation control plane (a Raft cluster).
#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[command(name = "constellation-controlplane", version)]
#[serde(deny_unknown_fields, default)]
pub struct Flags {
    /// Config file (.yaml, .yml or .toml); flags and environment override its keys.
    #[arg(long, env = "CONSTELLATION_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's Raft id: a positive integer, unique in the cluster.
    #[arg(long, env = "CONSTELLATION_ID")]
    pub id: Option<u64>,
    /// Directory of the Raft log and state; created when missing.
    #[arg(long, env = "CONSTELLATION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the client and agent gRPC API [default: 127.0.0.1:7400].
    #[arg(long, env = "CONSTELLATION_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Address of the peer (Raft) gRPC API [default: 127.0.0.1:7401].
    #[arg(long, env = "CONSTELLATION_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,
    /// API address other members, agents and clients use [default: the bound --api-listen].
    #[arg(long, env = "CONSTELLATION_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// Raft address other members use [default: the bound --raft-listen].
    #[arg(long, env = "CONSTELLATION_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,
    /// Start a new cluster with this member as its only voter.
    #[arg(long, env = "CONSTELLATION_BOOTSTRAP", num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Join an existing cluster through any of its members' API addresses.
    #[arg(
        long,
        env = "CONSTELLATION_JOIN",
        value_delimiter = ',',
        conflicts_with = "bootstrap"
    )]
    pub join: Option<Vec<String>>,
    /// Build a Raft snapshot and compact the log after this many entries [default: 10000].
    #[arg(long, env = "CONSTELLATION_SNAPSHOT_AFTER_LOGS")]
    pub snapshot_after_logs: Option<u64>,
    /// ... or after this many MiB of log entries, whichever comes first; 0 snapshots
    /// by entries only [default: 64].
    #[arg(long, env = "CONSTELLATION_SNAPSHOT_AFTER_MIB")]
    pub snapshot_after_mib: Option<u64>,
    /// Events kept for Watch to replay [default: 10000].
    #[arg(long, env = "CONSTELLATION_EVENT_HISTORY")]
    pub event_history: Option<usize>,
    /// Smallest heartbeat TTL of a node whose session is gone and whom gossip does not
    /// confirm down; grows with the cluster (nodes / 50 per second) [default: 10s].
    #[arg(long, env = "CONSTELLATION_NODE_TTL_MIN")]
    pub node_ttl_min: Option<String>,
    /// Extra time nodes get after a leader election before their TTL can run out
    /// [default: 5s].
    #[arg(long, env = "CONSTELLATION_FAILOVER_GRACE")]
    pub failover_grace: Option<String>,
    /// How often agents heartbeat on their session (Swarm's dispatcher heartbeat); a
    /// session silent for 3 periods counts as gone, and its node is checked through
    /// gossip after 1.5 [default: 1s, at least 100ms, at most 60s].
    #[arg(long, env = "CONSTELLATION_HEARTBEAT_PERIOD")]
    pub heartbeat_period: Option<String>,
    #[command(flatten)]
    pub log: LogFlags,
}

/// How this member enters a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Bootstrap,
    Join(Vec<String>),
    /// Neither flag: resume from the data directory.
    Resume,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub id: u64,
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub raft_listen: SocketAddr,
    pub advertise_api: Option<String>,
    pub advertise_raft: Option<String>,
    pub start: Start,
    pub tuning: crate::cluster::Tuning,
    pub failure_detector: crate::failover::DetectorSettings,
    pub dispatcher: crate::api::DispatcherSettings,
}

impl constellation_proto::process::Flags for Flags {
    fn config_file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }
    fn log(&self) -> &LogFlags {
        &self.log
    }
}

impl Flags {
    /// Checks the merged flags; every problem is reported, named by its key.
    pub fn resolve(self) -> Result<Config> {
        let mut bad = crate::FieldViolations::default();
        let id = match self.id {
            Some(0) => {
                bad.push("id", "must be a positive integer");
                0
            }
            Some(id) => id,
            None => {
                bad.push("id", "is required (--id or CONSTELLATION_ID)");
                0
            }
        };
        if self.data_dir.is_none() {
            bad.push(
                "data_dir",
                "is required (--data-dir or CONSTELLATION_DATA_DIR)",
            );
        }
        let start = match (self.bootstrap.unwrap_or(false), self.join) {
            (true, Some(_)) => {
                bad.push("join", "cannot be combined with bootstrap");
                Start::Bootstrap
            }
            (true, None) => Start::Bootstrap,
            (false, Some(addrs)) if addrs.iter().all(|a| a.trim().is_empty()) => {
                bad.push("join", "needs at least one member address");
                Start::Resume
            }
            (false, Some(addrs)) => Start::Join(addrs),
            (false, None) => Start::Resume,
        };
        let mut tuning = crate::cluster::Tuning::default();
        match self.snapshot_after_logs {
            Some(0) => bad.push("snapshot_after_logs", "must be positive"),
            Some(n) => tuning.snapshot_after_logs = n,
            None => {}
        }
        match self.snapshot_after_mib {
            Some(n) if n > MAX_SNAPSHOT_AFTER_MIB => bad.push(
                "snapshot_after_mib",
                format!("must be at most {MAX_SNAPSHOT_AFTER_MIB} (1 TiB)"),
            ),
            Some(n) => tuning.snapshot_after_bytes = n * 1024 * 1024,
            None => {}
        }
        match self.event_history {
            Some(0) => bad.push("event_history", "must be positive"),
            Some(n) => tuning.event_history = n,
            None => {}
        }
        let mut failure_detector = crate::failover::DetectorSettings::default();
        let mut duration = |key: &str, value: Option<String>, into: &mut std::time::Duration| {
            let Some(value) = value else { return };
            match humantime::parse_duration(value.trim()) {
                Ok(d) if !d.is_zero() => *into = d,
                Ok(_) => bad.push(key, "must be more than zero"),
                Err(e) => bad.push(key, format!("{value:?} is not a duration ({e})")),
            }
        };
        duration(
            "node_ttl_min",
            self.node_ttl_min,
            &mut failure_detector.min_ttl,
        );
        duration(
            "failover_grace",
            self.failover_grace,
            &mut failure_detector.grace,
        );
        let mut dispatcher = crate::api::DispatcherSettings::default();
        let mut heartbeat = dispatcher.heartbeat_period;
        duration("heartbeat_period", self.heartbeat_period, &mut heartbeat);
        if !(HEARTBEAT_PERIOD_MIN..=HEARTBEAT_PERIOD_MAX).contains(&heartbeat) {
            bad.push(
                "heartbeat_period",
                format!(
                    "{heartbeat:?} is out of range ({HEARTBEAT_PERIOD_MIN:?} to {HEARTBEAT_PERIOD_MAX:?})"
                ),
            );
        }
        dispatcher.heartbeat_period = heartbeat;
        failure_detector.follow_heartbeat(heartbeat);
        bad.into_result()?;
        let parse = |s: &str| s.parse().expect("default address parses");
        Ok(Config {
            id,
            data_dir: self.data_dir.unwrap_or_default(),
            api_listen: self.api_listen.unwrap_or_else(|| parse(DEFAULT_API_LISTEN)),
            raft_listen: self
                .raft_listen
                .unwrap_or_else(|| parse(DEFAULT_RAFT_LISTEN)),
            advertise_api: self.advertise_api,
            advertise_raft: self.advertise_raft,
            start,
            tuning,
            failure_detector,
            dispatcher,
        })
    }
}

impl From<constellation_proto::process::ConfigError> for Error {
    fn from(e: constellation_proto::process::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn flags(heartbeat: Option<&str>) -> Flags {
        Flags {
            id: Some(1),
            data_dir: Some("/tmp/cp".into()),
            heartbeat_period: heartbeat.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn heartbeat_period_sets_the_sessions_and_their_timeouts() {
        let defaults = flags(None).resolve().unwrap();
        assert_eq!(defaults.dispatcher.heartbeat_period, Duration::from_secs(1));
        assert_eq!(
            defaults.failure_detector,
            crate::failover::DetectorSettings::default(),
            "the default period keeps the detector's defaults"
        );

        let slow = flags(Some("5s")).resolve().unwrap();
        assert_eq!(slow.dispatcher.heartbeat_period, Duration::from_secs(5));
        assert_eq!(
            slow.failure_detector.session_timeout,
            Duration::from_secs(15)
        );
        assert_eq!(
            slow.failure_detector.check_after,
            Duration::from_millis(7500)
        );
    }

    #[test]
    fn a_bad_heartbeat_period_is_named_with_its_reason() {
        for (value, reason) in [
            ("50ms", "out of range"),
            ("2m", "out of range"),
            ("0s", "more than zero"),
            ("soon", "not a duration"),
        ] {
            let e = flags(Some(value)).resolve().unwrap_err().to_string();
            assert!(
                e.contains("heartbeat_period") && e.contains(reason),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn snapshots_follow_the_log_size_limit() {
        let tuning = |mib| {
            Flags {
                snapshot_after_mib: mib,
                ..flags(None)
            }
            .resolve()
        };
        assert_eq!(
            tuning(None).unwrap().tuning.snapshot_after_bytes,
            crate::cluster::DEFAULT_SNAPSHOT_AFTER_BYTES
        );
        assert_eq!(
            tuning(Some(8)).unwrap().tuning.snapshot_after_bytes,
            8 << 20
        );
        assert_eq!(tuning(Some(0)).unwrap().tuning.snapshot_after_bytes, 0);
        let e = tuning(Some(MAX_SNAPSHOT_AFTER_MIB + 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("snapshot_after_mib") && e.contains("at most"),
            "{e}"
        );
    }
}
