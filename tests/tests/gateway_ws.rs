//! The gateway's WebSocket through a real control plane: 100 clients each receive every
//! event in index order after their snapshot; a client resuming from an index gets
//! exactly the events it missed; text `ping` is answered `pong`; a browser `Origin`
//! must match the configured list exactly; a client that stops reading is closed with
//! a reason while another keeps receiving every event; a browser's token comes as a
//! subprotocol.

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

/// What the OpenAPI document's schema `name` finds wrong in `value`.
fn schema_errors(name: &str, value: &Value) -> Vec<String> {
    let doc = constellation_gateway::openapi::document();
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
    });
    // A schema that must fail, so a validator that checks nothing is noticed.
    assert!(
        !jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&json!({"type": 1}))
    );
    let validator = jsonschema::validator_for(&schema).expect("the document's schemas compile");
    validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
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

    // The messages are what the OpenAPI document describes.
    let mut described = connect(&gw.addr, "", None).await.unwrap();
    let snapshot = next_json(&mut described).await;
    assert_eq!(
        schema_errors("WsSnapshot", &snapshot),
        Vec::<String>::new(),
        "{snapshot}"
    );
    assert!(snapshot["services"].as_object().unwrap().len() >= SERVICES);
    put_service(&gw, "ws-described").await;
    let event = loop {
        let m = next_json(&mut described).await;
        if m["type"] == "service_change" {
            break m;
        }
    };
    assert_eq!(
        schema_errors("WsEvent", &event),
        Vec::<String>::new(),
        "{event}"
    );

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

/// The value of an unlabelled sample of the gateway's `/metrics`.
async fn metric(addr: &str, name: &str) -> f64 {
    let r = HttpRequest::new("GET", "/metrics")
        .send(addr)
        .await
        .unwrap();
    r.text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A service whose events are about 32 KB (eight long labels), so a few dozen fill a
/// socket's buffers.
async fn put_big_service(gw: &Gateway, name: &str, round: usize) {
    let pad = format!("{round:04}{}", "x".repeat(3990));
    let labels: serde_json::Map<String, Value> =
        (0..8).map(|i| (format!("note.n{i}"), json!(pad))).collect();
    let r = HttpRequest::new("PUT", &format!("/api/v1/services/{name}"))
        .json(&json!({
            "image": "busybox:latest",
            "replicas": 0,
            "labels": labels,
        }))
        .send(&gw.addr)
        .await
        .unwrap();
    assert!(matches!(r.status, 200 | 201), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_a_reason_while_another_gets_every_event_in_order()
 {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    // A small queue (still larger than the batches 4 concurrent writers make), so a
    // few hundred events overflow it behind a full socket.
    let gw = Gateway::start(&[&cp.api_addr], &["--ws-client-queue", "64"])
        .await
        .unwrap();
    gw.wait_synced(Duration::from_secs(30)).await.unwrap();

    let mut normal = connect(&gw.addr, "?topic=service", None).await.unwrap();
    assert_eq!(next_json(&mut normal).await["type"], "initial_state");

    // The slow client: a tiny receive buffer, a completed handshake, then no read at
    // all while the connection stays open.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.addr.parse().unwrap()).await.unwrap();
    let request = format!("ws://{}/ws?topic=service", gw.addr)
        .into_client_request()
        .unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metric(&gw.addr, "constellation_gateway_websocket_clients").await < 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow client never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // As soon as the gateway counts it closed, the slow client starts reading: it
    // finds what its socket held, in order, then the close frame saying why (which
    // waits behind that data for a few seconds).
    let addr = gw.addr.clone();
    let slow_reader = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while metric(&addr, "constellation_gateway_websocket_slow_closes_total").await < 1.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "slow client never closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut last = 0;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), slow.next())
                .await
                .expect("the slow client's connection ends");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let m: Value = serde_json::from_str(text.as_str()).unwrap();
                    let index = m["index"].as_u64().unwrap();
                    // The snapshot first (index 0 on a fresh cluster), then events after it.
                    assert!(
                        index > last || m["type"] == "initial_state",
                        "index order: {index} after {last} ({})",
                        m["type"]
                    );
                    last = index;
                }
                Some(Ok(Message::Close(frame))) => {
                    return (last, frame.expect("a close frame with a reason"));
                }
                Some(Ok(_)) => {}
                other => panic!("expected the close frame, got {other:?}"),
            }
        }
    });

    const EVENTS: usize = 400;
    let reader = tokio::spawn(async move {
        let got = service_events(&mut normal, EVENTS).await;
        (normal, got)
    });
    for round in 0..EVENTS / 4 {
        let puts = (0..4).map(|i| {
            let gw = &gw;
            async move { put_big_service(gw, &format!("big-{i}"), round).await }
        });
        futures::future::join_all(puts).await;
    }
    let (mut normal, got) = reader.await.unwrap();
    assert_eq!(got.len(), EVENTS);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "index order: {got:?}"
    );

    let (last, close) = slow_reader.await.unwrap();
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.starts_with("too slow: "), "{}", close.reason);
    let at_least: u64 = close
        .reason
        .rsplit_once(">= ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no index in {:?}", close.reason.as_str()));
    assert!(
        last >= at_least,
        "received up to {last}, the reason says {at_least}"
    );
    assert!(last < got[EVENTS - 1].0, "the slow client missed the end");

    // The normal client is still served, and it is the only one left.
    assert_eq!(
        metric(&gw.addr, "constellation_gateway_websocket_clients").await,
        1.0
    );
    put_big_service(&gw, "after", 0).await;
    assert_eq!(service_events(&mut normal, 1).await[0].1, "after");
}

