//! A 3-member etcd cluster on loopback with etcd's defaults (every WAL write fsynced
//! before it is acknowledged), for the Raft comparison.

use crate::peers::{PeerProcess, find_binary, free_ports, version_line};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// Three etcd members on loopback, data in `dir`.
pub struct EtcdCluster {
    members: Vec<PeerProcess>,
    /// `host:port` of the leader's client URL.
    pub leader_addr: String,
    pub version: String,
}

impl EtcdCluster {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let etcd = find_binary("etcd", "etcd-server")?;
        let version = version_line(&etcd, "--version");
        let ports: Vec<(u16, u16)> = free_ports(6)?
            .chunks(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut client_addrs = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("e{i}");
            let args: Vec<String> = [
                "--name",
                &name,
                "--data-dir",
                &dir.join(&name).display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                "constellation-bench",
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "error",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            members.push(PeerProcess::spawn(&name, &etcd, &args, dir)?);
            client_addrs.push(format!("127.0.0.1:{client}"));
        }
        let leader_addr = wait_for_leader(&client_addrs).await.with_context(|| {
            format!(
                "etcd did not form a cluster; its logs are in {}",
                dir.display()
            )
        })?;
        Ok(Self {
            members,
            leader_addr,
            version,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(PeerProcess::pid).collect()
    }

    pub async fn stop(mut self) {
        for member in &mut self.members {
            member.stop(Duration::from_secs(10)).await;
        }
    }
}

/// The client address of the member that is leader, once every member agrees on one.
async fn wait_for_leader(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = Vec::new();
        let mut leader_addr = None;
        for addr in addrs {
            let status = async {
                let mut client =
                    etcd_client::Client::connect([format!("http://{addr}")], None).await?;
                client.status().await
            };
            let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), status).await else {
                continue;
            };
            let own_id = status.header().map(|h| h.member_id());
            if status.leader() != 0 && own_id == Some(status.leader()) {
                leader_addr = Some(addr.clone());
            }
            leaders.push(status.leader());
        }
        let agreed = leaders.len() == addrs.len() && leaders.iter().all(|&l| l == leaders[0]);
        if let (true, Some(addr)) = (agreed, leader_addr) {
            return Ok(addr);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
