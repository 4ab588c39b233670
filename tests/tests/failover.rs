//! Failover on the multi-host harness: real hosts (network namespaces with their own
//! dockerd and agent), real kills and partitions. A node is declared down when its
//! session is gone and the other agents' gossip confirms it; its replicas are replaced
//! elsewhere, and when it comes back it runs nothing it no longer owns.
//!
//! Timings are printed, not asserted (the failover benchmark measures them); the
//! deadlines here only bound a hung test.

use constellation_proto::v1 as pb;
use constellation_tests::failover::{Cluster, node_name};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hosts_replica_runs_elsewhere_and_its_restart_runs_no_duplicate()
-> anyhow::Result<()> {
    let test = "a_killed_hosts_replica_runs_elsewhere_and_its_restart_runs_no_duplicate";
    let Some((mut cluster, before, victim)) = Cluster::with_service_or_skip(test).await? else {
        return Ok(());
    };
    let victim_name = node_name(victim);
    // The first agent's gossip was retuned for the size the control plane told its
    // session (one node then): 0.6 s of suspicion, not the 1 s of the 100 members it
    // assumes until told. (The later agents log theirs before the harness's wait for
    // their gossip to join, which reads past it.)
    let first = cluster.agents[0].as_mut().expect("the first agent runs");
    let tuned = first
        .wait_for_log("gossip: tuned for the cluster size", WAIT)
        .await?;
    assert_eq!(tuned.get("members").map(String::as_str), Some("1"));
    assert_eq!(
        tuned.get("suspect_to_down").map(String::as_str),
        Some("600ms")
    );

    let killed = Instant::now();
    cluster.kill_host(victim).await?;
    cluster
        .wait_node(&victim_name, pb::NodeStatus::Down, WAIT)
        .await?;
    let down = killed.elapsed();
    let after = cluster
        .wait_healthy(2, std::slice::from_ref(&victim_name), WAIT)
        .await?;
    eprintln!(
        "{test}: {victim_name} declared down {down:?} after the kill, replacement healthy after {:?}",
        killed.elapsed()
    );
    // The survivor kept its allocation; one new allocation replaced the lost one.
    let survivors = before.keys().filter(|id| after.contains_key(*id)).count();
    assert_eq!(survivors, 1, "before {before:#?} after {after:#?}");

    // The killed host comes back: its agent is told what it owns (nothing of the
    // service) and removes what it ran; exactly two replicas run.
    cluster.restart_host(victim).await?;
    cluster
        .wait_node(&victim_name, pb::NodeStatus::Ready, WAIT)
        .await?;
    cluster
        .wait_exactly_running(2, WAIT, Duration::from_secs(3))
        .await?;
    let running = cluster.running_containers().await?;
    assert_eq!(running.get(&victim_name), Some(&0), "{running:?}");
    let healthy = cluster.healthy().await?;
    assert_eq!(healthy.len(), 2, "{healthy:#?}");
    cluster.teardown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_host_is_replaced_and_after_healing_exactly_the_desired_count_runs()
-> anyhow::Result<()> {
    let test = "a_partitioned_host_is_replaced_and_after_healing_exactly_the_desired_count_runs";
    let Some((mut cluster, _, victim)) = Cluster::with_service_or_skip(test).await? else {
        return Ok(());
    };
    let victim_name = node_name(victim);

    let cut = Instant::now();
    cluster.hosts.host_mut(victim).partition()?;
    cluster
        .wait_node(&victim_name, pb::NodeStatus::Down, WAIT)
        .await?;
    let down = cut.elapsed();
    cluster
        .wait_healthy(2, std::slice::from_ref(&victim_name), WAIT)
        .await?;
    eprintln!(
        "{test}: {victim_name} declared down {down:?} after the partition, replacement healthy after {:?}",
        cut.elapsed()
    );
    // While cut off, the partitioned agent keeps its container (static stability):
    // three run for now.
    let running = cluster.running_containers().await?;
    assert_eq!(running.get(&victim_name), Some(&1), "{running:?}");

    cluster.hosts.host_mut(victim).heal()?;
    cluster
        .wait_node(&victim_name, pb::NodeStatus::Ready, WAIT)
        .await?;
    cluster
        .wait_exactly_running(2, WAIT, Duration::from_secs(3))
        .await?;
    let running = cluster.running_containers().await?;
    assert_eq!(running.get(&victim_name), Some(&0), "{running:?}");
    cluster.teardown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_shorter_than_the_suspicion_time_declares_nothing_down() -> anyhow::Result<()> {
    let test = "a_partition_shorter_than_the_suspicion_time_declares_nothing_down";
    let Some((mut cluster, before, victim)) = Cluster::with_service_or_skip(test).await? else {
        return Ok(());
    };

    // One second cut off: less than the 1.5 s of session silence after which the
    // control plane asks gossip to check the node, and than its 3 s session timeout.
    // Gossip's own probes may still suspect the host (a failed probe plus 0.6 s to
    // refute), which alone declares nothing.
    cluster.hosts.host_mut(victim).partition()?;
    let healed_at = Instant::now() + Duration::from_secs(1);
    let watch_until = Instant::now() + Duration::from_secs(12);
    let mut samples = 0;
    while Instant::now() < watch_until {
        if cluster.hosts.hosts()[victim].is_partitioned() && Instant::now() >= healed_at {
            cluster.hosts.host_mut(victim).heal()?;
        }
        let statuses = cluster.node_statuses().await?;
        let down: Vec<_> = statuses
            .iter()
            .filter(|(_, s)| **s != pb::NodeStatus::Ready)
            .collect();
        assert!(down.is_empty(), "a node left READY: {statuses:?}");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was replaced.
    let after = cluster.healthy().await?;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    eprintln!("{test}: {samples} samples, every node READY throughout");
    cluster.teardown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_moves_nothing() -> anyhow::Result<()> {
    let test = "an_agent_restart_moves_nothing";
    let Some((mut cluster, before, victim)) = Cluster::with_service_or_skip(test).await? else {
        return Ok(());
    };
    let victim_name = node_name(victim);

    // A clean stop, three seconds away (longer than gossip takes to declare the agent's
    // member down), then the same agent again: an upgrade.
    cluster.stop_agent(victim).await?;
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let statuses = cluster.node_statuses().await?;
        assert_eq!(statuses.get(&victim_name), Some(&pb::NodeStatus::Ready));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.start_agent(victim).await?;
    let after = cluster.wait_healthy(2, &[], WAIT).await?;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let statuses = cluster.node_statuses().await?;
    assert_eq!(statuses.get(&victim_name), Some(&pb::NodeStatus::Ready));
    cluster
        .wait_exactly_running(2, WAIT, Duration::from_secs(1))
        .await?;
    cluster.teardown().await
}

/// Sessions live on the leader: an agent pointed at a follower is sent to the leader,
/// and when the leader dies it reconnects to the next one. The new leader knows no
/// session at first; its post-election grace keeps it from declaring the node down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_follows_the_leader_and_an_election_declares_nothing_down() -> anyhow::Result<()> {
    use constellation_tests::binaries::{Agent, ControlPlane};
    let test = "an_agent_follows_the_leader_and_an_election_declares_nothing_down";
    let Some(_docker) = constellation_tests::docker::connect_or_skip(test).await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut members = ControlPlane::start_cluster(dir.path(), 3).await?;
    let leader_of = |addr: String| async move {
        let status = constellation_tests::api::client(&addr)
            .cluster_status(pb::ClusterStatusRequest {})
            .await?
            .into_inner();
        anyhow::Ok(status.leader_id)
    };
    let leader_id = leader_of(members[0].api_addr.clone())
        .await?
        .expect("a leader");
    let leader = members
        .iter()
        .position(|m| m.id == leader_id)
        .expect("leader");
    let follower = (leader + 1) % members.len();
    let node = constellation_tests::docker::unique_name("node");
    let mut agent = Agent::start(
        &node,
        &members[follower].api_addr,
        &dir.path().join("secrets"),
    )
    .await?;
    let accepted = agent
        .process
        .wait_for_log("session accepted", Duration::from_secs(30))
        .await?;
    assert_eq!(
        accepted.get("controlplane"),
        Some(&members[leader].api_addr),
        "{accepted:?}"
    );

    members[leader].process.kill().await?;
    let survivor = members[follower].api_addr.clone();
    let again = agent
        .process
        .wait_for_log("session accepted", Duration::from_secs(30))
        .await?;
    let new_leader = leader_of(survivor.clone()).await?.expect("a new leader");
    let new_leader_addr = &members
        .iter()
        .find(|m| m.id == new_leader)
        .expect("member")
        .api_addr;
    assert_eq!(
        again.get("controlplane"),
        Some(new_leader_addr),
        "{again:?}"
    );
    // Watch the node through the election's aftermath: longer than the session timeout
    // and the grace.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let nodes = constellation_tests::api::client(&survivor)
            .list_nodes(pb::ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        let status = nodes
            .iter()
            .find(|n| n.description.as_ref().is_some_and(|d| d.name == node))
            .map(|n| n.status());
        assert_eq!(status, Some(pb::NodeStatus::Ready), "{nodes:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
