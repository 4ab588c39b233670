//! Processes of the peers the comparison runs (etcd, Serf): finding their binaries,
//! free loopback ports, and starting and stopping them (killed on drop).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The path of `binary` on `PATH`, or an error telling how to install it.
pub fn find_binary(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("`{binary}` is not installed; install it with `apt-get install -y {package}`")
        })
}

/// The first line `binary arg` prints (its version), empty if it prints nothing.
pub fn version_line(binary: &Path, arg: &str) -> String {
    std::process::Command::new(binary)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

/// `n` distinct loopback ports free at the time of the call, for peers that cannot be
/// handed an already-bound listener (etcd, Serf). All are held until all are chosen,
/// so none repeats; another process could still take one before the peer binds it,
/// and the peer then fails to start and says so in its log.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// One peer process; its output goes to `<dir>/<name>.log`.
pub struct PeerProcess {
    child: Child,
}

impl PeerProcess {
    pub fn spawn(name: &str, binary: &Path, args: &[String], dir: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: a crash.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout`.
    pub async fn stop(&mut self, timeout: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The members killed in `trials` trials among `n`, the same sequence on both sides of a
/// comparison: never member 0 (the others joined through it), and no member twice in a
/// row while there is a choice.
pub fn victims(n: usize, trials: usize) -> impl Iterator<Item = usize> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    let mut last = 0;
    (0..trials).map(move |_| {
        loop {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let victim = 1 + (state >> 33) as usize % (n - 1).max(1);
            if victim != last || n <= 2 {
                last = victim;
                return victim;
            }
        }
    })
}
