//! Real Constellation processes for tests: finding the built binaries, starting them on
//! ports the kernel picks (127.0.0.1:0), learning those ports from their JSON logs, and
//! stopping them (SIGTERM, or kill on drop).
//!
//! The binaries come from the workspace's target directory, next to the test
//! executable; `.ci/run` builds them (`cargo build --workspace --bins`) before the tests.

use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Path of a workspace binary, e.g. `binary("constellation-controlplane")`.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    // target/debug/deps/<test exe> -> target/debug/<name>
    let exe = std::env::current_exe()?;
    let dir = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .context("test executable is not under a target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// One running process. Its stderr (JSON log lines) is echoed to the test's output with
/// a prefix, and each line is also offered to [`Process::wait_for_log`].
pub struct Process {
    name: String,
    child: Child,
    logs: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl Process {
    /// Starts `binary` with `args` and JSON logs; `name` prefixes its echoed output.
    pub fn spawn(name: &str, binary: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, logs) = mpsc::unbounded_channel();
        let prefix = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{prefix}] {line}");
                if let Ok(value) = serde_json::from_str(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            logs,
        })
    }

    /// Waits for a log line whose `message` is `message` and returns its fields as
    /// strings. Fails when the process exits first or `timeout` passes.
    pub async fn wait_for_log(
        &mut self,
        message: &str,
        timeout: Duration,
    ) -> anyhow::Result<HashMap<String, String>> {
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = self.logs.recv().await {
                if line.get("message").and_then(|m| m.as_str()) == Some(message) {
                    return Some(line);
                }
            }
            None
        })
        .await
        .with_context(|| format!("{}: no log {message:?} within {timeout:?}", self.name))?;
        let Some(serde_json::Value::Object(fields)) = found else {
            let status = self.child.try_wait()?;
            bail!(
                "{}: exited ({status:?}) before logging {message:?}",
                self.name
            );
        };
        Ok(fields
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect())
    }

    /// Sends SIGTERM and waits for the exit status, at most `timeout`.
    pub async fn terminate(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        self.signal_and_wait("TERM", timeout).await
    }

    /// Sends `signal` ("TERM", "INT", ...) and waits for the exit status, at most `timeout`.
    pub async fn signal_and_wait(
        &mut self,
        signal: &str,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("process already reaped")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{}: still running {timeout:?} after SIG{signal}", self.name))?
            .map_err(Into::into)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.map_err(Into::into)
    }
}

/// A control-plane member started with `--bootstrap` on kernel-chosen ports.
pub struct ControlPlane {
    pub process: Process,
    pub api_addr: String,
    pub raft_addr: String,
}

impl ControlPlane {
    /// Bootstraps a one-member cluster with its data in `data_dir`.
    pub async fn bootstrap(id: u64, data_dir: &Path) -> anyhow::Result<Self> {
        let args = vec![
            "--id".to_owned(),
            id.to_string(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--api-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--raft-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--bootstrap".to_owned(),
        ];
        let bin = binary("constellation-controlplane")?;
        let mut process = Process::spawn(&format!("cp{id}"), &bin, &args)?;
        let fields = process
            .wait_for_log("control plane serving", Duration::from_secs(30))
            .await?;
        Ok(Self {
            api_addr: fields.get("api").cloned().context("no api field")?,
            raft_addr: fields.get("raft").cloned().context("no raft field")?,
            process,
        })
    }
}
