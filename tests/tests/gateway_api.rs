//! The gateway's REST routes through a real control plane, real agents and the real
//! Docker engine: every route answers with its documented shape (golden files under
//! `tests/golden/gateway/`, compared as shapes: keys and value kinds, so names, ids,
//! indexes and timestamps do not matter), bad input answers 4xx with a JSON error
//! naming the field and nothing answers 5xx, every mutating route of the router's own
//! table refuses requests without an admin token, the event stream resumes from an
//! index, and the view follows a control-plane restart.
//!
//! `UPDATE_GOLDEN=1` rewrites the golden files from the current answers.

use constellation_gateway::api;
use constellation_tests::binaries::{Agent, ControlPlane, Gateway};
use constellation_tests::docker;
use constellation_tests::http::{HttpRequest, HttpResponse};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

// ---- golden shapes ----

/// The shape of a JSON value: objects keep their keys, arrays the union of their
/// elements' shapes, leaves become their kind (`<string>`, `<timestamp>`, `<number>`,
/// `<bool>`, null).
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => {
            let mut merged: Option<Value> = None;
            for item in items {
                let s = shape(item);
                merged = Some(match merged {
                    None => s,
                    Some(m) => union(m, s),
                });
            }
            Value::Array(merged.into_iter().collect())
        }
        Value::String(s) if humantime::parse_rfc3339(s).is_ok() => json!("<timestamp>"),
        Value::String(_) => json!("<string>"),
        Value::Number(_) => json!("<number>"),
        Value::Bool(_) => json!("<bool>"),
        Value::Null => Value::Null,
    }
}

fn union(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (k, v) in b {
                let merged = match a.remove(&k) {
                    Some(old) => union(old, v),
                    None => v,
                };
                a.insert(k, merged);
            }
            Value::Object(a)
        }
        (Value::Null, b) => b,
        (a, _) => a,
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/gateway")
}

/// Records one route's answer; all are compared at the end so one run reports every
/// difference.
#[derive(Default)]
struct Golden {
    answers: BTreeMap<String, Value>,
    /// The answers themselves, checked against the OpenAPI document.
    bodies: BTreeMap<String, (u16, Value)>,
}

/// The route (method, path template) each golden answer comes from.
const GOLDEN_ROUTES: &[(&str, &str, &str)] = &[
    ("put_service", "put", "/api/v1/services/{name}"),
    ("delete_service", "delete", "/api/v1/services/{name}"),
    ("health", "get", "/health"),
    ("status", "get", "/api/v1/status"),
    ("nodes", "get", "/api/v1/nodes"),
    ("node", "get", "/api/v1/nodes/{name}"),
    ("node_missing", "get", "/api/v1/nodes/{name}"),
    ("services", "get", "/api/v1/services"),
    ("service", "get", "/api/v1/services/{name}"),
    ("service_missing", "get", "/api/v1/services/{name}"),
    ("allocations", "get", "/api/v1/allocations"),
    ("allocations_of_service", "get", "/api/v1/allocations"),
    ("raft_status", "get", "/api/v1/raft/status"),
    ("raft_leader", "get", "/api/v1/raft/leader"),
    ("metrics", "get", "/api/v1/metrics"),
    ("leases", "get", "/api/v1/leases"),
    ("lease_acquire", "post", "/api/v1/leases/{name}/acquire"),
    ("lease_renew", "post", "/api/v1/leases/{name}/renew"),
    ("lease_release", "post", "/api/v1/leases/{name}/release"),
    ("cordon", "post", "/api/v1/nodes/{name}/cordon"),
    ("uncordon", "post", "/api/v1/nodes/{name}/uncordon"),
    ("drain", "post", "/api/v1/nodes/{name}/drain"),
    ("migrations", "get", "/api/v1/migrations"),
    ("migration", "get", "/api/v1/migrations/{service}"),
    ("migration_missing", "get", "/api/v1/migrations/{service}"),
    ("migration_create", "post", "/api/v1/migrations"),
    ("events_line", "get", "/api/v1/events"),
    ("rollback", "post", "/api/v1/services/{name}/rollback"),
];

