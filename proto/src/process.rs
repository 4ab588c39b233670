//! What every Constellation process shares: layered configuration (file, then
//! environment, then flags), logging, and shutdown on SIGINT/SIGTERM with a bounded
//! drain. Enabled by the `process` feature so SDK users of the protocol do not pay for it.
//!
//! Configuration: each binary declares one struct that is both its clap flags and its
//! config-file schema. Every field is an `Option`, so "not given" is distinguishable
//! from a default. A flag `--api-listen` is the file key `api_listen` and the
//! environment variable `CONSTELLATION_API_LISTEN`. A key given in several places takes
//! the last of: file, environment, flag. Unknown file keys are errors that name the key.

use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: unsupported extension (use .yaml, .yml or .toml)")]
    Extension { path: PathBuf },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Reads a YAML or TOML file (by extension) into a generic value.
fn read_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse = |message: String| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            if text.trim().is_empty() {
                return Ok(serde_json::Value::Object(Default::default()));
            }
            yaml_serde::from_str(&text).map_err(|e| parse(e.to_string()))
        }
        Some("toml") => toml::from_str(&text).map_err(|e| parse(e.to_string())),
        _ => Err(ConfigError::Extension {
            path: path.to_owned(),
        }),
    }
}

/// Merges `cli` (flags and environment, as clap resolved them) over the config file at
/// `file`. `T` should be `#[serde(deny_unknown_fields)]` so that an unknown key fails.
pub fn layered<T: Serialize + DeserializeOwned>(
    file: Option<&Path>,
    cli: &T,
) -> Result<T, ConfigError> {
    let mut merged = match file {
        Some(path) => {
            let value = read_file(path)?;
            // Deserialize the file alone first, so its errors name the file.
            serde_json::from_value::<T>(value.clone()).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
            value
        }
        None => serde_json::Value::Object(Default::default()),
    };
    let overrides = serde_json::to_value(cli).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    overlay(&mut merged, overrides);
    serde_json::from_value(merged).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// A binary's flags struct (also its config-file schema): where its config file is and
/// how it logs.
pub trait Flags: clap::Parser + Serialize + DeserializeOwned {
    fn config_file(&self) -> Option<&Path>;
    fn log(&self) -> &LogFlags;
}

/// Parses flags and environment, layers them over the config file, starts logging.
pub fn start<F: Flags>() -> Result<F, ConfigError> {
    let cli = F::parse();
    let flags: F = layered(cli.config_file(), &cli)?;
    flags.log().init()?;
    Ok(flags)
}

/// Writes every non-null leaf of `over` into `base`, descending into nested tables.
fn overlay(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) if slot.is_object() => overlay(slot, value),
                    _ if value.is_null() => {}
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) if !over.is_null() => *base = over,
        _ => {}
    }
}

/// Logging flags every binary takes; in a config file they are the table `log`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFlags {
    /// Log line format.
    #[arg(long = "log-format", env = "CONSTELLATION_LOG_FORMAT", value_enum)]
    pub format: Option<LogFormat>,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "constellation_controlplane=debug,info".
    #[arg(long = "log-level", env = "CONSTELLATION_LOG_LEVEL")]
    pub level: Option<String>,
}

impl LogFlags {
    /// Starts logging as these flags say (text at "info" by default).
    pub fn init(&self) -> Result<(), ConfigError> {
        init_logging(
            self.format.unwrap_or_default(),
            self.level.as_deref().unwrap_or("info"),
        )
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Starts the tracing subscriber. `filter` uses `EnvFilter` syntax ("info",
/// "constellation_controlplane=debug,info").
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), ConfigError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| ConfigError::Invalid(format!("log_level {filter:?}: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| ConfigError::Invalid(format!("logging: {e}")))
}

/// Ends `main`: prints an error with its causes on one line (no backtrace noise) and
/// turns it into a failing exit status.
pub fn exit_status<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One token for the whole process, cancelled on the first SIGINT or SIGTERM. A second
/// signal exits at once, for operators whose drain is stuck. The handlers are in place
/// when this returns, so a signal sent right after start-up is never lost.
pub fn shutdown_token() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let cancel = token.clone();
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let signal = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if first {
                tracing::info!(signal, "shutting down");
                cancel.cancel();
                first = false;
            } else {
                tracing::warn!(signal, "second signal, exiting now");
                std::process::exit(130);
            }
        }
    });
    token
}

