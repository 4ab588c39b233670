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

/// Path of a workspace binary, e.g. `binary("constellation-controlplane")`, from the
/// target directory of the running executable (a test in `target/<profile>/deps/` or a
/// bench binary in `target/<profile>/`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Environment added to every process started from now on (see [`set_child_env`]).
static CHILD_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Adds `vars` to the environment of every process this test starts from now on, for
/// a test that runs them under a tool such as libfaketime (`LD_PRELOAD`). Process-wide:
/// only for a test alone in its test binary.
pub fn set_child_env(vars: impl IntoIterator<Item = (String, String)>) {
    CHILD_ENV
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(vars);
}

static ECHO_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether processes started from now on echo their log lines (on by default, so a
/// failing test shows them; benchmarks turn it off).
pub fn set_echo_logs(echo: bool) {
    ECHO_LOGS.store(echo, std::sync::atomic::Ordering::Relaxed);
}

/// Directory that keeps every process's log lines, if set (see [`set_log_dir`]).
static LOG_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Appends the log lines of every process started from now on to `DIR/NAME.log` (NAME
/// being the process's echo prefix, such as `cp1`), so a benchmark's slow round can be
/// explained afterwards. Lines carry their own timestamps.
pub fn set_log_dir(dir: Option<PathBuf>) {
    *LOG_DIR.lock().unwrap_or_else(|e| e.into_inner()) = dir;
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
        Self::spawn_command(name, Command::new(binary), binary, args)
    }

    /// [`Process::spawn`] inside the network namespace `netns` (a path such as
    /// `/var/run/netns/NAME`, see [`crate::hosts`]) through `nsenter --net`, which
    /// unlike `ip netns exec` keeps the test's mounts (cgroups, /sys). nsenter execs the
    /// binary in place, so [`Process::pid`] is the binary's own pid.
    pub fn spawn_in_netns(
        name: &str,
        netns: &Path,
        binary: &Path,
        args: &[String],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", netns.display()))
            .arg("--")
            .arg(binary);
        Self::spawn_command(name, command, binary, args)
    }

    fn spawn_command(
        name: &str,
        mut command: Command,
        binary: &Path,
        args: &[String],
    ) -> anyhow::Result<Self> {
        let env = CHILD_ENV.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut child = command
            .envs(env)
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
        let echo = ECHO_LOGS.load(std::sync::atomic::Ordering::Relaxed);
        let log_dir = LOG_DIR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut kept = match log_dir {
            Some(dir) => {
                let path = dir.join(format!("{name}.log"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("open {}", path.display()))?;
                Some(std::io::LineWriter::new(file))
            }
            None => None,
        };
        tokio::spawn(async move {
            use std::io::Write;
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[{prefix}] {line}");
                }
                // A full disk only loses the copy, never the process's run.
                if let Some(file) = &mut kept
                    && writeln!(file, "{line}").is_err()
                {
                    kept = None;
                }
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

    /// The operating-system process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.map_err(Into::into)
    }
}

/// How a control-plane member starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// `--bootstrap`: the first member of a new cluster.
    Bootstrap,
    /// `--join ADDR`: through a member's API address.
    Join(String),
    /// Neither: resume from the data directory.
    Resume,
}

/// A control-plane member process. The first start binds ports the kernel picks;
/// a restart reuses them, since the cluster's membership records the addresses.
pub struct ControlPlane {
    pub id: u64,
    pub process: Process,
    pub api_addr: String,
    pub raft_addr: String,
    pub data_dir: PathBuf,
}

impl ControlPlane {
    /// Starts `n` members on loopback with their data under `dir` (`cp1`, `cp2`...): the
    /// first bootstraps, the others join through it; returns once all are voters and a
    /// leader is known.
    pub async fn start_cluster(dir: &Path, n: u64) -> anyhow::Result<Vec<Self>> {
        let first = Self::start(1, &dir.join("cp1"), Start::Bootstrap, None).await?;
        let seed = first.api_addr.clone();
        let mut members = vec![first];
        for id in 2..=n {
            let data = dir.join(format!("cp{id}"));
            members.push(Self::start(id, &data, Start::Join(seed.clone()), None).await?);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = crate::api::client(&seed)
                .cluster_status(constellation_proto::v1::ClusterStatusRequest {})
                .await
                .map(|r| r.into_inner());
            if let Ok(status) = status {
                let voters = status
                    .members
                    .iter()
                    .filter(|m| m.role() == constellation_proto::v1::MemberRole::Voter)
                    .count();
                if voters as u64 == n && status.leader_id.is_some() {
                    return Ok(members);
                }
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no {n} voters with a leader within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Bootstraps a one-member cluster with its data in `data_dir`.
    pub async fn bootstrap(id: u64, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start(id, data_dir, Start::Bootstrap, None).await
    }

    /// Starts member `id`; `addrs` are (api, raft) to reuse, or `None` for fresh ports.
    pub async fn start(
        id: u64,
        data_dir: &Path,
        start: Start,
        addrs: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let (api, raft) = addrs.unwrap_or(("127.0.0.1:0", "127.0.0.1:0"));
        let mut args: Vec<String> = [
            "--id",
            &id.to_string(),
            "--data-dir",
            &data_dir.display().to_string(),
            "--api-listen",
            api,
            "--raft-listen",
            raft,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        match &start {
            Start::Bootstrap => args.push("--bootstrap".into()),
            Start::Join(seed) => args.extend(["--join".into(), seed.clone()]),
            Start::Resume => {}
        }
        let bin = binary("constellation-controlplane")?;
        let mut process = Process::spawn(&format!("cp{id}"), &bin, &args)?;
        let fields = process
            .wait_for_log("control plane serving", Duration::from_secs(60))
            .await?;
        Ok(Self {
            id,
            api_addr: fields.get("api").cloned().context("no api field")?,
            raft_addr: fields.get("raft").cloned().context("no raft field")?,
            process,
            data_dir: data_dir.to_owned(),
        })
    }

    /// Kills the member with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn crash(&mut self) -> anyhow::Result<()> {
        self.process.kill().await
    }

    /// Starts this member again from its data directory on the same addresses.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let again = Self::start(
            self.id,
            &self.data_dir,
            Start::Resume,
            Some((&self.api_addr, &self.raft_addr)),
        )
        .await?;
        *self = again;
        Ok(())
    }
}

/// A one-member control plane and one agent on the default Docker engine, with their
/// data under a test's directory; the agent's containers are removed on drop.
pub struct OneNode {
    // Dropped in this order: the agent first, then its containers, then the control plane.
    pub agent: Agent,
    _containers: crate::docker::NodeContainersGuard,
    pub cp: ControlPlane,
}

impl OneNode {
    /// Bootstraps `dir/cp1` and starts an agent named after `prefix` against it.
    pub async fn start(dir: &Path, prefix: &str) -> anyhow::Result<Self> {
        let cp = ControlPlane::bootstrap(1, &dir.join("cp1")).await?;
        let node = crate::docker::unique_name(prefix);
        let containers = crate::docker::NodeContainersGuard::new(&[&node]);
        let agent = Agent::start(&node, &cp.api_addr, &dir.join("secrets")).await?;
        Ok(Self {
            agent,
            _containers: containers,
            cp,
        })
    }
}

/// A node agent process connected to a control plane.
pub struct Agent {
    pub name: String,
    pub process: Process,
    /// The arguments it was started with, for [`Agent::restart`].
    args: Vec<String>,
}

impl Agent {
    /// Starts `constellation-agent` named `name` against `controlplane` (an API
    /// address), with its secrets under `secrets_dir` and its state file in the
    /// directory next to it (`agent-state-NAME`: agents whose secrets share a parent do not
    /// share a state file), on the default Docker engine.
    pub async fn start(name: &str, controlplane: &str, secrets_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(name, controlplane, secrets_dir, &[]).await
    }

    /// [`Agent::start`] with extra arguments (e.g. `--docker-host`).
    pub async fn start_with(
        name: &str,
        controlplane: &str,
        secrets_dir: &Path,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let state_dir = secrets_dir.with_file_name(format!("agent-state-{name}"));
        let mut args: Vec<String> = [
            "--name",
            name,
            "--controlplane",
            controlplane,
            "--secrets-dir",
            &secrets_dir.display().to_string(),
            "--state-dir",
            &state_dir.display().to_string(),
            "--gossip-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().cloned());
        let process = Self::spawn(name, &args).await?;
        Ok(Self {
            name: name.to_owned(),
            process,
            args,
        })
    }

    async fn spawn(name: &str, args: &[String]) -> anyhow::Result<Process> {
        let bin = binary("constellation-agent")?;
        let mut process = Process::spawn(name, &bin, args)?;
        process
            .wait_for_log("agent started", Duration::from_secs(30))
            .await?;
        Ok(process)
    }

    /// Stops the agent (SIGTERM) and starts it again with the same arguments.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(20)).await?;
        self.process = Self::spawn(&self.name, &self.args).await?;
        Ok(())
    }
}

/// A gateway process on a kernel-chosen port.
pub struct Gateway {
    pub process: Process,
    /// `127.0.0.1:port` it serves HTTP on.
    pub addr: String,
}

impl Gateway {
    /// Starts `constellation-gateway` against `controlplanes` (API addresses) with
    /// `extra` flags (tokens, `--stale-after`, ...), and waits until it serves.
    pub async fn start(controlplanes: &[&str], extra: &[&str]) -> anyhow::Result<Self> {
        let mut args: Vec<String> = vec![
            "--controlplane".into(),
            controlplanes.join(","),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = binary("constellation-gateway")?;
        let mut process = Process::spawn("gw", &bin, &args)?;
        let fields = process
            .wait_for_log("gateway serving", Duration::from_secs(30))
            .await?;
        Ok(Self {
            addr: fields.get("listen").cloned().context("no listen field")?,
            process,
        })
    }

    /// Waits until the gateway's view has caught up with the control plane (its REST
    /// reads answer 200), at most `timeout`.
    pub async fn wait_synced(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_synced_with(&[], timeout).await
    }

    /// [`Gateway::wait_synced`] with extra request headers (a bearer token).
    pub async fn wait_synced_with(
        &self,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut request = crate::http::HttpRequest::new("GET", "/api/v1/status");
            for (k, v) in headers {
                request = request.header(k, v);
            }
            if let Ok(r) = request.send(&self.addr).await
                && r.status == 200
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("gateway {} did not sync within {timeout:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the `constellation` CLI against the control plane at `addr`, echoing the
/// command and its output to stderr (the test's log).
pub fn cli(addr: &str, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(binary("constellation").expect("the CLI is built"))
        .args(["--controlplane", addr])
        .args(args)
        .output()
        .expect("the CLI runs");
    eprintln!(
        "$ constellation {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// [`cli`] that must succeed; its standard output.
pub fn cli_ok(addr: &str, args: &[&str]) -> String {
    let output = cli(addr, args);
    assert!(output.status.success(), "constellation {args:?} failed");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The last `lines` lines of a log file (empty if it cannot be read), for errors.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
