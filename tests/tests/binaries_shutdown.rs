//! The gateway and the agent binaries start, serve, and exit 0 on SIGTERM and SIGINT
//! (the control plane's own test is in controlplane_process.rs).

use constellation_tests::binaries::{Process, binary};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn gateway_serves_health_and_exits_zero_on_sigterm() {
    let bin = binary("constellation-gateway").unwrap();
    let mut gateway =
        Process::spawn("gateway", &bin, &["--listen".into(), "127.0.0.1:0".into()]).unwrap();
    let fields = gateway
        .wait_for_log("gateway serving", Duration::from_secs(30))
        .await
        .unwrap();
    let response = http_get(&fields["listen"], "/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""status":"healthy""#), "{response}");
    let status = gateway.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn agent_reaches_docker_and_exits_zero_on_sigint() {
    if constellation_tests::docker::connect_or_skip("agent_reaches_docker")
        .await
        .unwrap()
        .is_none()
    {
        return;
    }
    let bin = binary("constellation-agent").unwrap();
    let mut agent = Process::spawn(
        "agent",
        &bin,
        &[
            "--name".into(),
            "test-node".into(),
            "--gossip-listen".into(),
            "127.0.0.1:0".into(),
        ],
    )
    .unwrap();
    let fields = agent
        .wait_for_log("agent started", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(fields["name"], "test-node");
    assert!(!fields["docker"].is_empty());
    let status = agent
        .signal_and_wait("INT", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}
