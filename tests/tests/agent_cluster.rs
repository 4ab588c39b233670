//! A control plane and a real agent on the real Docker engine: a service with two
//! replicas is placed on the agent, runs, turns healthy, answers HTTP from the host at
//! its reported endpoint, and is removed when the service is deleted.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, client};
use constellation_tests::binaries::{Agent, ControlPlane};
use constellation_tests::docker;
use constellation_tests::specs::http_service;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_healthy_answer_http_and_go_away() {
    let Some(_docker) = docker::connect_or_skip("two_replicas_run_healthy")
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node = docker::unique_name("node");
    let _agent = Agent::start(&node, &cp.api_addr, &dir.path().join("secrets"))
        .await
        .unwrap();
    let service = docker::unique_name("web");
    client(&cp.api_addr)
        .apply_service(pb::ApplyServiceRequest {
            spec: Some(http_service(&service, 2, 1000)),
            ..Default::default()
        })
        .await
        .unwrap();

    let healthy = |a: &pb::Allocation| {
        let s = a.status.clone().unwrap_or_default();
        s.state() == pb::AllocationState::Running && s.health() == pb::HealthState::Healthy
    };
    let start = Instant::now();
    let running = loop {
        let allocs = allocations(&cp.api_addr, &service).await;
        if allocs.len() == 2 && allocs.iter().all(healthy) {
            break allocs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not healthy in time: {allocs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for alloc in &running {
        assert_eq!(alloc.node_name, node);
        let endpoint = &alloc.status.as_ref().unwrap().endpoints[0];
        let response = http_get(&format!("{}:{}", endpoint.host_ip, endpoint.host_port)).await;
        assert!(
            response.contains(docker::TEST_IMAGE_INDEX_HTML),
            "{response}"
        );
    }

    client(&cp.api_addr)
        .delete_service(pb::DeleteServiceRequest {
            name: service.clone(),
        })
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let left = docker::containers_with_label("constellation.service", &service)
            .await
            .unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "containers left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