/// Unpadded base64url (RFC 4648 §5), as a browser client would encode its token.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A handshake with these extra headers: the socket and the answer's subprotocol, or
/// the HTTP status it was refused with.
async fn handshake(addr: &str, headers: &[(&str, &str)]) -> Result<(Socket, Option<String>), u16> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((socket, protocol))
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_passes_its_token_as_a_subprotocol_and_nothing_passes_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let read = "read-token-for-browsers-0001";
    let admin = "admin-token-for-tests-00001";
    let gw = Gateway::start(
        &[&cp.api_addr],
        &["--read-tokens", read, "--admin-tokens", admin],
    )
    .await
    .unwrap();
    let bearer = format!("Bearer {read}");
    gw.wait_synced_with(&[("authorization", &bearer)], Duration::from_secs(30))
        .await
        .unwrap();

    // Without a token, or with a wrong one: refused before the upgrade.
    assert_eq!(handshake(&gw.addr, &[]).await.err(), Some(401));
    assert_eq!(
        handshake(&gw.addr, &[("sec-websocket-protocol", "constellation.v1")])
            .await
            .err(),
        Some(401)
    );
    let wrong = format!(
        "constellation.v1, base64url.bearer.constellation.{}",
        base64url(b"not-a-configured-token-000")
    );
    assert_eq!(
        handshake(&gw.addr, &[("sec-websocket-protocol", &wrong)])
            .await
            .err(),
        Some(401)
    );
    // A token subprotocol alone would leave a browser without an answered protocol.
    let alone = format!(
        "base64url.bearer.constellation.{}",
        base64url(read.as_bytes())
    );
    assert_eq!(
        handshake(&gw.addr, &[("sec-websocket-protocol", &alone)])
            .await
            .err(),
        Some(400)
    );

    // A read token as a subprotocol: accepted, answered with constellation.v1 only.
    let offered = format!("constellation.v1, {alone}");
    let (mut socket, protocol) = handshake(&gw.addr, &[("sec-websocket-protocol", &offered)])
        .await
        .expect("accepted with a read token");
    assert_eq!(protocol.as_deref(), Some("constellation.v1"));
    assert_eq!(next_json(&mut socket).await["type"], "initial_state");

    // The Authorization header works as before.
    let (mut socket, protocol) = handshake(&gw.addr, &[("authorization", &bearer)])
        .await
        .expect("accepted with the header");
    assert_eq!(protocol, None);
    assert_eq!(next_json(&mut socket).await["type"], "initial_state");
}