/// What the OpenAPI document says about each answer: every one validates against the
/// schema its route declares for its status (or the default, for errors).
fn openapi_errors(bodies: &BTreeMap<String, (u16, Value)>) -> Vec<String> {
    let doc = constellation_gateway::openapi::document();
    let mut errors = Vec::new();
    for (name, (status, body)) in bodies {
        let Some((_, method, path)) = GOLDEN_ROUTES.iter().find(|(n, _, _)| n == name) else {
            errors.push(format!("{name}: no route in GOLDEN_ROUTES"));
            continue;
        };
        let responses = &doc["paths"][*path][*method]["responses"];
        let response = match responses.get(status.to_string()) {
            Some(r) => r,
            None => &responses["default"],
        };
        let Some(content) = response["content"]
            .as_object()
            .and_then(|c| c.values().next())
        else {
            errors.push(format!("{name}: {method} {path} {status} has no schema"));
            continue;
        };
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [content["schema"]],
        });
        let validator = jsonschema::validator_for(&schema).expect("the document's schemas compile");
        for e in validator.iter_errors(body) {
            errors.push(format!(
                "{name} ({method} {path} {status}): {e} at {}",
                e.instance_path()
            ));
        }
    }
    errors
}

impl Golden {
    fn record(&mut self, name: &str, response: &HttpResponse) {
        let body = response.json();
        assert!(!body.is_null(), "{name}: not JSON: {}", response.text());
        self.answers.insert(
            name.to_owned(),
            json!({ "status": response.status, "body": shape(&body) }),
        );
        self.bodies.insert(name.to_owned(), (response.status, body));
    }

    fn check(self) {
        let errors = openapi_errors(&self.bodies);
        assert!(
            errors.is_empty(),
            "answers that the OpenAPI document describes otherwise:\n{}",
            errors.join("\n")
        );
        let dir = golden_dir();
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        let mut differences = Vec::new();
        for (name, actual) in &self.answers {
            let path = dir.join(format!("{name}.json"));
            let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(expected) if expected == text => {}
                Ok(expected) => differences.push(format!(
                    "{name}: differs from {}\n--- expected\n{expected}\n--- actual\n{text}",
                    path.display()
                )),
                Err(e) => differences.push(format!("{name}: {}: {e}", path.display())),
            }
        }
        assert!(
            differences.is_empty(),
            "golden shapes differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
            differences.join("\n")
        );
    }
}

// ---- helpers ----

async fn get(gw: &Gateway, path: &str) -> HttpResponse {
    HttpRequest::new("GET", path).send(&gw.addr).await.unwrap()
}

async fn send(gw: &Gateway, method: &str, path: &str, body: Value) -> HttpResponse {
    HttpRequest::new(method, path)
        .json(&body)
        .send(&gw.addr)
        .await
        .unwrap()
}

