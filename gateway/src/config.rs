//! Flags and config file of `constellation-gateway` (one struct is both; see
//! `constellation_proto::process` for the precedence rules), resolved into [`Config`].

use crate::{Error, Result};
use constellation_proto::process::LogFlags;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    // An explicit id: flattened sections (`--traefik-listen`) have `listen` fields too.
    #[arg(long = "listen", id = "main_listen", env = "CONSTELLATION_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Longest one control-plane call may take before the next member is tried [default: 5s].
    #[arg(long, env = "CONSTELLATION_RPC_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub rpc_timeout: Option<Duration>,
    /// How long the view may go without its watch stream before it counts as stale
    /// (the Traefik endpoint then answers 503) [default: 10s].
    #[arg(long, env = "CONSTELLATION_STALE_AFTER", value_parser = humantime::parse_duration)]
    #[serde(default, with = "opt_duration")]
    pub stale_after: Option<Duration>,
    /// Bearer tokens with the admin role (every route). Prefer the environment or the
    /// config file to flags, which other local users can see.
    #[arg(
        long,
        env = "CONSTELLATION_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub admin_tokens: Option<Vec<String>>,
    /// Bearer tokens with the read role (GET routes). Without any token the gateway
    /// lets everyone in and refuses to listen on a non-loopback address.
    #[arg(
        long,
        env = "CONSTELLATION_READ_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_tokens: Option<Vec<String>>,
    /// Origins allowed by CORS and on the WebSocket, matched exactly
    /// (`https://ops.example.com`); none by default.
    #[arg(long, env = "CONSTELLATION_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Messages queued for one WebSocket client; a client whose queue stays full for
    /// 10 s is closed as too slow [default: 4096].
    #[arg(long, env = "CONSTELLATION_WS_CLIENT_QUEUE")]
    pub ws_client_queue: Option<usize>,
    /// The Traefik provider (`--traefik-*` flags, a `traefik:` section in the file).
    #[command(flatten)]
    pub traefik: crate::traefik::Settings,
    #[command(flatten)]
    pub log: LogFlags,
}

pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(10);
/// Largest per-client WebSocket queue: bounds what one slow client may hold.
pub const MAX_WS_CLIENT_QUEUE: usize = 1 << 16;

#[derive(Debug, Clone)]
pub struct Config {
    pub controlplane: Vec<String>,
    pub listen: SocketAddr,
    pub rpc_timeout: Duration,
    pub stale_after: Duration,
    pub tokens: crate::auth::Tokens,
    pub cors_origins: Vec<String>,
    pub ws_client_queue: usize,
    pub traefik: crate::traefik::Settings,
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
        let tokens = crate::auth::Tokens::new(
            self.admin_tokens.as_deref().unwrap_or_default(),
            self.read_tokens.as_deref().unwrap_or_default(),
        )?;
        let cors_origins = self.cors_origins.unwrap_or_default();
        for (i, origin) in cors_origins.iter().enumerate() {
            check_origin(origin).map_err(|reason| {
                Error::Config(format!("cors_origins[{i}]: {origin:?}: {reason}"))
            })?;
        }
        let listen = self
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default parses"));
        tokens.check_listen(listen)?;
        Ok(Config {
            controlplane,
            listen,
            rpc_timeout: positive("rpc_timeout", self.rpc_timeout, DEFAULT_RPC_TIMEOUT)?,
            stale_after: positive("stale_after", self.stale_after, DEFAULT_STALE_AFTER)?,
            tokens,
            cors_origins,
            ws_client_queue: match self.ws_client_queue {
                None => crate::ws::DEFAULT_CLIENT_QUEUE,
                Some(n) if (1..=MAX_WS_CLIENT_QUEUE).contains(&n) => n,
                Some(n) => {
                    return Err(Error::Config(format!(
                        "ws_client_queue: {n} is not between 1 and {MAX_WS_CLIENT_QUEUE}"
                    )));
                }
            },
            traefik: {
                self.traefik.options()?;
                self.traefik
            },
        })
    }
}

impl From<constellation_proto::process::ConfigError> for Error {
    fn from(e: constellation_proto::process::ConfigError) -> Self {
        Error::Config(e.to_string())
    }
}

/// An origin is `scheme://host[:port]`, nothing more (no path, no wildcard).
fn check_origin(origin: &str) -> std::result::Result<(), &'static str> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("must be scheme://host[:port]");
    };
    if !matches!(scheme, "http" | "https") {
        return Err("scheme must be http or https");
    }
    if rest.is_empty() || rest.contains(['/', '*', ' ', '?', '#']) {
        return Err("must be scheme://host[:port] without path or wildcard");
    }
    Ok(())
}

fn positive(field: &str, value: Option<Duration>, default: Duration) -> Result<Duration> {
    match value {
        Some(d) if d.is_zero() => Err(Error::Config(format!("{field}: must be more than 0"))),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

/// Durations in the config file as humantime strings (`"5s"`, `"1m 30s"`).
mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own consistency checks (unique argument ids across flattened sections).
    #[test]
    fn the_flags_form_a_valid_command() {
        Flags::command().debug_assert();
    }

    #[test]
    fn no_tokens_on_a_public_address_is_refused() {
        let flags = Flags {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        let err = flags.resolve().unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn origins_are_exact() {
        assert!(check_origin("https://ops.example.com").is_ok());
        assert!(check_origin("http://127.0.0.1:3000").is_ok());
        assert!(check_origin("https://*.example.com").is_err());
        assert!(check_origin("https://example.com/path").is_err());
        assert!(check_origin("example.com").is_err());
    }
}
