//! The agent end to end against the real Docker engine: the reconciler driven by
//! hand-built assignments (the scheduler that would place allocations does not exist
//! yet), and the agent binary's session with a real control plane. Skipped (loudly)
//! when Docker is unreachable, unless `CI` is set, in which case that is a failure.
//!
//! Each test runs its runtime under a node name of its own: an agent owns only the
//! containers labelled with its node, so these tests and other Docker tests on the
//! same engine leave each other's containers alone.

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use constellation_nodeagent::docker::connect;
use constellation_nodeagent::reconcile::{Reconciler, StatusQueue};
use constellation_nodeagent::runtime::{ContainerRuntime, DockerRuntime, LABEL_SERVICE};
use constellation_proto::v1::{
    Allocation, AllocationReport, AllocationState, Assignment, Assignments, AssignmentsKind,
    HealthCheck, PortSpec, PullPolicy, RestartPolicy, ServiceSpec,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IMAGE: &str = "constellation-test/busybox:latest";

/// A node name no other test or run uses.
fn node_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test-node-{}-{nanos}", std::process::id())
}

async fn docker() -> Option<Docker> {
    let reachable = match connect(None).await {
        Ok(d) => d.ping().await.map(|_| d).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match reachable {
        Ok(d) => Some(d),
        Err(e) if std::env::var("CI").is_ok() => panic!("Docker unreachable under CI: {e}"),
        Err(e) => {
            eprintln!("SKIPPING: Docker is unreachable ({e}); set CI to make this a failure");
            None
        }
    }
}

fn nonce() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), n & 0xff_ffff_ffff)
}

fn secs(s: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// Removes every container of the given services, and the named ones, when dropped
/// (even when the test panics).
struct Cleanup {
    services: Vec<String>,
    names: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let services = std::mem::take(&mut self.services);
        let names = std::mem::take(&mut self.names);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(d) = connect(None).await else { return };
                let mut ids = names;
                for s in services {
                    ids.extend(containers_of(&d, &s).await.into_keys());
                }
                for c in ids {
                    let opts = RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build();
                    let _ = d.remove_container(&c, Some(opts)).await;
                }
            });
        })
        .join();
    }
}

/// Containers (any state) of a service: id → running.
async fn containers_of(d: &Docker, service: &str) -> HashMap<String, bool> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_SERVICE}={service}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    d.list_containers(Some(opts))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let running = c.state.map(|s| s.to_string()) == Some("running".into());
            (c.id.unwrap_or_default(), running)
        })
        .collect()
}

fn spec(service: &str, version: &str) -> ServiceSpec {
    ServiceSpec {
        name: service.into(),
        image: IMAGE.into(),
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            .map(String::from)
            .to_vec(),
        env: BTreeMap::from([("VERSION".to_string(), version.to_string())]),
        ports: vec![PortSpec {
            container_port: 8080,
            name: "http".into(),
            ..Default::default()
        }],
        health_check: Some(HealthCheck {
            test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
                .map(String::from)
                .to_vec(),
            interval: secs(1),
            timeout: secs(2),
            retries: 3,
            ..Default::default()
        }),
        replicas: Some(2),
        restart: Some(RestartPolicy {
            initial_delay: secs(1),
            ..Default::default()
        }),
        stop_grace_period: secs(1),
        ..Default::default()
    }
}

fn assignment(id: &str, slot: u32, spec: ServiceSpec, hash: &str) -> Assignment {
    Assignment {
        allocation: Some(Allocation {
            id: id.into(),
            service_name: spec.name.clone(),
            slot,
            ..Default::default()
        }),
        spec: Some(spec),
        spec_hash: hash.into(),
        ..Default::default()
    }
}

fn message(
    kind: AssignmentsKind,
    version: u64,
    upserts: Vec<Assignment>,
    removals: &[&str],
) -> Assignments {
    Assignments {
        kind: kind as i32,
        version,
        upserts,
        removals: removals.iter().map(|s| s.to_string()).collect(),
    }
}

