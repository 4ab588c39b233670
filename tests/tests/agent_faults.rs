//! The agent when things fail, with the real binaries on the real Docker engine: a
//! crashing primary restarted with growing delays and then replaced by its fallback
//! (and back), the control plane gone (static stability), the agent restarted
//! (adoption without recreating), and an image that does not exist.

use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, client};
use constellation_tests::binaries::{Agent, ControlPlane};
use constellation_tests::docker::{self, Docker};
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dur(ms: u64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

fn health_check() -> Option<pb::HealthCheck> {
    Some(pb::HealthCheck {
        test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
            .map(String::from)
            .to_vec(),
        interval: dur(1000),
        timeout: dur(1000),
        retries: 2,
        ..Default::default()
    })
}

/// busybox httpd on 8080, one replica, a health check.
fn web(name: &str) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: name.into(),
        image: docker::test_image(),
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
        ports: vec![pb::PortSpec {
            container_port: 8080,
            host_ip: "127.0.0.1".into(),
            ..Default::default()
        }],
        health_check: health_check(),
        restart: Some(pb::RestartPolicy {
            initial_delay: dur(200),
            ..Default::default()
        }),
        stop_grace_period: dur(1000),
        ..Default::default()
    }
}

async fn apply(addr: &str, spec: pb::ServiceSpec) {
    client(addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn status(a: &pb::Allocation) -> pb::AllocationStatus {
    a.status.clone().unwrap_or_default()
}

/// Polls the allocations of `service` until `ok` holds for all of them (and there is
/// at least one), or fails after `timeout` showing them.
async fn wait_allocations(
    addr: &str,
    service: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&pb::Allocation) -> bool,
) -> Vec<pb::Allocation> {
    let start = Instant::now();
    loop {
        let allocs = allocations(addr, service).await;
        if !allocs.is_empty() && allocs.iter().all(&ok) {
            return allocs;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn running_healthy(a: &pb::Allocation) -> bool {
    let s = status(a);
    s.state() == pb::AllocationState::Running
        && s.health() == pb::HealthState::Healthy
        && s.active_fallback.is_empty()
}

async fn http_get(addr: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Retries GET / on `addr` until the response contains `body`.
async fn wait_http(addr: &str, body: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let got = http_get(addr).await;
        if got.as_ref().is_ok_and(|r| r.contains(body)) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "GET {addr}: no {body:?} within {timeout:?}; last: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Containers of a service (any state): id → (name, running).
async fn containers_of(d: &Docker, service: &str) -> BTreeMap<String, (String, bool)> {
    let filters = HashMap::from([("label", vec![format!("constellation.service={service}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    d.list_containers(Some(opts))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let running = c.state.map(|s| s.to_string()).as_deref() == Some("running");
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_default();
            (c.id.unwrap_or_default(), (name, running))
        })
        .collect()
}

/// Force-removes every container of the given services when dropped, so a failed test
/// leaves nothing running.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let services = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(d) = docker::connect().await else {
                    return;
                };
                for s in services {
                    for id in containers_of(&d, &s).await.into_keys() {
                        let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                            .force(true)
                            .v(true)
                            .build();
                        let _ = d.remove_container(&id, Some(opts)).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A container start or die seen on Docker's event stream.
#[derive(Debug, Clone)]
struct Seen {
    at_ns: i64,
    action: String,
    /// The `constellation.fallback` label; empty for the primary.
    fallback: String,
}

/// Records the start and die events of a service's containers until dropped.
fn record_events(d: &Docker, service: &str) -> tokio::sync::mpsc::UnboundedReceiver<Seen> {
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("event", vec!["start".to_string(), "die".to_string()]),
        ("label", vec![format!("constellation.service={service}")]),
    ]);
    let opts = EventsOptionsBuilder::new().filters(&filters).build();
    let mut events = d.events(Some(opts));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(e)) = events.next().await {
            let attrs = e.actor.and_then(|a| a.attributes).unwrap_or_default();
            let seen = Seen {
                at_ns: e.time_nano.unwrap_or_default(),
                action: e.action.unwrap_or_default(),
                fallback: attrs
                    .get("constellation.fallback")
                    .cloned()
                    .unwrap_or_default(),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    rx
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_primary_backs_off_then_fallback_runs_until_primary_is_fixed() {
    let Some(d) = docker::connect_or_skip("fallback").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The primary runs only once this directory holds `ok`.
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let _agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("crashy");
    let _cleanup = Cleanup(vec![service.clone()]);
    let mut events = record_events(&d, &service);

    // Primary and fallback publish the same fixed host port: the fallback takes it
    // over, so the agent must stop one before starting the other.
    let port = free_port();
    let mut spec = web(&service);
    spec.command = [
        "sh",
        "-c",
        "test -f /flags/ok || exit 1; exec httpd -f -p 8080 -h /www",
    ]
    .map(String::from)
    .to_vec();
    spec.ports[0].published_port = Some(u32::from(port));
    spec.volumes = vec![pb::VolumeMount {
        source: Some(pb::volume_mount::Source::Bind(flags.display().to_string())),
        target: "/flags".into(),
        read_only: true,
        ..Default::default()
    }];
    spec.restart = Some(pb::RestartPolicy {
        initial_delay: dur(1000),
        multiplier: 2.0,
        max_attempts: Some(3),
        ..Default::default()
    });
    spec.fallbacks = vec![pb::FallbackSpec {
        name: "maintenance".into(),
        image: docker::test_image(),
        command: [
            "sh",
            "-c",
            "mkdir -p /tmp/m && echo under maintenance > /tmp/m/index.html \
             && exec httpd -f -p 8080 -h /tmp/m",
        ]
        .map(String::from)
        .to_vec(),
        recovery_interval: dur(3000),
        ..Default::default()
    }];
    apply(&cp.api_addr, spec).await;

    // The fallback runs, reported as such, and answers on the primary's port.
    let allocs = wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(60),
        "fallback running",
        |a| {
            let s = status(a);
            s.active_fallback == "maintenance" && s.state() == pb::AllocationState::Running
        },
    )
    .await;
    assert!(status(&allocs[0]).restart_count >= 3, "{allocs:#?}");
    let addr = format!("127.0.0.1:{port}");
    wait_http(&addr, "under maintenance", Duration::from_secs(30)).await;

    // Docker's own clock on the primary's starts and deaths: the delays between a
    // death and the next start grow 1 s, 2 s, 4 s; the fourth death hands over.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|s: &Seen| s.fallback == "maintenance" && s.action == "start")
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => panic!("no fallback start event: {seen:#?}"),
        }
    }
    let primary: Vec<&Seen> = seen.iter().filter(|s| s.fallback.is_empty()).collect();
    let actions: Vec<&str> = primary.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "start", "die", "start", "die", "start", "die", "start", "die"
        ],
        "{seen:#?}"
    );
    let delays_ms: Vec<i64> = [1, 3, 5]
        .iter()
        .map(|i| (primary[i + 1].at_ns - primary[*i].at_ns) / 1_000_000)
        .collect();
    for (got, want) in delays_ms.iter().zip([1000i64, 2000, 4000]) {
        // Lower bound: the configured delay (less clock granularity); upper bound: the
        // delay plus event handling and Docker's own start of the container, which
        // takes 0.5 to 1 s on a busy 2-core machine.
        assert!(
            *got >= want - 20 && *got <= want + 1500,
            "delays {delays_ms:?} ms, wanted about [1000, 2000, 4000]"
        );
    }
    assert!(
        delays_ms.windows(2).all(|w| w[0] < w[1]),
        "delays do not grow: {delays_ms:?}"
    );
    let fallback_start = seen
        .iter()
        .find(|s| s.fallback == "maintenance" && s.action == "start")
        .unwrap();
    assert!(fallback_start.at_ns >= primary[7].at_ns);

    // Not fixed yet: a probe (after the 3 s recovery interval) starts the primary, it
    // dies again, and the fallback comes back.
    let after_probe = |seen: &[Seen]| {
        let start = seen
            .iter()
            .rposition(|s| s.fallback == "maintenance" && s.action == "start");
        start.is_some_and(|i| {
            seen[..i]
                .iter()
                .filter(|s| s.fallback.is_empty() && s.action == "die")
                .count()
                >= 5
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !after_probe(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => panic!("no failed probe: {seen:#?}"),
        }
    }
    wait_http(&addr, "under maintenance", Duration::from_secs(30)).await;

    // Fix the primary: the next probe starts it, it turns healthy, takes back over,
    // and the fallback container is removed.
    std::fs::write(flags.join("ok"), b"ok").unwrap();
    wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(60),
        "primary back",
        running_healthy,
    )
    .await;
    wait_http(
        &addr,
        docker::TEST_IMAGE_INDEX_HTML,
        Duration::from_secs(30),
    )
    .await;
    let start = Instant::now();
    loop {
        let left = containers_of(&d, &service).await;
        if left.len() == 1 && left.values().all(|(_, running)| *running) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "fallback not removed: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest {
            name: service.clone(),
        })
        .await
        .unwrap();
}

/// Whether a container runs, and when it last started (Docker's clock).
async fn run_state(d: &Docker, id: &str) -> (bool, String) {
    let c = d.inspect_container(id, None).await.unwrap();
    let s = c.state.unwrap_or_default();
    (s.running.unwrap_or(false), s.started_at.unwrap_or_default())
}

/// Kills the container's process (as a crash would) and waits until it runs again,
/// started anew, within `timeout`.
async fn crash_and_wait_restarted(d: &Docker, id: &str, timeout: Duration) {
    let (_, before) = run_state(d, id).await;
    let opts = bollard::query_parameters::KillContainerOptionsBuilder::new()
        .signal("KILL")
        .build();
    d.kill_container(id, Some(opts)).await.unwrap();
    let start = Instant::now();
    loop {
        let (running, started) = run_state(d, id).await;
        if running && started != before {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "container {id} not restarted within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delete_and_wait_gone(addr: &str, d: &Docker, service: &str) {
    client(addr)
        .delete_service(pb::DeleteServiceRequest {
            name: service.to_owned(),
        })
        .await
        .unwrap();
    let start = Instant::now();
    while !containers_of(d, service).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "containers of {service} left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_control_plane_containers_keep_running_and_are_restarted_locally() {
    let Some(d) = docker::connect_or_skip("static_stability").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let mut agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("steady");
    let _cleanup = Cleanup(vec![service.clone()]);
    apply(&cp.api_addr, web(&service)).await;
    wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(60),
        "healthy",
        running_healthy,
    )
    .await;
    let ids: Vec<String> = containers_of(&d, &service).await.into_keys().collect();
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();

    // The control plane goes away (killed, as a crash would).
    cp.crash().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        run_state(&d, &id).await.0,
        "stopped without a control plane"
    );
    // A crash is restarted by the agent alone.
    crash_and_wait_restarted(&d, &id, Duration::from_secs(20)).await;

    // The agent itself restarts while the control plane is still down: it keeps the
    // container (from its saved assignment set) and still restarts it after a crash.
    agent.restart().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now: Vec<String> = containers_of(&d, &service).await.into_keys().collect();
    assert_eq!(now, std::slice::from_ref(&id));
    assert!(run_state(&d, &id).await.0);
    crash_and_wait_restarted(&d, &id, Duration::from_secs(20)).await;

    // The control plane comes back on its data: the agent reconnects and the
    // allocation converges to running and healthy, on the same container, with the
    // local restarts counted.
    cp.restart().await.unwrap();
    let allocs = wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(60),
        "converged after the control plane restart",
        |a| running_healthy(a) && status(a).container_id == id && status(a).restart_count >= 1,
    )
    .await;
    assert_eq!(allocs.len(), 1);
    assert_eq!(allocs[0].node_name, node);
    assert_eq!(
        containers_of(&d, &service)
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        [id]
    );
    delete_and_wait_gone(&cp.api_addr, &d, &service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_containers_without_recreating_any() {
    let Some(d) = docker::connect_or_skip("agent_restart").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let mut agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("adopt");
    let _cleanup = Cleanup(vec![service.clone()]);
    let mut spec = web(&service);
    spec.replicas = Some(2);
    apply(&cp.api_addr, spec).await;
    let allocs = wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(60),
        "healthy",
        running_healthy,
    )
    .await;
    assert_eq!(allocs.len(), 2);
    let before = containers_of(&d, &service).await;
    assert_eq!(before.len(), 2);

    // Every create, destroy, start and die of the service's containers from now on.
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("label", vec![format!("constellation.service={service}")]),
    ]);
    let opts = EventsOptionsBuilder::new().filters(&filters).build();
    let mut events = d.events(Some(opts));

    agent.restart().await.unwrap();
    agent
        .process
        .wait_for_log("session accepted", Duration::from_secs(30))
        .await
        .unwrap();
    // The new session's FULL has been reconciled once the reports flow again.
    wait_allocations(
        &cp.api_addr,
        &service,
        Duration::from_secs(30),
        "healthy after the agent restart",
        |a| running_healthy(a) && before.contains_key(&status(a).container_id),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after = containers_of(&d, &service).await;
    assert_eq!(after, before, "containers changed across the agent restart");
    let mut seen = Vec::new();
    while let Some(Some(Ok(e))) = events.next().now_or_never() {
        seen.push(e.action.unwrap_or_default());
    }
    let changes: Vec<&String> = seen
        .iter()
        .filter(|a| !a.starts_with("exec_") && !a.starts_with("health_status"))
        .collect();
    assert!(
        changes.is_empty(),
        "container events across the restart: {changes:?}"
    );
    delete_and_wait_gone(&cp.api_addr, &d, &service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_failure_and_a_bad_port_is_refused() {
    let Some(d) = docker::connect_or_skip("missing_image").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let mut agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("ghost");
    let _cleanup = Cleanup(vec![service.clone()]);
    let image = format!("constellation-test/{service}:none");
    let mut spec = web(&service);
    spec.image = image.clone();
    spec.restart = Some(pb::RestartPolicy {
        initial_delay: dur(1000),
        ..Default::default()
    });
    apply(&cp.api_addr, spec).await;
    // The control plane replaces a FAILED allocation (its reschedule policy), so look
    // for any allocation of the service that failed.
    let start = Instant::now();
    let failed = loop {
        let allocs = client(&cp.api_addr)
            .list_allocations(pb::ListAllocationsRequest {
                service_name: service.clone(),
                include_terminal: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .allocations;
        if let Some(a) = allocs
            .iter()
            .find(|a| status(a).state() == pb::AllocationState::Failed)
        {
            break status(a);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no FAILED allocation: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        failed.message.contains(&image) && failed.message.contains("not found locally"),
        "unclear message: {:?}",
        failed.message
    );
    assert!(failed.container_id.is_empty());
    // The agent keeps running and reporting, and creates nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent
        .process
        .wait_for_log("reconcile: allocation failed", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(containers_of(&d, &service).await.is_empty());

    // A port outside 1..=65535 never reaches an agent.
    let mut bad = web(&docker::unique_name("badport"));
    bad.ports[0].container_port = 70000;
    let err = client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(bad),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("ports[0].container_port"),
        "{}",
        err.message()
    );

    delete_and_wait_gone(&cp.api_addr, &d, &service).await;
}
