//! The real `constellation-controlplane` binary: it serves grpc.health.v1 and server
//! reflection, shuts down cleanly on SIGTERM, resumes from its data directory, and
//! refuses to start on an empty directory without --bootstrap or --join.

use constellation_tests::binaries::{ControlPlane, binary};
use std::time::Duration;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

async fn health(addr: &str) -> ServingStatus {
    let reply = HealthClient::new(channel(addr).await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    reply.status()
}

async fn reflected_services(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel(addr).await)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

#[tokio::test]
async fn serves_health_and_reflection_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::bootstrap(1, dir.path()).await.unwrap();

    for addr in [&cp.api_addr, &cp.raft_addr] {
        assert_eq!(health(addr).await, ServingStatus::Serving, "{addr}");
    }
    let services = reflected_services(&cp.api_addr).await;
    for wanted in [
        "constellation.v1.ControlPlane",
        "constellation.v1.Dispatcher",
        "constellation.v1.RaftPeer",
        "constellation.v1.Transfer",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == wanted),
            "{wanted} missing from {services:?}"
        );
    }

    let status = cp.process.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn restart_resumes_and_empty_dir_without_bootstrap_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let bin = binary("constellation-controlplane").unwrap();

    let refused = tokio::process::Command::new(&bin)
        .args(["--id", "1", "--data-dir"])
        .arg(dir.path().join("empty"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--raft-listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--bootstrap") && stderr.contains("--join"),
        "{stderr}"
    );

    let mut first = ControlPlane::bootstrap(1, dir.path()).await.unwrap();
    assert!(
        first
            .process
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );

    // Same directory, no --bootstrap: resumes.
    let mut again = constellation_tests::binaries::Process::spawn(
        "cp1-again",
        &bin,
        &[
            "--id".into(),
            "1".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--raft-listen".into(),
            "127.0.0.1:0".into(),
        ],
    )
    .unwrap();
    let fields = again
        .wait_for_log("control plane serving", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(health(&fields["api"]).await, ServingStatus::Serving);
    assert!(
        again
            .terminate(Duration::from_secs(15))
            .await
            .unwrap()
            .success()
    );
}