fn state(r: &AllocationReport) -> AllocationState {
    r.status.as_ref().unwrap().state()
}

fn container_id(r: &AllocationReport) -> String {
    r.status.as_ref().unwrap().container_id.clone()
}

fn reports(q: &StatusQueue) -> BTreeMap<String, AllocationReport> {
    q.take()
        .into_iter()
        .map(|r| (r.allocation_id.clone(), r))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_runs_replaces_restarts_removes_and_adopts() {
    let Some(d) = docker().await else { return };
    let secrets = tempfile::tempdir().unwrap();
    let n = nonce();
    let service = format!("e2e-{n}");
    let bad_service = format!("e2e-bad-{n}");
    let foreign = format!("e2e-foreign-{n}");
    let _cleanup = Cleanup {
        services: vec![service.clone(), bad_service.clone()],
        names: vec![foreign.clone()],
    };
    // A container Constellation did not create, of the same image: never touched.
    let body = bollard::models::ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some(HashMap::from([(
            LABEL_SERVICE.to_string(),
            service.clone(),
        )])),
        ..Default::default()
    };
    let created = d
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&foreign).build()),
            body,
        )
        .await
        .unwrap();
    d.start_container(&created.id, None).await.unwrap();

    let runtime = Arc::new(DockerRuntime::new(
        d.clone(),
        node_name(),
        secrets.path().to_path_buf(),
    ));
    let status = Arc::new(StatusQueue::new());
    let mut rec = Reconciler::new(runtime.clone(), status.clone(), "10.1.2.3");
    let (a0, a1) = (format!("{n}a0"), format!("{n}a1"));
    let bad = format!("{n}bad");
    let bad_spec = ServiceSpec {
        name: bad_service.clone(),
        image: "constellation-test/does-not-exist:latest".into(),
        pull_policy: PullPolicy::Never as i32,
        ..Default::default()
    };

    // Before any FULL nothing is created or removed.
    rec.reconcile_all().await;
    assert!(containers_of(&d, &service).await.len() == 1);

    // FULL: two replicas and one that cannot be prepared.
    rec.handle(message(
        AssignmentsKind::Full,
        1,
        vec![
            assignment(&a0, 0, spec(&service, "1"), "h1"),
            assignment(&a1, 1, spec(&service, "1"), "h1"),
            assignment(&bad, 0, bad_spec, "hb"),
        ],
        &[],
    ))
    .await;
    let r = reports(&status);
    for id in [&a0, &a1] {
        assert_eq!(state(&r[id]), AllocationState::Running, "{:?}", r[id]);
        assert_eq!(r[id].spec_hash, "h1");
        let s = r[id].status.as_ref().unwrap();
        assert_eq!(s.endpoints.len(), 1, "{s:?}");
        assert_eq!(s.endpoints[0].container_port, 8080);
        assert_eq!(s.endpoints[0].name, "http");
        assert!(s.endpoints[0].host_port > 0);
        assert!(s.started_at.is_some() && s.updated_at.is_some());
    }
    let bad_status = r[&bad].status.clone().unwrap();
    assert_eq!(bad_status.state(), AllocationState::Failed);
    assert!(
        bad_status.message.contains("does-not-exist"),
        "{}",
        bad_status.message
    );
    assert!(bad_status.next_restart_at.is_some());
    let first: BTreeMap<String, String> = [&a0, &a1]
        .iter()
        .map(|id| (id.to_string(), container_id(&r[*id])))
        .collect();
    assert_eq!(containers_of(&d, &service).await.len(), 3);

    // A container that dies is restarted (same container) after its backoff delay.
    let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
    d.kill_container(&first[&a0], Some(kill)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rec.reconcile_allocation(&a0).await;
    let r = reports(&status);
    assert_eq!(state(&r[&a0]), AllocationState::Restarting, "{:?}", r[&a0]);
    assert!(r[&a0].status.as_ref().unwrap().next_restart_at.is_some());
    let due = rec.next_wakeup().expect("a restart is pending");
    tokio::time::sleep_until(due.max(Instant::now() + Duration::from_millis(1100)).into()).await;
    rec.reconcile_due().await;
    let r = reports(&status);
    let s = r[&a0].status.as_ref().unwrap();
    assert_eq!(s.state(), AllocationState::Running, "{s:?}");
    assert_eq!(s.restart_count, 1);
    assert_eq!(s.container_id, first[&a0]);

    // DELTA changing the env of one replica: its container is replaced.
    rec.handle(message(
        AssignmentsKind::Delta,
        2,
        vec![assignment(&a1, 1, spec(&service, "2"), "h2")],
        &[],
    ))
    .await;
    let r = reports(&status);
    assert_eq!(state(&r[&a1]), AllocationState::Running, "{:?}", r[&a1]);
    assert_eq!(r[&a1].spec_hash, "h2");
    let replaced = container_id(&r[&a1]);
    assert_ne!(replaced, first[&a1]);
    let now = containers_of(&d, &service).await;
    assert!(!now.contains_key(&first[&a1]), "the old container is gone");
    assert!(now[&replaced]);

    // A DELTA that skips a version is ignored.
    rec.handle(message(AssignmentsKind::Delta, 9, vec![], &[&a0, &a1]))
        .await;
    assert_eq!(containers_of(&d, &service).await.len(), 3);

    // A new reconciler (the agent restarted) adopts the running containers.
    drop(rec);
    let status = Arc::new(StatusQueue::new());
    let mut rec = Reconciler::new(runtime.clone(), status.clone(), "10.1.2.3");
    rec.observe_all().await;
    let hello = reports(&status);
    assert_eq!(hello[&a0].spec_hash, "h1");
    assert_eq!(hello[&a1].spec_hash, "h2");
    rec.handle(message(
        AssignmentsKind::Full,
        1,
        vec![
            assignment(&a0, 0, spec(&service, "1"), "h1"),
            assignment(&a1, 1, spec(&service, "2"), "h2"),
        ],
        &[],
    ))
    .await;
    let r = reports(&status);
    assert_eq!(container_id(&r[&a0]), first[&a0], "adopted, not recreated");
    assert_eq!(container_id(&r[&a1]), replaced, "adopted, not recreated");
    assert_eq!(state(&r[&a0]), AllocationState::Running);

    // DELTA removing both: their containers are gone, the foreign one stays.
    rec.handle(message(AssignmentsKind::Delta, 2, vec![], &[&a0, &a1]))
        .await;
    let r = reports(&status);
    assert_eq!(state(&r[&a0]), AllocationState::Stopped);
    assert_eq!(state(&r[&a1]), AllocationState::Stopped);
    let left = containers_of(&d, &service).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[&created.id], "the foreign container still runs");
    assert!(
        runtime
            .list_owned()
            .await
            .unwrap()
            .iter()
            .all(|c| c.service != service)
    );
}

