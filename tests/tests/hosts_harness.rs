//! The multi-host harness itself (`constellation_tests::hosts`): hosts reach each other
//! and are reached from the root namespace through their own dockerds' published ports;
//! a partition makes connections hang and healing resumes them; a killed host loses its
//! dockerd and every container process and comes back on restart; teardown (also after
//! a panic) and stale cleanup (after a SIGKILLed test process) leave nothing behind.
//!
//! Needs root, iproute2, iptables, nsenter and docker.io: elsewhere these print a
//! `SKIPPED` line and pass, unless `CI` is set.

use bollard::models::RestartPolicyNameEnum;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use constellation_tests::docker::{Docker, TEST_IMAGE_INDEX_HTML, test_image};
use constellation_tests::hosts::{self, Host, Hosts};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for an answer on a bridge, short enough to keep the tests quick.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn print_timings(test: &str, hosts: &Hosts) {
    let t = hosts.timings();
    eprintln!(
        "{test}: slot {} created in {:?} (claim {:?}, network {:?}, image save {:?}, \
         dockerd ready {:?}, image load {:?})",
        hosts.slot(),
        t.total,
        t.claim,
        t.network,
        t.image_save,
        t.dockerd_ready,
        t.image_load
    );
}

/// Starts busybox httpd in a container on `docker` with port 8080 published on a port
/// Docker picks; returns (container id, published port).
async fn run_httpd(
    docker: &Docker,
    name: &str,
    restart: Option<RestartPolicyNameEnum>,
) -> anyhow::Result<(String, u16)> {
    let config = ContainerCreateBody {
        image: Some(test_image()),
        cmd: Some(
            ["httpd", "-f", "-p", "8080", "-h", "/www"]
                .map(String::from)
                .to_vec(),
        ),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            restart_policy: restart.map(|name| RestartPolicy {
                name: Some(name),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let id = docker.create_container(Some(options), config).await?.id;
    docker.start_container(&id, None).await?;
    let port = published_port(docker, &id).await?;
    Ok((id, port))
}

async fn published_port(docker: &Docker, id: &str) -> anyhow::Result<u16> {
    let inspect = docker.inspect_container(id, None).await?;
    let port = inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|ports| ports.get("8080/tcp").cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("container {id} has no published port for 8080"))?;
    Ok(port)
}

async fn container_pid(docker: &Docker, id: &str) -> anyhow::Result<Option<u32>> {
    let state = docker.inspect_container(id, None).await?.state;
    Ok(state
        .and_then(|s| s.pid)
        .filter(|pid| *pid > 0)
        .map(|pid| pid as u32))
}

/// `GET /` from the root namespace: the response, or `None` without an answer in time.
async fn root_get(addr: Ipv4Addr, port: u16, timeout: Duration) -> anyhow::Result<Option<String>> {
    let attempt = async {
        let mut stream = TcpStream::connect(SocketAddr::from((addr, port))).await?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map(Some),
        Err(_) => Ok(None),
    }
}

/// Polls `root_get` until the response carries the test page (the container needs a
/// moment to bind).
async fn root_wait_serving(addr: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(body)) = root_get(addr, port, PROBE_TIMEOUT).await
            && body.contains(TEST_IMAGE_INDEX_HTML)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{addr}:{port} does not serve the test page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A listener on the bridge address answering every connection with a fixed body, as a
/// control plane bound there would be reached.
async fn bridge_responder(addr: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind((addr, 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the whole request head before answering and closing.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\n\r\nroot namespace")
                    .await;
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn hosts_serve_published_ports_to_the_root_and_to_each_other() -> anyhow::Result<()> {
    let test = "hosts_serve_published_ports_to_the_root_and_to_each_other";
    let Some(hosts) = Hosts::create_or_skip(test, 2).await? else {
        return Ok(());
    };
    print_timings(test, &hosts);
    let (a, b) = (&hosts.hosts()[0], &hosts.hosts()[1]);
    assert_ne!(a.addr(), b.addr());

    let (_, port_a) = run_httpd(&a.docker().await?, "web-a", None).await?;
    let (_, port_b) = run_httpd(&b.docker().await?, "web-b", None).await?;

    // The root namespace reaches each host's published port at the host's address.
    root_wait_serving(a.addr(), port_a).await?;
    root_wait_serving(b.addr(), port_b).await?;

    // Host to host, across the bridge (the FORWARD rule at work), both ways.
    let a_to_b = a.http_get(b.addr(), port_b, PROBE_TIMEOUT).await?;
    assert!(
        a_to_b
            .as_deref()
            .is_some_and(|r| r.contains(TEST_IMAGE_INDEX_HTML)),
        "A -> B: {a_to_b:?}"
    );
    let b_to_a = b.http_get(a.addr(), port_a, PROBE_TIMEOUT).await?;
    assert!(
        b_to_a
            .as_deref()
            .is_some_and(|r| r.contains(TEST_IMAGE_INDEX_HTML)),
        "B -> A: {b_to_a:?}"
    );

    // And a host reaches a listener on the bridge address (where a control plane goes).
    let port = bridge_responder(hosts.bridge_addr()).await?;
    let to_root = a.http_get(hosts.bridge_addr(), port, PROBE_TIMEOUT).await?;
    assert!(
        to_root
            .as_deref()
            .is_some_and(|r| r.contains("root namespace")),
        "A -> root: {to_root:?}"
    );

    // Each host has its own engine: B's container is not on A's.
    let on_a = a.docker().await?.inspect_container("web-b", None).await;
    assert!(on_a.is_err(), "web-b must not exist on host A");

    let took = hosts.teardown()?;
    eprintln!("{test}: teardown of 2 hosts took {took:?}");
    Ok(())
}

#[tokio::test]
async fn partitioned_host_hangs_connections_until_healed() -> anyhow::Result<()> {
    let test = "partitioned_host_hangs_connections_until_healed";
    let Some(mut hosts) = Hosts::create_or_skip(test, 2).await? else {
        return Ok(());
    };
    print_timings(test, &hosts);
    let bridge = hosts.bridge_addr();
    let root_port = bridge_responder(bridge).await?;
    let b_addr = hosts.hosts()[1].addr();
    let (_, port_b) = run_httpd(&hosts.hosts()[1].docker().await?, "web-b", None).await?;
    root_wait_serving(b_addr, port_b).await?;

    // A connection made before the partition, with its request still to be sent.
    let mut in_flight = TcpStream::connect(SocketAddr::from((b_addr, port_b))).await?;

    hosts.host_mut(1).partition()?;
    assert!(hosts.hosts()[1].is_partitioned());

    // New connections from the root and from A hang (no refusal, no reset).
    assert_eq!(root_get(b_addr, port_b, PROBE_TIMEOUT).await?, None);
    let a = &hosts.hosts()[0];
    assert_eq!(a.http_get(b_addr, port_b, PROBE_TIMEOUT).await?, None);
    // B cannot get out either.
    let b = &hosts.hosts()[1];
    assert_eq!(b.http_get(bridge, root_port, PROBE_TIMEOUT).await?, None);
    // The in-flight connection hangs rather than being reset.
    in_flight.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(PROBE_TIMEOUT, in_flight.read(&mut first)).await;
    assert!(read.is_err(), "in-flight read during partition: {read:?}");
    // A itself is unaffected.
    assert!(
        a.http_get(bridge, root_port, PROBE_TIMEOUT)
            .await?
            .is_some_and(|r| r.contains("root namespace"))
    );

    let healed_at = Instant::now();
    hosts.host_mut(1).heal()?;
    root_wait_serving(b_addr, port_b).await?;
    let a = &hosts.hosts()[0];
    let a_to_b = a.http_get(b_addr, port_b, PROBE_TIMEOUT).await?;
    assert!(
        a_to_b
            .as_deref()
            .is_some_and(|r| r.contains(TEST_IMAGE_INDEX_HTML)),
        "A -> B after heal: {a_to_b:?}"
    );
    let b = &hosts.hosts()[1];
    assert!(
        b.http_get(bridge, root_port, PROBE_TIMEOUT)
            .await?
            .is_some_and(|r| r.contains("root namespace"))
    );
    // The hung connection resumes: TCP retransmits the request and the answer arrives.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), in_flight.read_to_end(&mut rest)).await??;
    let response = format!("{}{}", first[0] as char, String::from_utf8_lossy(&rest));
    assert!(
        response.contains(TEST_IMAGE_INDEX_HTML),
        "in-flight response after heal: {response:?}"
    );
    eprintln!(
        "{test}: the in-flight connection completed {:?} after heal",
        healed_at.elapsed()
    );
    let took = hosts.teardown()?;
    eprintln!("{test}: teardown of 2 hosts took {took:?}");
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        state != "Z"
    })
}

async fn wait_running(docker: &Docker, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let running = docker
            .inspect_container(id, None)
            .await?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false);
        if running || Instant::now() > deadline {
            return Ok(running);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn killed_host_loses_dockerd_and_containers_and_restarts() -> anyhow::Result<()> {
    let test = "killed_host_loses_dockerd_and_containers_and_restarts";
    let Some(mut hosts) = Hosts::create_or_skip(test, 1).await? else {
        return Ok(());
    };
    print_timings(test, &hosts);
    let host: &mut Host = hosts.host_mut(0);
    let docker = host.docker().await?;
    let (plain, _) = run_httpd(&docker, "web-plain", None).await?;
    let (always, port) =
        run_httpd(&docker, "web-always", Some(RestartPolicyNameEnum::ALWAYS)).await?;
    root_wait_serving(host.addr(), port).await?;
    let pids = [
        container_pid(&docker, &plain)
            .await?
            .expect("web-plain runs"),
        container_pid(&docker, &always)
            .await?
            .expect("web-always runs"),
    ];
    let dockerd = host.dockerd_pid().expect("dockerd runs");
    assert!(pids.iter().all(|p| process_alive(*p)));
    assert_eq!(host.container_pids().len(), 2, "one process per container");

    let killed_at = Instant::now();
    host.kill().await?;
    eprintln!("{test}: kill took {:?}", killed_at.elapsed());
    for pid in pids.iter().chain([&dockerd]) {
        assert!(!process_alive(*pid), "process {pid} survived the kill");
    }
    assert!(host.pids().is_empty(), "left: {:?}", host.pids());
    assert!(host.container_pids().is_empty());
    assert!(
        host.docker().await.is_err(),
        "the killed host's dockerd answers"
    );
    // The namespace lives on, with the DNAT rules the dead dockerd left in it.
    let probe_at = Instant::now();
    let probe = root_get(host.addr(), port, Duration::from_secs(5)).await;
    let outcome = match &probe {
        Ok(Some(_)) => "answered".to_string(),
        Ok(None) => "no answer".to_string(),
        Err(err) => format!("{err:#}"),
    };
    eprintln!(
        "{test}: the published port after kill: {outcome} after {:?}",
        probe_at.elapsed()
    );
    assert!(
        !matches!(probe, Ok(Some(_))),
        "the killed host still serves"
    );

    let took = host.restart().await?;
    eprintln!("{test}: dockerd answered {took:?} after restart");
    let docker = host.docker().await?;
    // What Docker restores by itself: the `always` container runs again, the other
    // stays exited (SIGKILLed behind dockerd's back, so with no clean exit).
    assert!(
        wait_running(&docker, &always, Duration::from_secs(20)).await?,
        "web-always did not come back"
    );
    let plain_state = docker.inspect_container(&plain, None).await?.state;
    let plain_state = plain_state.expect("state");
    assert_eq!(plain_state.running, Some(false));
    eprintln!(
        "{test}: after restart web-plain is {:?} (exit {:?}), web-always runs again",
        plain_state.status, plain_state.exit_code
    );
    let port = published_port(&docker, &always).await?;
    root_wait_serving(host.addr(), port).await?;
    let took = hosts.teardown()?;
    eprintln!("{test}: teardown of 1 host took {took:?}");
    Ok(())
}

/// What the crash test's child process runs: create hosts and a container, print the
/// slot, then wait to be SIGKILLed. Ignored, and inert unless the parent sets the env.
#[tokio::test]
#[ignore = "helper for stale_cleanup_removes_what_a_killed_test_process_left"]
async fn crash_helper_creates_hosts_and_waits_to_be_killed() -> anyhow::Result<()> {
    if std::env::var_os("CONSTELLATION_HOSTS_CRASH_HELPER").is_none() {
        return Ok(());
    }
    let hosts = Hosts::create(1).await?;
    let host = &hosts.hosts()[0];
    run_httpd(&host.docker().await?, "web", None).await?;
    println!("SLOT {}", hosts.slot());
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[tokio::test]
async fn teardown_leaves_nothing_behind_even_after_a_panic() -> anyhow::Result<()> {
    let test = "teardown_leaves_nothing_behind_even_after_a_panic";
    let Some(mut hosts) = Hosts::create_or_skip(test, 2).await? else {
        return Ok(());
    };
    print_timings(test, &hosts);
    let slot = hosts.slot();
    // Make every kind of state: containers (overlay and netns mounts, shim sockets,
    // cgroups), a partition (iptables inside a namespace), a crashed host.
    run_httpd(&hosts.hosts()[0].docker().await?, "web", None).await?;
    let (_, port) = run_httpd(&hosts.hosts()[1].docker().await?, "web", None).await?;
    root_wait_serving(hosts.hosts()[1].addr(), port).await?;
    hosts.host_mut(0).partition()?;
    hosts.host_mut(1).crash().await?;
    // A crashed host is silent: no refusal, no answer.
    assert_eq!(
        root_get(hosts.hosts()[1].addr(), port, PROBE_TIMEOUT).await?,
        None
    );
    assert!(hosts.hosts()[1].pids().is_empty());
    let before = hosts::leftovers_of_free_slot(slot)?;
    assert_eq!(before, None, "the slot is locked while in use");
    let dropped_at = Instant::now();
    drop(hosts);
    eprintln!("{test}: drop took {:?}", dropped_at.elapsed());
    let left = hosts::leftovers_of_free_slot(slot)?
        .expect("no other test claims a just-freed slot this fast");
    assert!(left.is_empty(), "left behind: {left:#?}");

    // A test that panics with hosts alive: unwinding drops them.
    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = tokio::spawn(async move {
        let hosts = Hosts::create(1).await.expect("create");
        let host = &hosts.hosts()[0];
        run_httpd(&host.docker().await.expect("docker"), "web", None)
            .await
            .expect("httpd");
        tx.send(hosts.slot()).expect("send slot");
        panic!("deliberate panic with live hosts");
    })
    .await;
    assert!(panicked.is_err_and(|e| e.is_panic()));
    let slot = rx.recv()?;
    let left = hosts::leftovers_of_free_slot(slot)?.expect("slot free after the panic");
    assert!(left.is_empty(), "left behind after a panic: {left:#?}");
    Ok(())
}

#[tokio::test]
async fn stale_cleanup_removes_what_a_killed_test_process_left() -> anyhow::Result<()> {
    let test = "stale_cleanup_removes_what_a_killed_test_process_left";
    if let Some(why) = hosts::unmet_requirements() {
        anyhow::ensure!(
            !constellation_tests::docker::in_ci(),
            "{test}: required in CI: {why}"
        );
        eprintln!("==== SKIPPED: multi-host harness unavailable ==== {test}: {why}");
        return Ok(());
    }
    // This same test binary, running only the helper above.
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "crash_helper_creates_hosts_and_waits_to_be_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CONSTELLATION_HOSTS_CRASH_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let slot = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("SLOT ")
                    .and_then(|s| s.parse::<u8>().ok())
            })
    })
    .await?;
    let Some(slot) = slot else {
        let _ = child.kill();
        let status = child.wait()?;
        anyhow::bail!("the helper printed no slot (exit {status})");
    };
    // The crash: no destructor runs.
    child.kill()?;
    child.wait()?;
    let left = hosts::leftovers_of_free_slot(slot)?.expect("the dead helper's slot is free");
    assert!(
        left.iter().any(|l| l.starts_with("netns"))
            && left.iter().any(|l| l.starts_with("process")),
        "a killed test leaves state behind: {left:#?}"
    );
    eprintln!("{test}: a SIGKILLed test left {} items", left.len());

    let cleaned_at = Instant::now();
    // Another test's create may clean it first; either way it must end up clean.
    let cleaned = hosts::cleanup_stale()?;
    eprintln!(
        "{test}: cleanup_stale cleaned {cleaned:?} in {:?}",
        cleaned_at.elapsed()
    );
    let left = hosts::leftovers_of_free_slot(slot)?.expect("slot free after cleanup");
    assert!(
        left.is_empty(),
        "left behind after cleanup_stale: {left:#?}"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hosts-cleanup.sh");
    assert!(script.exists(), "{} is missing", script.display());
    Ok(())
}

fn cp_client(
    addr: &str,
) -> constellation_proto::v1::control_plane_client::ControlPlaneClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    constellation_proto::v1::control_plane_client::ControlPlaneClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_inside_hosts_run_a_service_reached_at_the_host_addresses() -> anyhow::Result<()> {
    use constellation_proto::v1 as pb;
    use constellation_tests::binaries::{ControlPlane, Start};
    let test = "agents_inside_hosts_run_a_service_reached_at_the_host_addresses";
    let Some(mut hosts) = Hosts::create_or_skip(test, 2).await? else {
        return Ok(());
    };
    print_timings(test, &hosts);
    // The control plane in the root namespace, on the bridge, where every host reaches it.
    let dir = tempfile::tempdir()?;
    let listen = format!("{}:0", hosts.bridge_addr());
    let cp = ControlPlane::start(
        1,
        &dir.path().join("cp1"),
        Start::Bootstrap,
        Some((&listen, &listen)),
    )
    .await?;
    // Agent 1, then agent 2 joining its gossip through it: UDP across the bridge.
    let mut node1 = hosts.hosts()[0]
        .start_agent("node1", &cp.api_addr, &[])
        .await?;
    let gossip1 = node1
        .wait_for_log("gossip listening", Duration::from_secs(30))
        .await?
        .remove("gossip")
        .ok_or_else(|| anyhow::anyhow!("no gossip address logged"))?;
    let mut node2 = hosts.hosts()[1]
        .start_agent(
            "node2",
            &cp.api_addr,
            &["--gossip-seed".to_string(), gossip1],
        )
        .await?;
    node1
        .wait_for_log("gossip: member up", Duration::from_secs(30))
        .await?;
    node2
        .wait_for_log("gossip: member up", Duration::from_secs(30))
        .await?;

    let service = "web";
    let secs = |s| {
        Some(pbjson_types::Duration {
            seconds: s,
            nanos: 0,
        })
    };
    let spec = pb::ServiceSpec {
        name: service.into(),
        image: test_image(),
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
        replicas: Some(2),
        // Published on every address of the host, so the bridge reaches it.
        ports: vec![pb::PortSpec {
            container_port: 8080,
            ..Default::default()
        }],
        stop_grace_period: secs(1),
        ..Default::default()
    };
    cp_client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let allocs = cp_client(&cp.api_addr)
            .list_allocations(pb::ListAllocationsRequest {
                service_name: service.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .allocations;
        let all_running = allocs.iter().all(|a| {
            a.status.as_ref().is_some_and(|s| {
                s.state() == pb::AllocationState::Running && !s.endpoints.is_empty()
            })
        });
        if allocs.len() == 2 && all_running {
            break allocs;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not running in time: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for alloc in &running {
        let host = hosts
            .hosts()
            .iter()
            .zip(["node1", "node2"])
            .find(|(_, node)| alloc.node_name == *node)
            .map(|(h, _)| h)
            .ok_or_else(|| anyhow::anyhow!("unknown node {}", alloc.node_name))?;
        let endpoint = &alloc.status.as_ref().expect("status").endpoints[0];
        eprintln!(
            "{test}: {} on {} ({}), endpoint {}:{}",
            alloc.id,
            alloc.node_name,
            host.addr(),
            endpoint.host_ip,
            endpoint.host_port
        );
        let port = u16::try_from(endpoint.host_port)?;
        root_wait_serving(host.addr(), port).await?;
        // The container lives in that host's own engine.
        let containers = host
            .docker()
            .await?
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await?;
        assert!(!containers.is_empty(), "no container on {}", host.name());
    }
    // Partition host 2: agent 1 stops hearing agent 2.
    hosts.host_mut(1).partition()?;
    let partitioned_at = Instant::now();
    node1
        .wait_for_log("gossip: member suspect", Duration::from_secs(60))
        .await?;
    let suspect = partitioned_at.elapsed();
    node1
        .wait_for_log("gossip: member down", Duration::from_secs(60))
        .await?;
    eprintln!(
        "{test}: after the partition node1 suspected node2 in {suspect:?} and declared it \
         down in {:?}",
        partitioned_at.elapsed()
    );
    drop((node1, node2));
    let took = hosts.teardown()?;
    eprintln!("{test}: teardown of 2 hosts took {took:?}");
    Ok(())
}
