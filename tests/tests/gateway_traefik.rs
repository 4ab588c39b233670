//! The Traefik endpoint end to end: a control plane, an agent running a busybox httpd
//! service with Traefik labels on the real Docker engine, and a gateway. The document
//! routes to the allocation's published port; a failing health check takes the server
//! out within a second of the control plane knowing, and a passing one brings it back;
//! with the control plane gone the endpoint answers 503 once the freshness bound has
//! passed, never an empty document.

use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::binaries::{Agent, ControlPlane, Process, binary};
use constellation_tests::docker;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the gateway's view may go without its watch stream (`--stale-after`).
const STALE_AFTER: Duration = Duration::from_secs(2);
/// The file whose presence the health check tests; removing it fails the check.
const HEALTH_FILE: &str = "/tmp/healthy";

fn web(name: &str) -> pb::ServiceSpec {
    let secs = |s| {
        Some(pbjson_types::Duration {
            seconds: s,
            nanos: 0,
        })
    };
    let millis = |ms: i32| {
        Some(pbjson_types::Duration {
            seconds: 0,
            nanos: ms * 1_000_000,
        })
    };
    pb::ServiceSpec {
        name: name.into(),
        image: docker::test_image(),
        command: [
            "sh",
            "-c",
            &format!("touch {HEALTH_FILE} && exec httpd -f -p 8080 -h /www"),
        ]
        .map(String::from)
        .to_vec(),
        labels: [
            ("traefik.enable", "true"),
            ("traefik.http.routers.web.rule", "Host(`web.example.com`)"),
            ("traefik.http.routers.web.entrypoints", "websecure"),
            ("traefik.http.routers.web.middlewares", "strip"),
            (
                "traefik.http.middlewares.strip.stripprefix.prefixes",
                "/api",
            ),
            (
                "traefik.http.services.web.loadbalancer.healthcheck.path",
                "/",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ports: vec![pb::PortSpec {
            container_port: 8080,
            host_ip: "127.0.0.1".into(),
            ..Default::default()
        }],
        health_check: Some(pb::HealthCheck {
            test: ["CMD", "test", "-f", HEALTH_FILE]
                .map(String::from)
                .to_vec(),
            interval: millis(250),
            timeout: secs(1),
            retries: 1,
            ..Default::default()
        }),
        stop_grace_period: secs(1),
        ..Default::default()
    }
}

/// A gateway process; its main and Traefik listeners.
struct Gateway {
    _process: Process,
    addr: String,
    traefik_addr: String,
}

async fn start_gateway(controlplane: &str) -> Gateway {
    let args: Vec<String> = [
        "--controlplane",
        controlplane,
        "--listen",
        "127.0.0.1:0",
        "--traefik-listen",
        "127.0.0.1:0",
        "--stale-after",
        &format!("{}ms", STALE_AFTER.as_millis()),
    ]
    .map(String::from)
    .to_vec();
    let bin = binary("constellation-gateway").unwrap();
    let mut process = Process::spawn("gw", &bin, &args).unwrap();
    let main = process
        .wait_for_log("gateway serving", Duration::from_secs(30))
        .await
        .unwrap();
    let traefik = process
        .wait_for_log("traefik provider serving", Duration::from_secs(30))
        .await
        .unwrap();
    Gateway {
        addr: main["listen"].clone(),
        traefik_addr: traefik["listen"].clone(),
        _process: process,
    }
}

/// `GET path` on `addr`, one request per connection: status and body.
async fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, response[split + 4..].to_vec())
}

async fn document(addr: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, "/traefik").await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn servers(doc: &serde_json::Value) -> Vec<String> {
    doc["http"]["services"]["web"]["loadBalancer"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["url"].as_str().map(str::to_owned))
        .collect()
}

