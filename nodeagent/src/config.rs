//! Flags and config file of `constellation-agent` (one struct is both; see
//! `constellation_proto::process` for the precedence rules), resolved into [`Config`].

use crate::{Error, Result};
use constellation_proto::process::LogFlags;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub const DEFAULT_CONTROLPLANE: &str = "127.0.0.1:7400";
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
pub const DEFAULT_GOSSIP_CLUSTER: &str = "constellation";
pub const DEFAULT_SECRETS_DIR: &str = "/var/lib/constellation/secrets";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/constellation/agent";

/// Run the Constellation node agent: runs this machine's assigned containers on Docker.
#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[command(name = "constellation-agent", version)]
#[serde(deny_unknown_fields, default)]
pub struct Flags {
    /// Config file (.yaml, .yml or .toml); flags and environment override its keys.
    #[arg(long, env = "CONSTELLATION_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Node name, unique in the cluster [default: the host name].
    #[arg(long, env = "CONSTELLATION_NAME")]
    pub name: Option<String>,
    /// Control-plane API addresses; any member will do [default: 127.0.0.1:7400].
    #[arg(long, env = "CONSTELLATION_CONTROLPLANE", value_delimiter = ',')]
    pub controlplane: Option<Vec<String>>,
    /// Docker engine: unix:///path or tcp://host:port [default: the local socket, or DOCKER_HOST].
    #[arg(long, env = "CONSTELLATION_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// UDP address of the gossip socket [default: the advertise address, port 7946].
    #[arg(long, env = "CONSTELLATION_GOSSIP_LISTEN")]
    pub gossip_listen: Option<SocketAddr>,
    /// Gossip member (host:port of its gossip socket) to join through; repeatable. Gossip
    /// runs only when --gossip-listen is given.
    #[arg(
        long = "gossip-seed",
        env = "CONSTELLATION_GOSSIP_SEEDS",
        value_delimiter = ','
    )]
    #[serde(rename = "gossip_seeds")]
    pub gossip_seed: Option<Vec<SocketAddr>>,
    /// Cluster id carried by every gossip datagram; other clusters' datagrams are
    /// dropped [default: constellation].
    #[arg(long, env = "CONSTELLATION_GOSSIP_CLUSTER")]
    pub gossip_cluster: Option<String>,
    /// Address other nodes and clients reach this node on [default: 127.0.0.1].
    #[arg(long, env = "CONSTELLATION_ADVERTISE_ADDR")]
    pub advertise_addr: Option<IpAddr>,
    /// Node label k=v; repeatable.
    #[arg(long = "label", env = "CONSTELLATION_LABELS", value_delimiter = ',')]
    #[serde(rename = "labels")]
    pub label: Option<Vec<String>>,
    /// Directory the secret and config files of containers are written to.
    #[arg(long, env = "CONSTELLATION_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Directory of the agent's state file (its last assignment set, so a restart
    /// without a control plane keeps containers running) [default: /var/lib/constellation/agent].
    #[arg(long, env = "CONSTELLATION_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Containers prepared, created and started at once.
    #[arg(long, env = "CONSTELLATION_START_CONCURRENCY")]
    pub start_concurrency: Option<usize>,
    #[command(flatten)]
    pub log: LogFlags,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub controlplane: Vec<String>,
    pub docker_host: Option<String>,
    pub gossip_listen: SocketAddr,
    /// Whether gossip runs: only when the listen address was given.
    pub gossip_enabled: bool,
    pub gossip_seeds: Vec<SocketAddr>,
    pub gossip_cluster: String,
    pub advertise_addr: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub secrets_dir: PathBuf,
    pub state_dir: PathBuf,
    pub start_concurrency: usize,
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
    pub fn resolve(self) -> Result<Config> {
        let name = match self.name {
            Some(name) => name,
            None => hostname()?,
        };
        if name.is_empty() || name.len() > 253 {
            return Err(Error::Config(format!(
                "name {name:?}: must be 1 to 253 characters"
            )));
        }
        let controlplane = self
            .controlplane
            .unwrap_or_else(|| vec![DEFAULT_CONTROLPLANE.to_owned()]);
        if controlplane.iter().any(|a| a.trim().is_empty()) {
            return Err(Error::Config(
                "controlplane: addresses must not be empty".into(),
            ));
        }
        let start_concurrency = self
            .start_concurrency
            .unwrap_or(crate::reconcile::DEFAULT_START_CONCURRENCY);
        if !(1..=256).contains(&start_concurrency) {
            return Err(Error::Config(format!(
                "start_concurrency {start_concurrency}: must be 1 to 256"
            )));
        }
        let advertise_addr = self.advertise_addr.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut labels = BTreeMap::new();
        for l in self.label.unwrap_or_default() {
            match l.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    labels.insert(k.trim().to_owned(), v.to_owned());
                }
                _ => return Err(Error::Config(format!("label {l:?}: expected key=value"))),
            }
        }
        Ok(Config {
            name,
            controlplane,
            docker_host: self.docker_host,
            gossip_enabled: self.gossip_listen.is_some(),
            gossip_seeds: self.gossip_seed.unwrap_or_default(),
            gossip_cluster: self
                .gossip_cluster
                .unwrap_or_else(|| DEFAULT_GOSSIP_CLUSTER.to_owned()),
            gossip_listen: self
                .gossip_listen
                .unwrap_or(SocketAddr::new(advertise_addr, DEFAULT_GOSSIP_PORT)),
            advertise_addr,
            labels,
            secrets_dir: self
                .secrets_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SECRETS_DIR)),
            state_dir: self
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            start_concurrency,
        })
    }
}

fn hostname() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| {
        Error::Config(format!(
            "name: not given and the host name is unreadable: {e}"
        ))
    })?;
    Ok(raw.trim().to_owned())
}
