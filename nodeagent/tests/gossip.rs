//! Gossip members on real UDP sockets (127.0.0.1:0): joining through a seed, failure
//! detection, rejoining under a renewed identity, metadata and health broadcasts, and
//! datagrams that must be ignored. Timeouts here bound waiting, never assert speed.

use constellation_nodeagent::gossip::{
    self, Availability, GossipConfig, GossipEvent, GossipHandle, HealthDigest, MemberState,
    NodeIdentity, NodeMetadata,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "gossip-test";
/// Generous bound for anything gossip should do "eventually" on an idle loopback.
const EVENTUALLY: Duration = Duration::from_secs(30);

struct Member {
    handle: GossipHandle,
    task: JoinHandle<constellation_nodeagent::Result<()>>,
    shutdown: CancellationToken,
}

impl Member {
    fn addr(&self) -> SocketAddr {
        self.handle.identity().addr
    }

    /// Ends the task without leaving: to the others it crashed.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn start_at(name: &str, cluster: &str, bind: SocketAddr, seeds: &[SocketAddr]) -> Member {
    let socket = UdpSocket::bind(bind).await.unwrap();
    let config = GossipConfig::lan(name, cluster, 5);
    let (handle, task) = gossip::gossip(config, socket).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(task.run(shutdown.clone()));
    if !seeds.is_empty() {
        handle.join(seeds.to_vec()).await.unwrap();
    }
    Member {
        handle,
        task,
        shutdown,
    }
}

async fn start(name: &str, seeds: &[SocketAddr]) -> Member {
    start_at(name, CLUSTER, "127.0.0.1:0".parse().unwrap(), seeds).await
}

async fn cluster(n: usize) -> Vec<Member> {
    let seed = start("node-0", &[]).await;
    let seed_addr = seed.addr();
    let mut members = vec![seed];
    for i in 1..n {
        members.push(start(&format!("node-{i}"), &[seed_addr]).await);
    }
    for m in &members {
        wait_until(|| alive_count(&m.handle, n - 1)).await;
    }
    members
}

/// Polls `check` until it holds or [`EVENTUALLY`] passes.
async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {EVENTUALLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alive_count(handle: &GossipHandle, want: usize) -> bool {
    let members = handle.members().await.unwrap();
    members
        .iter()
        .filter(|m| m.state != MemberState::Down)
        .count()
        == want
}

async fn state_of(handle: &GossipHandle, id: &NodeIdentity) -> Option<MemberState> {
    handle
        .members()
        .await
        .unwrap()
        .into_iter()
        .find(|m| &m.identity == id)
        .map(|m| m.state)
}

/// Waits for an event matching `wanted` on `events`.
async fn next_matching(
    events: &mut broadcast::Receiver<GossipEvent>,
    wanted: impl Fn(&GossipEvent) -> bool,
) -> GossipEvent {
    tokio::time::timeout(EVENTUALLY, async {
        loop {
            match events.recv().await {
                Ok(e) if wanted(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("event not seen in time")
}

#[tokio::test]
async fn five_members_join_through_one_seed_and_all_see_each_other() {
    let members = cluster(5).await;
    for m in &members {
        let listed = m.handle.members().await.unwrap();
        let mut names: Vec<_> = listed.iter().map(|i| i.identity.name.clone()).collect();
        names.sort();
        let mut expected: Vec<_> = (0..5)
            .map(|i| format!("node-{i}"))
            .filter(|n| *n != m.handle.identity().name)
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        assert!(listed.iter().all(|i| i.state == MemberState::Alive));
    }
    for m in members {
        m.shutdown.cancel();
        m.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_killed_member_is_reported_down_by_every_other_member() {
    let mut members = cluster(5).await;
    let mut watchers: Vec<_> = members[..4].iter().map(|m| m.handle.subscribe()).collect();
    let victim = members.pop().unwrap();
    let victim_id = victim.handle.identity().clone();
    victim.kill().await;
    for events in &mut watchers {
        let down = next_matching(events, |e| matches!(e, GossipEvent::Down(_))).await;
        assert_eq!(
            down,
            GossipEvent::Down(victim_id.clone()),
            "only the victim goes down"
        );
    }
    for m in &members {
        assert_eq!(
            state_of(&m.handle, &victim_id).await,
            Some(MemberState::Down)
        );
        assert!(alive_count(&m.handle, 3).await);
    }
}

/// What the control plane asks when a node's session breaks: a live member refutes the
/// suspicion and stays up everywhere; a dead one is declared down by the checker.
#[tokio::test]
async fn a_checked_member_refutes_if_alive_and_is_declared_down_if_dead() {
    let mut members = cluster(4).await;
    let live = members[1].handle.identity().clone();
    let mut events = members[0].handle.subscribe();
    members[0]
        .handle
        .check(live.name.clone(), live.generation)
        .await
        .unwrap();
    // Twice the suspicion time: a refuted check never turns into DOWN.
    let suspicion = GossipConfig::lan("x", CLUSTER, 5).suspect_to_down;
    tokio::time::sleep(suspicion * 2).await;
    for m in &members {
        if m.handle.identity() != &live {
            assert_eq!(state_of(&m.handle, &live).await, Some(MemberState::Alive));
        }
    }
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, GossipEvent::Down(_)), "{event:?}");
    }
    // A check of another run of the node (another generation) is ignored.
    let victim = members.pop().unwrap();
    let victim_id = victim.handle.identity().clone();
    victim.kill().await;
    members[0]
        .handle
        .check(victim_id.name.clone(), victim_id.generation + 1)
        .await
        .unwrap();
    members[0]
        .handle
        .check(victim_id.name.clone(), victim_id.generation)
        .await
        .unwrap();
    let down = next_matching(&mut events, |e| matches!(e, GossipEvent::Down(_))).await;
    assert_eq!(down, GossipEvent::Down(victim_id.clone()));
    for m in &members {
        wait_until(|| async { state_of(&m.handle, &victim_id).await == Some(MemberState::Down) })
            .await;
    }
}

#[tokio::test]
async fn a_restarted_member_rejoins_under_a_renewed_identity() {
    let mut members = cluster(4).await;
    let seed = members[0].addr();
    let victim = members.pop().unwrap();
    let old = victim.handle.identity().clone();
    let addr = victim.addr();
    victim.kill().await;
    for m in &members {
        wait_until(|| async { state_of(&m.handle, &old).await == Some(MemberState::Down) }).await;
    }
    // Same name, same address: only the generation tells the two apart.
    let back = start_at(&old.name, CLUSTER, addr, &[seed]).await;
    let new = back.handle.identity().clone();
    assert!(new.generation > old.generation);
    for m in &members {
        wait_until(|| async { state_of(&m.handle, &new).await == Some(MemberState::Alive) }).await;
    }
    wait_until(|| alive_count(&back.handle, 3)).await;
}

/// A member whose runtime stalls longer than the suspicion time is declared down; when
/// it runs again it learns so, renews its identity by itself (foca's
/// `Identity::renew`) and the others see it up under the new generation.
#[tokio::test]
async fn a_member_declared_down_while_stalled_renews_itself_and_rejoins() {
    let members = cluster(3).await;
    let seed = members[0].addr();
    let mut events = members[0].handle.subscribe();

    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let (stall_tx, mut stall_rx) = tokio::sync::mpsc::channel::<Duration>(1);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let m = start("stalling", &[seed]).await;
            handle_tx.send(m.handle.clone()).ok();
            // Blocking the only thread of this runtime stalls the member entirely.
            while let Some(stall) = stall_rx.recv().await {
                std::thread::sleep(stall);
            }
            m.kill().await;
        });
    });
    let stalling = handle_rx.await.unwrap();
    let first = stalling.identity().clone();
    wait_until(|| async { state_of(&members[0].handle, &first).await == Some(MemberState::Alive) })
        .await;

    stall_tx.send(Duration::from_secs(6)).await.unwrap();
    let down = next_matching(&mut events, |e| matches!(e, GossipEvent::Down(_))).await;
    assert_eq!(down, GossipEvent::Down(first.clone()));
    let up = next_matching(
        &mut events,
        |e| matches!(e, GossipEvent::Up(id) if id.name == "stalling"),
    )
    .await;
    let GossipEvent::Up(renewed) = up else {
        unreachable!()
    };
    assert_eq!(renewed.addr, first.addr);
    assert!(
        renewed.generation > first.generation,
        "{renewed} after {first}"
    );
    wait_until(|| async { stalling.current_identity() == renewed }).await;
    for m in &members {
        wait_until(|| async { state_of(&m.handle, &renewed).await == Some(MemberState::Alive) })
            .await;
    }
    drop(stall_tx);
    thread.join().unwrap();
}

#[tokio::test]
async fn metadata_and_health_propagate_and_the_newer_version_wins() {
    let members = cluster(4).await;
    let labels = |zone: &str| BTreeMap::from([("zone".to_string(), zone.to_string())]);
    let source = &members[3].handle;
    source
        .set_metadata(NodeMetadata {
            labels: labels("a"),
            ..Default::default()
        })
        .await
        .unwrap();
    source
        .set_metadata(NodeMetadata {
            availability: Availability::Draining,
            labels: labels("b"),
            ..Default::default()
        })
        .await
        .unwrap();
    source
        .set_health(HealthDigest {
            healthy: 7,
            unhealthy: 1,
            starting: 0,
        })
        .await
        .unwrap();
    let name = source.identity().name.clone();
    let converged = |handle: GossipHandle, name: String| async move {
        let listed = handle.members().await.unwrap();
        let Some(info) = listed.iter().find(|m| m.identity.name == name) else {
            return false;
        };
        let meta_ok = info.metadata.as_ref().is_some_and(|(v, m)| {
            v.counter == 2 && m.labels == labels("b") && m.availability == Availability::Draining
        });
        let health_ok = info
            .health
            .is_some_and(|(v, h)| v.counter == 1 && h.healthy == 7);
        meta_ok && health_ok
    };
    for m in &members[..3] {
        wait_until(|| converged(m.handle.clone(), name.clone())).await;
    }
    // A member joining later gets the current items straight from each member.
    let late = start("late", &[members[0].addr()]).await;
    wait_until(|| converged(late.handle.clone(), name.clone())).await;
    // And an older version arriving late changes nothing (the table's order is by
    // version, tested in the module); the newest is still what everyone holds.
    for m in &members[..3] {
        assert!(converged(m.handle.clone(), name.clone()).await);
    }
}

/// A member that sees another join introduces itself straight to it (`Kind::Introduce`),
/// so a newcomer knows the quiet members at once. Only an identity at the address the
/// datagram came from is taken.
#[tokio::test]
async fn an_introduction_is_taken_only_from_the_address_it_names() {
    use foca::Codec;
    let members = cluster(2).await;
    let target = &members[0];
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tag = gossip::wire::cluster_tag(CLUSTER);
    let introduce = |identity: &NodeIdentity| {
        let mut datagram = Vec::new();
        gossip::wire::write_envelope(&mut datagram, gossip::wire::Kind::Introduce, tag);
        let member = foca::Member::new(identity.clone(), 0, foca::State::Alive);
        gossip::identity::GossipCodec
            .encode_member(&member, &mut datagram)
            .unwrap();
        datagram
    };
    let elsewhere = NodeIdentity::new("elsewhere", "127.0.0.1:9".parse().unwrap());
    socket
        .send_to(&introduce(&elsewhere), target.addr())
        .await
        .unwrap();
    let honest = NodeIdentity::new("honest", socket.local_addr().unwrap());
    socket
        .send_to(&introduce(&honest), target.addr())
        .await
        .unwrap();
    wait_until(|| async { state_of(&target.handle, &honest).await.is_some() }).await;
    assert_eq!(state_of(&target.handle, &elsewhere).await, None);
}

#[tokio::test]
async fn garbage_and_foreign_datagrams_are_dropped_without_harm() {
    let members = cluster(3).await;
    let target = &members[0];
    let mut events = target.handle.subscribe();

    // Raw junk: random bytes, a valid envelope of our cluster with a garbage payload,
    // an oversized datagram, and an envelope with an unknown kind.
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tag = gossip::wire::cluster_tag(CLUSTER);
    let mut envelope = Vec::new();
    gossip::wire::write_envelope(&mut envelope, gossip::wire::Kind::Foca, tag);
    let mut bad_foca = envelope.clone();
    bad_foca.extend_from_slice(&[0xff; 64]);
    let mut bad_push = Vec::new();
    gossip::wire::write_envelope(&mut bad_push, gossip::wire::Kind::Push, tag);
    bad_push.extend_from_slice(&[0, 200, 1, 2, 3]);
    let mut unknown_kind = envelope.clone();
    unknown_kind[3] = 9;
    let datagrams: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        (0..=255u8).cycle().take(900).collect(),
        bad_foca,
        bad_push,
        vec![0x43; 3000],
        unknown_kind,
    ];
    for d in &datagrams {
        junk.send_to(d, target.addr()).await.unwrap();
    }
    wait_until(|| async { target.handle.stats().dropped_malformed >= datagrams.len() as u64 })
        .await;

    // A real member of another cluster announcing to our seed.
    let foreign = start_at(
        "intruder",
        "another-cluster",
        "127.0.0.1:0".parse().unwrap(),
        &[target.addr()],
    )
    .await;
    wait_until(|| async { target.handle.stats().dropped_foreign >= 2 }).await;
    assert!(foreign.handle.members().await.unwrap().is_empty());
    for m in &members {
        let listed = m.handle.members().await.unwrap();
        assert!(listed.iter().all(|i| i.identity.name != "intruder"));
        assert!(alive_count(&m.handle, 2).await);
    }
    // Nobody went down or suspect because of any of it.
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, GossipEvent::Down(_) | GossipEvent::Suspect(_)),
            "{event:?}"
        );
    }
}