fn empty_objects(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            let key = path.rsplit('/').next().unwrap_or("");
            let allowed = matches!(key, "tls" | "sticky" | "cookie" | "compress" | "ipStrategy");
            if map.is_empty() && !allowed {
                out.push(path.to_owned());
            }
            for (k, v) in map {
                empty_objects(v, &format!("{path}/{k}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                empty_objects(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

async fn allocation(cp: &str, service: &str) -> Option<pb::Allocation> {
    client(cp)
        .list_allocations(pb::ListAllocationsRequest {
            service_name: service.into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .allocations
        .into_iter()
        .find(|a| a.desired_state() != pb::AllocationDesiredState::Stop)
}

fn health(a: &pb::Allocation) -> (pb::AllocationState, pb::HealthState) {
    let s = a.status.clone().unwrap_or_default();
    (s.state(), s.health())
}

/// Runs `cmd` in the service's container.
async fn exec(docker: &bollard::Docker, container: &str, cmd: &[&str]) {
    let exec = docker
        .create_exec(
            container,
            bollard::models::ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .start_exec(
            &exec.id,
            Some(bollard::exec::StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
}

/// Polls until `done` holds for the allocation, at most `timeout`; returns it.
async fn wait_allocation(
    cp: &str,
    service: &str,
    timeout: Duration,
    done: impl Fn(&pb::Allocation) -> bool,
) -> pb::Allocation {
    let start = Instant::now();
    loop {
        if let Some(a) = allocation(cp, service).await
            && done(&a)
        {
            return a;
        }
        assert!(
            start.elapsed() < timeout,
            "allocation never reached the state"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the document until `done` holds, at most `timeout`; returns the time taken.
async fn wait_document(
    addr: &str,
    timeout: Duration,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let (status, doc) = document(addr).await;
        if done(status, &doc) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "document did not change within {timeout:?}: {status} {doc}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_document_follows_health_and_turns_503_without_a_control_plane() {
    let Some(docker) = docker::connect_or_skip("traefik_document_follows_health")
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let service = docker::unique_name("web");
    // Declared before the agent, so it runs after the agent is gone (an agent without
    // its control plane would restart what the cleanup removes).
    let _cleanup = Cleanup(service.clone());
    let _agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let gateway = start_gateway(&cp.api_addr).await;
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(web(&service)),
            ..Default::default()
        })
        .await
        .unwrap();

    // Running and healthy: the document routes to the published port.
    let running = wait_allocation(&cp.api_addr, &service, Duration::from_secs(60), |a| {
        health(a) == (pb::AllocationState::Running, pb::HealthState::Healthy)
    })
    .await;
    let endpoint = running.status.as_ref().unwrap().endpoints[0].clone();
    let url = format!("http://{}:{}", endpoint.host_ip, endpoint.host_port);
    wait_document(&gateway.addr, Duration::from_secs(10), |status, doc| {
        status == 200 && servers(doc) == [url.clone()]
    })
    .await;
    let (_, doc) = document(&gateway.addr).await;
    assert_eq!(
        doc["http"]["routers"]["web"]["rule"],
        "Host(`web.example.com`)"
    );
    assert_eq!(doc["http"]["routers"]["web"]["service"], "web");
    assert_eq!(
        doc["http"]["middlewares"]["strip"]["stripPrefix"]["prefixes"],
        serde_json::json!(["/api"])
    );
    let mut empty = Vec::new();
    empty_objects(&doc, "", &mut empty);
    assert_eq!(empty, Vec::<String>::new(), "{doc}");
    // The separate Traefik listener serves the same bytes; the sub-routes the maps.
    assert_eq!(
        get(&gateway.traefik_addr, "/traefik").await,
        get(&gateway.addr, "/traefik").await
    );
    let (status, routers) = get(&gateway.addr, "/api/http/routers").await;
    assert_eq!(status, 200);
    let routers: serde_json::Value = serde_json::from_slice(&routers).unwrap();
    assert_eq!(routers, doc["http"]["routers"]);
    // The server answers HTTP where the document says.
    let (status, _) = get(&url["http://".len()..], "/").await;
    assert_eq!(status, 200);

    // The health check fails: once the control plane knows, the server leaves the
    // document within a second.
    let container = docker::containers_with_label("constellation.service", &service)
        .await
        .unwrap();
    let container = container[0].trim_start_matches('/').to_owned();
    exec(&docker, &container, &["rm", HEALTH_FILE]).await;
    wait_allocation(&cp.api_addr, &service, Duration::from_secs(30), |a| {
        health(a).1 == pb::HealthState::Unhealthy
    })
    .await;
    let took = wait_document(&gateway.addr, Duration::from_secs(1), |status, doc| {
        status == 200 && servers(doc).is_empty()
    })
    .await;
    eprintln!("unhealthy to out of the document: {took:?}");
    let (_, doc) = document(&gateway.addr).await;
    assert_eq!(doc, serde_json::json!({}), "nothing else routes");

    // Healthy again: back within a second.
    exec(&docker, &container, &["touch", HEALTH_FILE]).await;
    wait_allocation(&cp.api_addr, &service, Duration::from_secs(30), |a| {
        health(a) == (pb::AllocationState::Running, pb::HealthState::Healthy)
    })
    .await;
    let took = wait_document(&gateway.addr, Duration::from_secs(1), |status, doc| {
        status == 200 && servers(doc) == [url.clone()]
    })
    .await;
    eprintln!("healthy to back in the document: {took:?}");

    // The control plane goes away: 503 once the view is older than the bound, on both
    // listeners, and never a 200 with an empty document on the way.
    let lost = Instant::now();
    cp.crash().await.unwrap();
    let took = wait_document(
        &gateway.addr,
        STALE_AFTER + Duration::from_secs(10),
        |status, doc| {
            assert!(status != 200 || !servers(doc).is_empty(), "emptied: {doc}");
            status == 503
        },
    )
    .await;
    eprintln!("control plane gone to 503: {took:?}");
    assert!(lost.elapsed() >= STALE_AFTER, "503 before the bound");
    let (status, body) = get(&gateway.addr, "/traefik").await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "unavailable");
    assert_eq!(get(&gateway.traefik_addr, "/traefik").await.0, 503);
}

/// Removes the service's containers at the end (the control plane is gone by then).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let service = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(docker) = docker::connect().await else {
                    return;
                };
                let names = docker::containers_with_label("constellation.service", &service)
                    .await
                    .unwrap_or_default();
                for name in names {
                    let options =
                        bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build();
                    let _ = docker
                        .remove_container(name.trim_start_matches('/'), Some(options))
                        .await;
                }
            });
        })
        .join();
    }
}
