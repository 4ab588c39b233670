//! A failover scenario on the multi-host harness, shared by the failover tests and the
//! failover benchmark: N hosts (network namespaces with their own dockerd and agent),
//! one control-plane member in the root namespace on the hosts' bridge, and a service
//! of HTTP servers with a health check, one replica per node at most.
//!
//! The agents find each other's gossip through the seeds the control plane hands out
//! in their sessions (no `--gossip-seed` flags), as a real deployment would.

use crate::api;
use crate::binaries::{ControlPlane, Process, Start};
use crate::hosts::Hosts;
use anyhow::{Context, bail};
use constellation_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The service every scenario runs.
pub const SERVICE: &str = "web";
/// Port the service's HTTP server listens on inside its container.
const HTTP_PORT: u32 = 8080;

/// Hosts, the control plane and one agent per host (`None` while a host is down).
pub struct Cluster {
    pub hosts: Hosts,
    pub cp: ControlPlane,
    pub agents: Vec<Option<Process>>,
    _dir: tempfile::TempDir,
}

/// The node name of host `i`.
pub fn node_name(i: usize) -> String {
    format!("node{}", i + 1)
}

impl Cluster {
    /// `n` hosts with their agents, every agent's session accepted; `None` when the
    /// machine cannot run the harness (not root, no iptables...): the caller skips.
    pub async fn start_or_skip(test: &str, n: usize) -> anyhow::Result<Option<Self>> {
        let Some(hosts) = Hosts::create_or_skip(test, n).await? else {
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let listen = format!("{}:0", hosts.bridge_addr());
        let cp = ControlPlane::start(
            1,
            &dir.path().join("cp1"),
            Start::Bootstrap,
            Some((&listen, &listen)),
        )
        .await?;
        let mut cluster = Self {
            hosts,
            cp,
            agents: (0..n).map(|_| None).collect(),
            _dir: dir,
        };
        for i in 0..n {
            cluster.start_agent(i).await?;
        }
        // Every agent's gossip has joined another member's (through the seeds).
        for i in 1..n {
            let agent = cluster.agents[i].as_mut().context("agent")?;
            agent
                .wait_for_log("gossip: member up", Duration::from_secs(30))
                .await?;
        }
        Ok(Some(cluster))
    }

    /// [`Cluster::start_or_skip`] with 3 hosts, then the service with 2 replicas until
    /// both are healthy: the cluster, the healthy allocations by id, and the index of a
    /// host running one of them (the victim of a fault).
    pub async fn with_service_or_skip(
        test: &str,
    ) -> anyhow::Result<Option<(Self, BTreeMap<String, pb::Allocation>, usize)>> {
        let Some(cluster) = Self::start_or_skip(test, 3).await? else {
            return Ok(None);
        };
        cluster.apply_service(2).await?;
        let healthy = cluster
            .wait_healthy(2, &[], Duration::from_secs(60))
            .await?;
        let first = healthy.values().next().context("two replicas")?;
        let victim = cluster.host_of(first)?;
        Ok(Some((cluster, healthy, victim)))
    }

    /// Starts host `i`'s agent and waits until its session is accepted.
    pub async fn start_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let host = &self.hosts.hosts()[i];
        let mut agent = host
            .start_agent(&node_name(i), &self.cp.api_addr, &[])
            .await?;
        agent
            .wait_for_log("session accepted", Duration::from_secs(30))
            .await?;
        self.agents[i] = Some(agent);
        Ok(())
    }

    /// Kills host `i` as a power cut would (agent, dockerd, containers).
    pub async fn kill_host(&mut self, i: usize) -> anyhow::Result<()> {
        self.start_kill_host(i).await?;
        self.hosts.host_mut(i).reap_after_kill();
        Ok(())
    }

    /// [`Cluster::kill_host`] as a future that borrows nothing: the SIGKILLs go out at
    /// once, and the future ends when every process of the host is gone (which can
    /// take a second or two), so a caller can watch the cluster react meanwhile. Then
    /// `hosts.host_mut(i).reap_after_kill()`.
    pub fn start_kill_host(
        &mut self,
        i: usize,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + use<> {
        let killing = self.hosts.hosts()[i].start_kill();
        let agent = self.agents[i].take();
        async move {
            killing.await??;
            // The agent ran in the host's namespace, so it is dead; collect it.
            if let Some(mut agent) = agent {
                let _ = agent.kill().await;
            }
            Ok(())
        }
    }

    /// Stops host `i`'s agent cleanly (SIGTERM), as an upgrade or restart would; its
    /// containers keep running.
    pub async fn stop_agent(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut agent) = self.agents[i].take() {
            agent.terminate(Duration::from_secs(20)).await?;
        }
        Ok(())
    }

    /// Brings host `i` back after [`Cluster::kill_host`]: its dockerd, then its agent.
    pub async fn restart_host(&mut self, i: usize) -> anyhow::Result<()> {
        self.hosts.host_mut(i).restart().await?;
        self.start_agent(i).await
    }