/// Runs until `shutdown` is cancelled or a task ends on its own (an early end is a
/// failure, and cancels `shutdown`), then drains the rest within `grace`.
pub async fn run_until_shutdown<E: std::fmt::Display + 'static>(
    tasks: &mut JoinSet<Result<(), E>>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), String> {
    let early = tokio::select! {
        // Biased: after a signal, tasks that end because of it are not "early".
        biased;
        _ = shutdown.cancelled() => None,
        Some(joined) = tasks.join_next() => Some(match joined {
            Ok(Ok(())) => "a task ended before shutdown".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("task panicked: {e}"),
        }),
    };
    shutdown.cancel();
    let drained = drain(tasks, grace).await;
    match early {
        Some(e) => Err(e),
        None => drained,
    }
}

/// Waits for every task to finish, at most `grace`; then aborts what is left. Returns
/// the first error a task returned, so the process can exit non-zero.
pub async fn drain<E: std::fmt::Display + 'static>(
    tasks: &mut JoinSet<Result<(), E>>,
    grace: Duration,
) -> Result<(), String> {
    let mut first_error = None;
    let all = async {
        while let Some(joined) = tasks.join_next().await {
            let outcome = match joined {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) if e.is_cancelled() => continue,
                Err(e) => format!("task panicked: {e}"),
            };
            tracing::error!(error = %outcome, "task failed");
            first_error.get_or_insert(outcome);
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            ?grace,
            "drain timed out, aborting tasks"
        );
        tasks.abort_all();
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        api_listen: Option<String>,
        bootstrap: Option<bool>,
        id: Option<u64>,
        log: LogFlags,
    }

    fn file(ext: &str, body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(&format!(".{ext}"))
            .tempfile()
            .unwrap();
        std::io::Write::write_all(&mut f, body.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_override_file_and_file_fills_the_rest() {
        let f = file(
            "yaml",
            "api_listen: 127.0.0.1:1\nid: 7\nbootstrap: true\nlog:\n  level: debug\n",
        );
        let cli = Sample {
            api_listen: Some("127.0.0.1:2".into()),
            bootstrap: Some(false),
            id: None,
            log: LogFlags {
                format: Some(LogFormat::Json),
                level: None,
            },
        };
        let got = layered(Some(f.path()), &cli).unwrap();
        assert_eq!(got.api_listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(got.bootstrap, Some(false));
        assert_eq!(got.id, Some(7));
        assert_eq!(got.log.format, Some(LogFormat::Json));
        assert_eq!(got.log.level.as_deref(), Some("debug"));
    }

    #[test]
    fn toml_is_read_too() {
        let f = file("toml", "id = 3\n");
        let got = layered(Some(f.path()), &Sample::default()).unwrap();
        assert_eq!(got.id, Some(3));
    }

    #[test]
    fn unknown_key_is_named() {
        let f = file("yaml", "api_lisen: x\n");
        let err = layered(Some(f.path()), &Sample::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_lisen"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_nested_key_is_named() {
        let f = file("yaml", "log:\n  colour: red\n");
        let err = layered(Some(f.path()), &Sample::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn wrong_type_and_extension_are_errors() {
        let f = file("yaml", "id: seven\n");
        assert!(layered(Some(f.path()), &Sample::default()).is_err());
        let f = file("ini", "id=1\n");
        let err = layered(Some(f.path()), &Sample::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Extension { .. }), "{err}");
    }
}