#[tokio::test]
async fn an_unspecified_bind_address_needs_an_advertised_ip() {
    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let Err(e) = gossip::gossip(GossipConfig::lan("n", CLUSTER, 1), socket) else {
        panic!("accepted an unadvertisable address");
    };
    assert!(e.to_string().starts_with("gossip.advertise_ip:"), "{e}");
    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let mut config = GossipConfig::lan("n", CLUSTER, 1);
    config.advertise_ip = Some("127.0.0.1".parse().unwrap());
    let (handle, _task) = gossip::gossip(config, socket).unwrap();
    assert_eq!(handle.identity().addr.ip().to_string(), "127.0.0.1");
}

/// The agent's own path: flags resolved into a config, the member started from it, the
/// seeds joined and events followed, as `agent::run` does.
#[tokio::test]
async fn the_agent_joins_its_seeds_from_flags() {
    use clap::Parser;
    use constellation_nodeagent::config::Flags;
    let seed = start("seed", &[]).await;
    let config = Flags::try_parse_from([
        "constellation-agent",
        "--name",
        "agent-1",
        "--gossip-listen",
        "127.0.0.1:0",
        "--gossip-cluster",
        CLUSTER,
        "--gossip-seed",
        &seed.addr().to_string(),
        "--label",
        "zone=a",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    assert!(config.gossip_enabled);
    assert_eq!(config.gossip_seeds, vec![seed.addr()]);
    let (handle, task) = gossip::start_for_agent(&config).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(task.run(shutdown.clone()));
    let (_link, follow) = gossip::link(
        handle.clone(),
        config.gossip_seeds.clone(),
        shutdown.clone(),
    );
    let follow = tokio::spawn(follow);
    let agent = handle.identity().clone();
    wait_until(|| async { state_of(&seed.handle, &agent).await == Some(MemberState::Alive) }).await;
    wait_until(|| async {
        seed.handle.members().await.unwrap().iter().any(|m| {
            m.identity == agent
                && m.metadata.as_ref().is_some_and(|(_, meta)| {
                    meta.labels.get("zone").map(String::as_str) == Some("a")
                        && meta.addresses.advertise_ip == "127.0.0.1"
                })
        })
    })
    .await;
    // Leaving on shutdown: the seed sees the agent down without waiting for suspicion.
    shutdown.cancel();
    task.await.unwrap().unwrap();
    follow.await.unwrap().unwrap();
    wait_until(|| async { state_of(&seed.handle, &agent).await == Some(MemberState::Down) }).await;

    let without = Flags::try_parse_from(["constellation-agent", "--name", "n"])
        .unwrap()
        .resolve()
        .unwrap();
    assert!(
        !without.gossip_enabled,
        "gossip runs only with --gossip-listen"
    );
}
