//! The `constellation` CLI against a real control plane: apply from a YAML file, list,
//! status, then snapshot save, delete, restore, and the service is back.

use constellation_tests::binaries::{ControlPlane, cli, cli_ok as ok};

#[tokio::test(flavor = "multi_thread")]
async fn apply_status_and_snapshot_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let addr = cp.api_addr.as_str();

    let spec = dir.path().join("web.yaml");
    std::fs::write(
        &spec,
        "name: web\nimage: constellation-test/busybox:latest\nreplicas: 2\n\
         ports:\n  - container_port: 8080\nenv:\n  GREETING: hello\n",
    )
    .unwrap();
    ok(addr, &["service", "apply", "-f", spec.to_str().unwrap()]);
    assert!(ok(addr, &["service", "ls"]).contains("web"));
    let status = ok(addr, &["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["leader_id"], "1", "{status}");

    // A bad spec is refused with the field named, and exits non-zero.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: Bad_Name\nimage: busybox\n").unwrap();
    let refused = cli(addr, &["service", "apply", "-f", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("spec.name"));

    let backup = dir.path().join("backup.snap");
    ok(addr, &["snapshot", "save", backup.to_str().unwrap()]);
    ok(addr, &["service", "rm", "web"]);
    assert!(!ok(addr, &["service", "ls"]).contains("web"));
    let unforced = cli(addr, &["snapshot", "restore", backup.to_str().unwrap()]);
    assert!(
        !unforced.status.success(),
        "restore without --force must refuse"
    );
    ok(
        addr,
        &["snapshot", "restore", backup.to_str().unwrap(), "--force"],
    );
    let web = ok(addr, &["-o", "json", "service", "get", "web"]);
    assert!(web.contains("GREETING"), "{web}");
}
