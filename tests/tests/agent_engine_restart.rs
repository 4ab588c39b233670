//! The agent's Docker engine stops and comes back: the agent notices, waits for it
//! (pinging with growing delays), and reconciles once it answers, starting again the
//! container the engine's shutdown stopped.
//!
//! The engine here is a private `dockerd` started by the test in a network namespace
//! of its own (`unshare --net`), with its own data root, exec root, socket, pid file
//! and managed containerd and no iptables rules, so stopping it leaves the shared
//! engine other tests use alone. It needs root, `unshare` and `dockerd`; without them
//! the test is skipped loudly.

use bollard::query_parameters::{
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::binaries::{Agent, ControlPlane};
use constellation_tests::docker::{self, Docker};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A dockerd of the test's own, under `dir`.
struct PrivateEngine {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateEngine {
    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts dockerd and waits until it answers.
    async fn start(dir: &Path, unshare: &Path, dockerd: &Path) -> Self {
        let mut engine = Self {
            dir: dir.to_owned(),
            child: None,
        };
        engine.spawn(unshare, dockerd).await;
        engine
    }

    async fn spawn(&mut self, unshare: &Path, dockerd: &Path) {
        let d = &self.dir;
        std::fs::create_dir_all(d).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        // A network namespace of its own: dockerd's default bridge, and what it does
        // to network interfaces at start and stop, stay in there (with
        // `--bridge=none` on the host's namespace, dockerd deletes the host's docker0).
        let child = Command::new(unshare)
            .arg("--net")
            .arg(dockerd)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(self.host())
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(c) = self.connect().await
                && c.ping().await.is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "private dockerd did not answer; see {}",
                d.join("dockerd.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        Docker::connect_with_unix(
            &self.socket().display().to_string(),
            30,
            bollard::API_DEFAULT_VERSION,
        )?
        .negotiate_version()
        .await
    }

    /// SIGTERM (dockerd stops its containers, then exits) and waits for the exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // Remove what runs first, so the engine's shutdown is quick and leaves no
        // containerd shims behind.
        let socket = self.socket().display().to_string();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(d) = Docker::connect_with_unix(&socket, 30, bollard::API_DEFAULT_VERSION)
                else {
                    return;
                };
                let opts = ListContainersOptionsBuilder::new().all(true).build();
                for c in d.list_containers(Some(opts)).await.unwrap_or_default() {
                    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = d
                        .remove_container(&c.id.unwrap_or_default(), Some(rm))
                        .await;
                }
            });
        })
        .join();
        self.stop();
    }
}

async fn allocation(addr: &str, service: &str) -> Option<pb::Allocation> {
    client(addr)
        .list_allocations(pb::ListAllocationsRequest {
            service_name: service.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .allocations
        .into_iter()
        .next()
}

async fn containers(d: &Docker, service: &str) -> HashMap<String, bool> {
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
            (c.id.unwrap_or_default(), running)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_is_waited_for_and_reconciled_when_back() {
    let Some(main) = docker::connect_or_skip("engine_restart").await.unwrap() else {
        return;
    };
    let (Some(unshare), Some(dockerd), true) =
        (find_binary("unshare"), find_binary("dockerd"), is_root())
    else {
        eprintln!(
            "\n==== SKIPPED: a_stopped_engine_is_waited_for_and_reconciled_when_back needs \
             root, unshare and dockerd to run a private engine ====\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut engine = PrivateEngine::start(&dir.path().join("engine"), &unshare, &dockerd).await;
    let private = engine.connect().await.unwrap();
    // The private engine has no images and no registry: copy the test image over.
    let image = docker::test_image();
    let load = private.import_image_stream(
        ImportImageOptionsBuilder::new().quiet(true).build(),
        main.export_image(&image),
        None,
    );
    let loaded: Vec<_> = load.collect().await;
    assert!(loaded.iter().all(Result::is_ok), "{loaded:?}");

    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let mut agent = Agent::start_with(
        &node,
        &cp.api_addr,
        &dir.path().join("secrets"),
        &["--docker-host".into(), engine.host()],
    )
    .await
    .unwrap();
    let service = docker::unique_name("engine");
    let spec = pb::ServiceSpec {
        name: service.clone(),
        image,
        command: ["sleep", "3600"].map(String::from).to_vec(),
        networks: vec![pb::NetworkAttachment {
            network: "none".into(),
            ..Default::default()
        }],
        restart: Some(pb::RestartPolicy {
            initial_delay: Some(pbjson_types::Duration {
                seconds: 0,
                nanos: 200_000_000,
            }),
            ..Default::default()
        }),
        stop_grace_period: Some(pbjson_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap();
    let running = |a: &Option<pb::Allocation>| {
        a.as_ref()
            .and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.state() == pb::AllocationState::Running)
    };
    let start = Instant::now();
    let first = loop {
        let a = allocation(&cp.api_addr, &service).await;
        if running(&a) {
            break a.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not running: {a:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = first.status.unwrap().container_id;
    assert_eq!(
        containers(&private, &service).await,
        HashMap::from([(id.clone(), true)])
    );

    // The engine stops (its shutdown stops the container): the agent notices and waits.
    engine.stop();
    agent
        .process
        .wait_for_log(
            "reconcile: docker events failed; waiting for the engine",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    agent
        .process
        .wait_for_log(
            "reconcile: docker engine unreachable",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // Back: the agent resynchronises and the same container runs again.
    engine.spawn(&unshare, &dockerd).await;
    agent
        .process
        .wait_for_log(
            "reconcile: docker engine reachable; resynchronising",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let private = engine.connect().await.unwrap();
    let start = Instant::now();
    loop {
        let a = allocation(&cp.api_addr, &service).await;
        let now = containers(&private, &service).await;
        if running(&a)
            && a.as_ref().unwrap().status.as_ref().unwrap().container_id == id
            && now == HashMap::from([(id.clone(), true)])
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not reconciled: {a:#?} {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest {
            name: service.clone(),
        })
        .await
        .unwrap();
    let start = Instant::now();
    while !containers(&private, &service).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
