//! `constellation service rollback` against a real control plane: the previous spec
//! comes back as a new version, the update status says so, `service get` shows it,
//! and a service without a previous spec is refused with a clear message.

use constellation_proto::v1 as pb;
use constellation_tests::api::service;
use constellation_tests::binaries::{ControlPlane, cli, cli_ok as ok};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn rollback_brings_the_previous_spec_back_as_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();
    let addr = cp.api_addr.as_str();
    // No replicas: nothing to replace, so the rollback completes at once.
    let spec = dir.path().join("web.yaml");
    let write = |image: &str| {
        std::fs::write(&spec, format!("name: web\nimage: {image}\nreplicas: 0\n")).unwrap();
    };
    write("constellation-test/busybox:1");
    ok(addr, &["service", "apply", "-f", spec.to_str().unwrap()]);

    let refused = cli(addr, &["service", "rollback", "web"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no previous spec"),
        "the refusal says why"
    );

    write("constellation-test/busybox:2");
    ok(addr, &["service", "apply", "-f", spec.to_str().unwrap()]);
    assert_eq!(service(addr, "web").await.version, 2);

    let said = ok(addr, &["service", "rollback", "web"]);
    assert!(said.contains("version 3"), "{said}");
    let rolled = service(addr, "web").await;
    assert_eq!(rolled.version, 3);
    let image = rolled.spec.as_ref().map(|s| s.image.as_str());
    assert_eq!(image, Some("constellation-test/busybox:1"));

    let start = Instant::now();
    loop {
        let update = service(addr, "web")
            .await
            .status
            .and_then(|s| s.update)
            .unwrap_or_default();
        if update.state() == pb::UpdateState::RolledBack {
            assert_eq!((update.from_version, update.to_version), (2, 3));
            assert_eq!(update.message, "rolled back: requested");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not rolled back: {update:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = ok(addr, &["service", "get", "web"]);
    assert!(shown.contains("rolled back: requested"), "{shown}");
}
