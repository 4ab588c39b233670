//! Flags and config file of `constellation-gateway` (one struct is both; see
//! `constellation_proto::process` for the precedence rules), resolved into [`Config`].

use crate::{Error, Result};
use constellation_proto::process::LogFlags;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const DEFAULT_CONTROLPLANE: &str = "127.0.0.1:7400";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Run the Constellation gateway: REST, WebSocket events and the Traefik HTTP provider.
#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[command(name = "constellation-gateway", version)]
#[serde(deny_unknown_fields, default)]
pub struct Flags {
    /// Config file (.yaml, .yml or .toml); flags and environment override its keys.
    #[arg(long, env = "CONSTELLATION_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Control-plane API addresses; any member will do [default: 127.0.0.1:7400].
    #[arg(long, env = "CONSTELLATION_CONTROLPLANE", value_delimiter = ',')]
    pub controlplane: Option<Vec<String>>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "CONSTELLATION_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub log: LogFlags,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub controlplane: Vec<String>,
    pub listen: SocketAddr,
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
        let controlplane = self
            .controlplane
            .unwrap_or_else(|| vec![DEFAULT_CONTROLPLANE.to_owned()]);
        if controlplane.iter().any(|a| a.trim().is_empty()) {
            return Err(Error::Config(
                "controlplane: addresses must not be empty".into(),
            ));
        }
        Ok(Config {
            controlplane,
            listen: self
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default parses")),
        })
    }
}

impl From<constellation_proto::process::ConfigError> for Error {
    fn from(e: constellation_proto::process::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}
