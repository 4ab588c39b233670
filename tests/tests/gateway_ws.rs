//! The gateway's WebSocket through a real control plane: 100 clients each receive every
//! event in index order after their snapshot; a client resuming from an index gets
//! exactly the events it missed; text `ping` is answered `pong`; a browser `Origin`
//! must match the configured list exactly.

use constellation_tests::binaries::{ControlPlane, Gateway};
use constellation_tests::http::HttpRequest;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    addr: &str,
    query: &str,
    origin: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws{query}")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// The next JSON text message (pings and pongs skipped).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("the socket is open")
            .expect("no socket error");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Reads `n` event messages, returning (index, service name) of each.
async fn service_events(socket: &mut Socket, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = next_json(socket).await;
        assert_eq!(m["type"], "service_change", "{m}");
        got.push((
            m["index"].as_u64().unwrap(),
            m["service_name"].as_str().unwrap().to_owned(),
        ));
    }
    got
}

async fn put_service(gw: &Gateway, name: &str) {
    let r = HttpRequest::new("PUT", &format!("/api/v1/services/{name}"))
        .json(&json!({"image": "busybox:latest", "replicas": 0}))
        .send(&gw.addr)
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_each_receive_every_event_in_order_and_a_resume_gets_exactly_what_it_missed()
 {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let gw = Gateway::start(
        &[&cp.api_addr],
        &["--cors-origins", "https://ops.example.com"],
    )
    .await
    .unwrap();
    gw.wait_synced(Duration::from_secs(30)).await.unwrap();

    const CLIENTS: usize = 100;
    const SERVICES: usize = 20;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut socket = connect(&gw.addr, "?topic=service", None).await.unwrap();
        let first = next_json(&mut socket).await;
        assert_eq!(first["type"], "initial_state");
        assert!(first["index"].as_u64().is_some());
        clients.push(socket);
    }

    let names: Vec<String> = (0..SERVICES).map(|i| format!("ws-{i:02}")).collect();
    for name in &names {
        put_service(&gw, name).await;
    }

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut socket| tokio::spawn(async move { service_events(&mut socket, SERVICES).await }))
        .collect();
    let mut sequences = Vec::new();
    for reader in readers {
        sequences.push(reader.await.unwrap());
    }
    let reference = &sequences[0];
    let got_names: Vec<&str> = reference.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        got_names,
        names.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        reference.windows(2).all(|w| w[0].0 < w[1].0),
        "index order: {reference:?}"
    );
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq, reference, "client {i} saw another sequence");
    }

    // Resume after the 10th event: exactly the 10 after it, no snapshot first.
    let (tenth, _) = reference[9];
    let mut resumed = connect(&gw.addr, &format!("?topic=service&index={tenth}"), None)
        .await
        .unwrap();
    let rest = service_events(&mut resumed, SERVICES - 10).await;
    assert_eq!(rest, reference[10..]);
    // And then live events follow without a gap.
    put_service(&gw, "ws-live").await;
    let live = service_events(&mut resumed, 1).await;
    assert_eq!(live[0].1, "ws-live");
    assert!(live[0].0 > reference[SERVICES - 1].0);

    // Text ping, text pong.
    resumed.send(Message::Text("ping".into())).await.unwrap();
    let pong = loop {
        match tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => break t.as_str().to_owned(),
            _ => continue,
        }
    };
    assert_eq!(pong, "pong");

    // Origins: exact match only.
    assert!(
        connect(&gw.addr, "", Some("https://ops.example.com"))
            .await
            .is_ok()
    );
    for bad in [
        "https://evil.example",
        "https://ops.example.com.evil.example",
    ] {
        match connect(&gw.addr, "", Some(bad)).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
            other => panic!("{bad}: expected 403, got {other:?}"),
        }
    }
}