    /// Applies the service: `replicas` HTTP servers, at most one per node, healthy when
    /// they answer HTTP (checked every 250 ms).
    pub async fn apply_service(&self, replicas: u32) -> anyhow::Result<()> {
        let millis = |ms: i64| {
            Some(pbjson_types::Duration {
                seconds: ms / 1000,
                nanos: (ms % 1000 * 1_000_000) as i32,
            })
        };
        let check = format!("wget -q -O /dev/null http://127.0.0.1:{HTTP_PORT}/ || exit 1");
        let spec = pb::ServiceSpec {
            name: SERVICE.into(),
            image: crate::docker::test_image(),
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
                .map(String::from)
                .to_vec(),
            replicas: Some(replicas),
            ports: vec![pb::PortSpec {
                container_port: HTTP_PORT,
                ..Default::default()
            }],
            health_check: Some(pb::HealthCheck {
                test: vec!["CMD-SHELL".into(), check],
                interval: millis(250),
                timeout: millis(1000),
                retries: 3,
                ..Default::default()
            }),
            placement: Some(pb::Placement {
                max_per_node: 1,
                ..Default::default()
            }),
            stop_grace_period: millis(1000),
            // Routed by Traefik, so a gateway's Traefik document lists its servers.
            labels: [
                ("traefik.enable", "true"),
                ("traefik.http.routers.web.rule", "Host(`web.test`)"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
            ..Default::default()
        };
        api::client(&self.cp.api_addr)
            .apply_service(pb::ApplyServiceRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// The service's allocations that are RUNNING and HEALTHY, by id.
    pub async fn healthy(&self) -> anyhow::Result<BTreeMap<String, pb::Allocation>> {
        let allocations = api::client(&self.cp.api_addr)
            .list_allocations(pb::ListAllocationsRequest {
                service_name: SERVICE.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .allocations;
        Ok(allocations
            .into_iter()
            .filter(api::is_healthy)
            .map(|a| (a.id.clone(), a))
            .collect())
    }

    /// Waits until `want` allocations are healthy on `want` distinct nodes, none of them
    /// in `excluded`; returns them.
    pub async fn wait_healthy(
        &self,
        want: usize,
        excluded: &[String],
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<String, pb::Allocation>> {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self.healthy().await?;
            let mut nodes: Vec<&str> = healthy.values().map(|a| a.node_name.as_str()).collect();
            nodes.sort_unstable();
            nodes.dedup();
            let elsewhere = nodes.iter().all(|n| !excluded.iter().any(|e| e == n));
            if healthy.len() == want && nodes.len() == want && elsewhere {
                return Ok(healthy);
            }
            if Instant::now() >= deadline {
                bail!(
                    "not {want} healthy replicas (outside {excluded:?}) in {timeout:?}: {healthy:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status of every node, by name.
    pub async fn node_statuses(&self) -> anyhow::Result<HashMap<String, pb::NodeStatus>> {
        let nodes = api::client(&self.cp.api_addr)
            .list_nodes(pb::ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let name = n.description.as_ref().map(|d| d.name.clone());
                (name.unwrap_or_default(), n.status())
            })
            .collect())
    }

    /// Waits until node `name` has `status`.
    pub async fn wait_node(
        &self,
        name: &str,
        status: pb::NodeStatus,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.node_statuses().await?.get(name) == Some(&status) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("node {name} not {status:?} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Running containers of the service on each live host's engine, by node name.
    /// Hosts whose engine does not answer (killed) are left out.
    pub async fn running_containers(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        use bollard::query_parameters::ListContainersOptionsBuilder;
        let mut out = BTreeMap::new();
        for (i, host) in self.hosts.hosts().iter().enumerate() {
            let Ok(docker) = host.docker().await else {
                continue;
            };
            let filters =
                HashMap::from([("label", vec![format!("constellation.service={SERVICE}")])]);
            let options = ListContainersOptionsBuilder::default()
                .filters(&filters)
                .build();
            let Ok(list) = docker.list_containers(Some(options)).await else {
                continue;
            };
            out.insert(node_name(i), list.len());
        }
        Ok(out)
    }

    /// Waits until exactly `want` containers of the service run across the hosts, then
    /// checks that it stays so for `hold` (sampled every 100 ms).
    pub async fn wait_exactly_running(
        &self,
        want: usize,
        timeout: Duration,
        hold: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.running_containers().await?;
            if running.values().sum::<usize>() == want {
                break;
            }
            if Instant::now() >= deadline {
                bail!("not exactly {want} containers running within {timeout:?}: {running:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let until = Instant::now() + hold;
        while Instant::now() < until {
            let running = self.running_containers().await?;
            let total: usize = running.values().sum();
            if total != want {
                bail!("{total} containers running instead of {want}: {running:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Index of the host running `alloc`.
    pub fn host_of(&self, alloc: &pb::Allocation) -> anyhow::Result<usize> {
        (0..self.agents.len())
            .find(|i| node_name(*i) == alloc.node_name)
            .with_context(|| format!("unknown node {}", alloc.node_name))
    }

    /// Stops the agents and the control plane, then tears the hosts down.
    pub async fn teardown(mut self) -> anyhow::Result<()> {
        for agent in self.agents.iter_mut().flatten() {
            let _ = agent.kill().await;
        }
        let _ = self.cp.process.kill().await;
        self.hosts.teardown()?;
        Ok(())
    }
}