/// The directory holding the workspace's binaries (target/debug).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the JSON log line with `message` on the child's stderr and returns it;
/// the rest of stderr is drained (and echoed) in the background.
fn wait_for_log(child: &mut Child, message: &str, what: &str) -> serde_json::Value {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = message.to_owned();
    let what = what.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{what}] {line}");
            if !sent
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == wanted.as_str()
            {
                sent = true;
                let _ = tx.send(v);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no {message:?} log line"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_binary_registers_with_the_control_plane() {
    if docker().await.is_none() {
        return;
    }
    let controlplane = bin_dir().join("constellation-controlplane");
    if !controlplane.exists() {
        let msg = format!(
            "{} is missing; run `cargo build --workspace --bins` first",
            controlplane.display()
        );
        if std::env::var("CI").is_ok() {
            panic!("{msg}");
        }
        eprintln!("SKIPPING: {msg}");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let mut cp = Command::new(&controlplane)
        .args(["--id", "1", "--bootstrap", "--data-dir"])
        .arg(data.path())
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--raft-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let serving = wait_for_log(&mut cp, "control plane serving", "controlplane");
    let _cp = Proc(cp);
    let api = serving["api"].as_str().unwrap().to_owned();

    let name = format!("e2e-node-{}", nonce());
    let mut agent = Command::new(env!("CARGO_BIN_EXE_constellation-agent"))
        .args(["--controlplane", &api, "--name", &name, "--secrets-dir"])
        .arg(secrets.path())
        .arg("--state-dir")
        .arg(data.path().join("agent-state"))
        .args(["--label", "zone=test", "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_log(&mut agent, "agent started", "agent");
    let _agent = Proc(agent);

    let mut client = constellation_proto::v1::control_plane_client::ControlPlaneClient::connect(
        format!("http://{api}"),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = client
            .list_nodes(constellation_proto::v1::ListNodesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .nodes;
        if let Some(node) = nodes
            .iter()
            .find(|n| n.description.as_ref().is_some_and(|d| d.name == name))
        {
            let desc = node.description.as_ref().unwrap();
            if node.status() == constellation_proto::v1::NodeStatus::Ready {
                assert_eq!(desc.labels.get("zone").map(String::as_str), Some("test"));
                assert_eq!(desc.agent_version, env!("CARGO_PKG_VERSION"));
                assert!(desc.capacity.as_ref().unwrap().cpu_millis >= 1000);
                assert!(desc.capacity.as_ref().unwrap().memory_bytes > 0);
                assert!(!desc.docker_version.is_empty());
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {name} not READY in time: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the latest report of `id` until `pred` holds.
async fn wait_report(
    q: &StatusQueue,
    id: &str,
    what: &str,
    pred: impl Fn(&AllocationReport) -> bool,
) -> AllocationReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let latest = q.latest(id);
        if let Some(r) = &latest
            && pred(r)
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "{what}: last report {latest:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_reconciler_follows_assignments_and_docker_events() {
    let Some(d) = docker().await else { return };
    let secrets = tempfile::tempdir().unwrap();
    let n = nonce();
    let service = format!("e2e-run-{n}");
    let _cleanup = Cleanup {
        services: vec![service.clone()],
        names: vec![],
    };
    let runtime = Arc::new(DockerRuntime::new(
        d.clone(),
        node_name(),
        secrets.path().to_path_buf(),
    ));
    let status = Arc::new(StatusQueue::new());
    let rec = Reconciler::new(runtime, status.clone(), "10.1.2.3");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(rec.run(rx, cancel.clone()));
    let id = format!("{n}r0");
    tx.send(message(
        AssignmentsKind::Full,
        1,
        vec![assignment(&id, 0, spec(&service, "1"), "h1")],
        &[],
    ))
    .await
    .unwrap();
    let running = wait_report(&status, &id, "running", |r| {
        state(r) == AllocationState::Running
    })
    .await;
    let cid = container_id(&running);
    // The health check passes: a health event updates the report.
    wait_report(&status, &id, "healthy", |r| {
        r.status.as_ref().unwrap().health() == constellation_proto::v1::HealthState::Healthy
    })
    .await;
    // Killed: the die event leads to RESTARTING, then the restart after 1 s.
    let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
    d.kill_container(&cid, Some(kill)).await.unwrap();
    let restarted = wait_report(&status, &id, "restarted", |r| {
        let s = r.status.as_ref().unwrap();
        s.state() == AllocationState::Running && s.restart_count == 1
    })
    .await;
    assert_eq!(container_id(&restarted), cid);
    // Removed: the container goes.
    tx.send(message(AssignmentsKind::Delta, 2, vec![], &[&id]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containers_of(&d, &service).await.is_empty() {
        assert!(Instant::now() < deadline, "container not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    task.await.unwrap();
}