/// Polls `path` until `ready` holds for its JSON, at most `timeout`.
async fn wait_for(
    gw: &Gateway,
    path: &str,
    timeout: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let r = get(gw, path).await;
        let body = r.json();
        if r.status == 200 && ready(&body) {
            return body;
        }
        assert!(
            start.elapsed() < timeout,
            "{path}: not ready in {timeout:?}: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn web(image: &str) -> Value {
    json!({
        "image": image,
        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "replicas": 1,
        "ports": [{"container_port": 8080, "host_ip": "127.0.0.1", "name": "http"}],
        "labels": {"traefik.enable": "true"},
        "health_check": {
            "test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"],
            "interval": "1s", "timeout": "1s", "retries": 3
        },
        "stop_grace_period": "1s"
    })
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_documented_shape() {
    let Some(_docker) = docker::connect_or_skip("gateway_shapes").await.unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let node_a = docker::unique_name("gwa");
    let node_b = docker::unique_name("gwb");
    let _containers = docker::NodeContainersGuard::new(&[&node_a, &node_b]);
    let _a = Agent::start(&node_a, &cp.api_addr, &dir.path().join("sa"))
        .await
        .unwrap();
    let _b = Agent::start(&node_b, &cp.api_addr, &dir.path().join("sb"))
        .await
        .unwrap();
    let gw = Gateway::start(&[&cp.api_addr], &[]).await.unwrap();
    gw.wait_synced(Duration::from_secs(30)).await.unwrap();
    let mut golden = Golden::default();

    let service = docker::unique_name("web");
    let put = send(
        &gw,
        "PUT",
        &format!("/api/v1/services/{service}"),
        web(&docker::test_image()),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());
    golden.record("put_service", &put);
    let again = send(
        &gw,
        "PUT",
        &format!("/api/v1/services/{service}"),
        web(&docker::test_image()),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        again.json()["changed"],
        Value::Null,
        "unchanged (false is omitted)"
    );

    wait_for(&gw, "/api/v1/nodes", Duration::from_secs(30), |b| {
        b["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["ready"] == true))
    })
    .await;
    wait_for(
        &gw,
        &format!("/api/v1/services/{service}"),
        Duration::from_secs(90),
        |b| b["healthy_count"] == 1,
    )
    .await;

    golden.record("health", &get(&gw, "/health").await);
    for (name, path) in [
        ("status", "/api/v1/status".to_owned()),
        ("nodes", "/api/v1/nodes".to_owned()),
        ("services", "/api/v1/services".to_owned()),
        ("service", format!("/api/v1/services/{service}")),
        ("allocations", "/api/v1/allocations".to_owned()),
        (
            "allocations_of_service",
            format!("/api/v1/allocations?service={service}&include_terminal=true"),
        ),
        ("raft_status", "/api/v1/raft/status".to_owned()),
        ("raft_leader", "/api/v1/raft/leader".to_owned()),
        ("metrics", "/api/v1/metrics".to_owned()),
    ] {
        let r = get(&gw, &path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        golden.record(name, &r);
    }
    // The node running the replica, with its instance listed.
    let allocs = get(&gw, &format!("/api/v1/allocations?service={service}"))
        .await
        .json();
    let running_on = allocs["allocations"][0]["node_name"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = if running_on == node_a {
        &node_b
    } else {
        &node_a
    };
    let node = get(&gw, &format!("/api/v1/nodes/{running_on}")).await;
    assert_eq!(node.status, 200);
    assert_eq!(node.json()["services"][0]["service_name"], service.as_str());
    golden.record("node", &node);

    // Not found: JSON errors, 404.
    for (name, path) in [
        ("service_missing", "/api/v1/services/no-such-service"),
        ("node_missing", "/api/v1/nodes/no-such-node"),
        ("migration_missing", "/api/v1/migrations/no-such-service"),
    ] {
        let r = get(&gw, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        golden.record(name, &r);
    }

    // Leases.
    let acquired = send(
        &gw,
        "POST",
        "/api/v1/leases/gw-test/acquire",
        json!({"holder": "h1", "ttl": "30s"}),
    )
    .await;
    assert_eq!(acquired.status, 200, "{}", acquired.text());
    assert_eq!(acquired.json()["acquired"], true);
    golden.record("lease_acquire", &acquired);
    let token = acquired.json()["lease"]["fencing_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let renewed = send(
        &gw,
        "POST",
        "/api/v1/leases/gw-test/renew",
        json!({"holder": "h1", "fencing_token": token}),
    )
    .await;
    assert_eq!(renewed.status, 200, "{}", renewed.text());
    golden.record("lease_renew", &renewed);
    wait_for(&gw, "/api/v1/leases", Duration::from_secs(5), |b| {
        b["leases"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["name"] == "gw-test"))
    })
    .await;
    golden.record("leases", &get(&gw, "/api/v1/leases").await);
    let released = send(
        &gw,
        "POST",
        "/api/v1/leases/gw-test/release",
        json!({"holder": "h1", "fencing_token": token}),
    )
    .await;
    assert_eq!(released.status, 200, "{}", released.text());
    golden.record("lease_release", &released);

    // Cordon and uncordon any node (not only a "local" one).
    let cordoned = send(
        &gw,
        "POST",
        &format!("/api/v1/nodes/{other}/cordon"),
        Value::Null,
    )
    .await;
    assert_eq!(cordoned.status, 200, "{}", cordoned.text());
    assert_eq!(cordoned.json()["message"], format!("Node {other} cordoned"));
    assert_eq!(cordoned.json()["cordoned"], true);
    golden.record("cordon", &cordoned);
    let uncordoned = send(
        &gw,
        "POST",
        &format!("/api/v1/nodes/{other}/uncordon"),
        Value::Null,
    )
    .await;
    assert_eq!(uncordoned.status, 200, "{}", uncordoned.text());
    assert_eq!(uncordoned.json()["cordoned"], false);
    golden.record("uncordon", &uncordoned);

    // Migrations: the predecessor's body, 202 with the migration.
    let created = send(
        &gw,
        "POST",
        "/api/v1/migrations",
        json!({"service_name": service, "target_node": other}),
    )
    .await;
    assert_eq!(created.status, 202, "{}", created.text());
    golden.record("migration_create", &created);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    wait_for(&gw, "/api/v1/migrations", Duration::from_secs(5), |b| {
        b["migrations"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == id.as_str()))
    })
    .await;
    golden.record("migrations", &get(&gw, "/api/v1/migrations").await);
    let latest = get(&gw, &format!("/api/v1/migrations/{service}")).await;
    assert_eq!(latest.status, 200, "{}", latest.text());
    assert_eq!(latest.json()["service_name"], service.as_str());
    golden.record("migration", &latest);

    // The event stream: its first line replays from the oldest event.
    let mut stream = HttpRequest::new("GET", "/api/v1/events?index=0&topic=service")
        .open(&gw.addr)
        .await
        .unwrap();
    assert_eq!(stream.status, 200);
    let line = stream.next_line().await.unwrap().unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    golden.answers.insert(
        "events_line".into(),
        json!({"status": 200, "body": shape(&first)}),
    );
    golden
        .bodies
        .insert("events_line".into(), (200, first.clone()));
    drop(stream);

    // A changed spec, then a rollback to the previous one (as a new version). On a
    // service scaled to zero, so that no replica's version shows in the answer's shape.
    let idle = format!("{service}-rb");
    let mut spec = web(&docker::test_image());
    spec["replicas"] = json!(0);
    for env in [json!({}), json!({"GREETING": "changed"})] {
        spec["env"] = env;
        let put = send(
            &gw,
            "PUT",
            &format!("/api/v1/services/{idle}"),
            spec.clone(),
        )
        .await;
        assert!(matches!(put.status, 200 | 201), "{}", put.text());
    }
    let rolled = HttpRequest::new("POST", &format!("/api/v1/services/{idle}/rollback"))
        .send(&gw.addr)
        .await
        .unwrap();
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    assert!(
        rolled.json()["service"]["spec"]["env"].is_null(),
        "{}",
        rolled.text()
    );
    golden.record("rollback", &rolled);
    let deleted = HttpRequest::new("DELETE", &format!("/api/v1/services/{idle}"))
        .send(&gw.addr)
        .await
        .unwrap();
    assert_eq!(deleted.status, 200, "{}", deleted.text());

    // Drain, then delete.
    let drained = send(
        &gw,
        "POST",
        &format!("/api/v1/nodes/{other}/drain"),
        json!({"deadline": "60s"}),
    )
    .await;
    assert_eq!(drained.status, 200, "{}", drained.text());
    golden.record("drain", &drained);
    let deleted = HttpRequest::new("DELETE", &format!("/api/v1/services/{service}"))
        .send(&gw.addr)
        .await
        .unwrap();
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    golden.record("delete_service", &deleted);
    wait_for(&gw, "/api/v1/services", Duration::from_secs(5), |b| {
        b["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["service_name"] != service.as_str()))
    })
    .await;
    assert_eq!(
        get(&gw, &format!("/api/v1/services/{service}"))
            .await
            .status,
        404
    );

    // The OpenAPI document describes every route of the table.
    let openapi = get(&gw, "/api/v1/openapi.json").await.json();
    assert_eq!(openapi["openapi"], "3.1.0");
    for entry in api::table() {
        let method = entry.route.method.as_str().to_lowercase();
        assert!(
            openapi["paths"][entry.route.path][&method].is_object(),
            "{}",
            entry.route.path
        );
    }

    // Prometheus text: per-route counters under the route template, view gauges.
    let metrics = get(&gw, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for expected in [
        "constellation_gateway_requests_total{method=\"GET\",route=\"/api/v1/services/{name}\",status=\"2xx\"}",
        "constellation_gateway_request_duration_seconds_bucket{method=\"PUT\",route=\"/api/v1/services/{name}\",status=\"2xx\",le=\"+Inf\"}",
        "constellation_gateway_view_fresh 1",
        "constellation_gateway_websocket_clients 0",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }

    golden.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_4xx_json_naming_the_field_and_nothing_answers_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let gw = Gateway::start(&[&cp.api_addr], &[]).await.unwrap();
    gw.wait_synced(Duration::from_secs(30)).await.unwrap();
    let image = docker::test_image();

    let raw = |method: &str, path: &str, body: &[u8]| {
        HttpRequest::new(method, path)
            .header("content-type", "application/json")
            .raw_body(body.to_vec())
    };
    let json_body =
        |method: &str, path: &str, body: Value| HttpRequest::new(method, path).json(&body);
    let cases: Vec<(HttpRequest, u16, &str)> = vec![
        (
            raw("PUT", "/api/v1/services/web", b"{\"image\":"),
            400,
            "body",
        ),
        (raw("PUT", "/api/v1/services/web", b"[1,2]"), 400, "body"),
        (raw("PUT", "/api/v1/services/web", b""), 400, "body"),
        (
            raw("PUT", "/api/v1/services/web", &vec![b' '; 2 << 20]),
            413,
            "body",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web",
                json!({"image": image, "bogus": 1}),
            ),
            400,
            "spec.bogus",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web",
                json!({"image": image, "replicas": "many"}),
            ),
            400,
            "spec.replicas",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web",
                json!({"image": image, "ports": [{"container_port": 70000}]}),
            ),
            400,
            "spec.ports[0].container_port",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web",
                json!({"name": "other", "image": image}),
            ),
            400,
            "spec.name",
        ),
        (
            json_body("PUT", "/api/v1/services/web", json!({"image": ""})),
            400,
            "spec.image",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/Not_A_Label",
                json!({"image": image}),
            ),
            400,
            "spec.name",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web?dry_run=perhaps",
                json!({"image": image}),
            ),
            400,
            "dry_run",
        ),
        (
            json_body(
                "PUT",
                "/api/v1/services/web?expected_version=-1",
                json!({"image": image}),
            ),
            400,
            "expected_version",
        ),
        (
            HttpRequest::new("GET", "/api/v1/services/a%2Fb"),
            400,
            "name",
        ),
        (
            HttpRequest::new("GET", "/api/v1/allocations?bogus=1"),
            400,
            "bogus",
        ),
        (
            HttpRequest::new("GET", "/api/v1/allocations?include_terminal=maybe"),
            400,
            "include_terminal",
        ),
        (
            HttpRequest::new("GET", "/api/v1/allocations?service=a%20b"),
            400,
            "service",
        ),
        (
            HttpRequest::new("GET", "/api/v1/events?index=abc"),
            400,
            "index",
        ),
        (
            HttpRequest::new("GET", "/api/v1/events?topic=nope"),
            400,
            "topic",
        ),
        (
            json_body("POST", "/api/v1/migrations", json!({})),
            400,
            "service_name",
        ),
        (
            json_body(
                "POST",
                "/api/v1/migrations",
                json!({"service_name": "web", "priority": "high"}),
            ),
            400,
            "priority",
        ),
        (
            json_body(
                "POST",
                "/api/v1/leases/l1/acquire",
                json!({"holder": "h", "ttl": "soon"}),
            ),
            400,
            "ttl",
        ),
        (
            json_body("POST", "/api/v1/leases/l1/acquire", json!({"ttl": "10s"})),
            400,
            "holder",
        ),
        (
            json_body(
                "POST",
                "/api/v1/leases/l1/acquire",
                json!({"name": "l2", "holder": "h", "ttl": "10s"}),
            ),
            400,
            "name",
        ),
        (
            json_body("POST", "/api/v1/nodes/n1/drain", json!({"deadline": 5})),
            400,
            "deadline",
        ),
    ];
    let mut failures = Vec::new();
    for (request, status, field) in cases {
        let r = request.send(&gw.addr).await.unwrap();
        let body = r.json();
        let named = body["field"].as_str().is_some_and(|f| f == field)
            || body["violations"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["field"] == field));
        if r.status != status
            || !named
            || body["code"].as_str().is_none()
            || body["message"].as_str().is_none()
        {
            failures.push(format!(
                "{} {}: expected {status} naming {field:?}, got {} {}",
                request.method,
                request.path,
                r.status,
                r.text()
            ));
        }
    }
    // Not found and conflicts are 4xx too.
    for (request, status) in [
        (
            json_body("POST", "/api/v1/nodes/no-such-node/cordon", Value::Null),
            404,
        ),
        (
            HttpRequest::new("DELETE", "/api/v1/services/no-such-service"),
            404,
        ),
        (
            json_body(
                "POST",
                "/api/v1/leases/none/renew",
                json!({"holder": "h", "fencing_token": "9"}),
            ),
            404,
        ),
        (HttpRequest::new("PATCH", "/api/v1/services/web"), 405),
        (HttpRequest::new("GET", "/api/v2/nothing"), 404),
    ] {
        let r = request.send(&gw.addr).await.unwrap();
        if r.status != status || r.json()["code"].as_str().is_none() {
            failures.push(format!(
                "{} {}: expected {status}, got {} {}",
                request.method,
                request.path,
                r.status,
                r.text()
            ));
        }
    }
    // Every route of the router's table with garbage: never a 5xx.
    let bodies: [&[u8]; 4] = [
        b"",
        b"\x00\xff\xfe",
        b"{\"name\": {\"deep\": [[[[]]]]}}",
        b"null",
    ];
    for entry in api::table() {
        let path = entry
            .route
            .path
            .replace("{name}", "x-1")
            .replace("{service}", "x-1");
        for body in bodies {
            let request =
                HttpRequest::new(entry.route.method.as_str(), &path).raw_body(body.to_vec());
            let status = if path.ends_with("/events") {
                request.open(&gw.addr).await.unwrap().status
            } else {
                request.send(&gw.addr).await.unwrap().status
            };
            if status >= 500 {
                failures.push(format!(
                    "{} {path} with {body:?}: {status}",
                    entry.route.method
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_route_of_the_router_refuses_without_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let admin = "admin-token-0123456789";
    let read = "read-token-0123456789";
    let gw = Gateway::start(
        &[&cp.api_addr],
        &["--admin-tokens", admin, "--read-tokens", read],
    )
    .await
    .unwrap();
    let bearer = format!("Bearer {read}");
    gw.wait_synced_with(&[("authorization", &bearer)], Duration::from_secs(30))
        .await
        .unwrap();

    let table = api::table();
    let mutating: Vec<_> = table.iter().filter(|e| e.route.method != "GET").collect();
    assert!(mutating.len() >= 9, "the table lists the mutating routes");
    let mut failures = Vec::new();
    for entry in &table {
        let route = &entry.route;
        let path = route
            .path
            .replace("{name}", "x-1")
            .replace("{service}", "x-1");
        let request = HttpRequest::new(route.method.as_str(), &path).json(&json!({}));
        let streaming = path.ends_with("/events");
        let status_of = |request: HttpRequest| {
            let addr = gw.addr.clone();
            async move {
                if streaming {
                    let stream = request.open(&addr).await.unwrap();
                    HttpResponse {
                        status: stream.status,
                        headers: stream.headers.clone(),
                        body: if stream.status == 200 {
                            Vec::new()
                        } else {
                            let mut stream = stream;
                            stream.read_body().await.unwrap()
                        },
                    }
                } else {
                    request.send(&addr).await.unwrap()
                }
            }
        };
        let none = status_of(request.clone()).await;
        let with_read = status_of(request.clone().bearer(read)).await;
        let wrong = status_of(request.clone().bearer("not-a-known-token-at-all")).await;
        let with_admin = status_of(request.clone().bearer(admin)).await.status;
        let public = route.access == constellation_gateway::auth::Access::Public;
        if route.method != "GET" {
            if none.status != 401 || with_read.status != 403 || wrong.status != 401 {
                failures.push(format!(
                    "{} {}: without token {}, read token {}, unknown token {}",
                    route.method, route.path, none.status, with_read.status, wrong.status
                ));
            }
            if none.json()["code"] != "unauthenticated"
                || with_read.json()["code"] != "permission_denied"
            {
                failures.push(format!(
                    "{} {}: error codes {} / {}",
                    route.method,
                    route.path,
                    none.text(),
                    with_read.text()
                ));
            }
        } else if !public && none.status != 401 {
            failures.push(format!(
                "{} {}: read route without token: {}",
                route.method, route.path, none.status
            ));
        }
        if with_admin == 401 || with_admin == 403 {
            failures.push(format!(
                "{} {}: admin token refused ({with_admin})",
                route.method, route.path
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_from_an_index_and_the_view_follows_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let gw = Gateway::start(&[&cp.api_addr], &["--stale-after", "1s"])
        .await
        .unwrap();
    gw.wait_synced(Duration::from_secs(30)).await.unwrap();
    let image = docker::test_image();
    for name in ["ev-a", "ev-b", "ev-c"] {
        let r = send(
            &gw,
            "PUT",
            &format!("/api/v1/services/{name}"),
            json!({"image": image, "replicas": 0}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }

    // Everything from the start, service events only.
    let lines = |from: u64| {
        let addr = gw.addr.clone();
        async move {
            let mut stream =
                HttpRequest::new("GET", &format!("/api/v1/events?index={from}&topic=service"))
                    .open(&addr)
                    .await
                    .unwrap();
            assert_eq!(stream.status, 200);
            let mut events = Vec::new();
            while events.len() < 3 {
                let Ok(Ok(Some(line))) =
                    tokio::time::timeout(Duration::from_secs(5), stream.next_line()).await
                else {
                    break;
                };
                let value: Value = serde_json::from_str(&line).unwrap();
                for e in value["events"].as_array().cloned().unwrap_or_default() {
                    events.push(e);
                }
            }
            events
        }
    };
    let all = lines(0).await;
    let names: Vec<&str> = all
        .iter()
        .map(|e| e["service"]["service"]["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ev-a", "ev-b", "ev-c"]);
    let index = |e: &Value| e["index"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(all.windows(2).all(|w| index(&w[0]) < index(&w[1])));
    // Resuming after the first event gives exactly the two it missed.
    let rest = lines(index(&all[0])).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(rest, all[1..]);

    // The control plane goes away: the view turns stale, reads still answer.
    cp.crash().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = get(&gw, "/api/v1/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["fresh"], false);
    assert_eq!(r.header("x-constellation-fresh"), Some("false"));

    // Back: the view resumes and sees a write made after the restart.
    cp.restart().await.unwrap();
    let r = {
        let start = Instant::now();
        loop {
            let r = send(
                &gw,
                "PUT",
                "/api/v1/services/ev-d",
                json!({"image": image, "replicas": 0}),
            )
            .await;
            if r.status < 500 || start.elapsed() > Duration::from_secs(30) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(r.status, 201, "{}", r.text());
    wait_for(
        &gw,
        "/api/v1/services/ev-d",
        Duration::from_secs(30),
        |_| true,
    )
    .await;
    wait_for(&gw, "/api/v1/status", Duration::from_secs(30), |b| {
        b["fresh"] == true
    })
    .await;
}
