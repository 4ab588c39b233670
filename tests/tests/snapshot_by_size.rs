//! A member snapshots when its log outgrows `--snapshot-after-mib`, long before the
//! entry count would make it, and resumes from that snapshot after a crash.

use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::binaries::{ControlPlane, set_child_env};
use std::time::Duration;

/// Each config carries this much data, so a few entries pass the 1 MiB limit.
const CONFIG_BYTES: usize = 300 * 1024;

async fn put_config(addr: &str, name: &str) {
    let request = pb::PutConfigRequest {
        config: Some(pb::ConfigSpec {
            name: name.into(),
            data: vec![b'x'; CONFIG_BYTES],
            ..Default::default()
        }),
    };
    client(addr).put_config(request).await.expect("put config");
}

#[tokio::test]
async fn a_log_past_its_size_limit_is_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    set_child_env([("CONSTELLATION_SNAPSHOT_AFTER_MIB".into(), "1".into())]);
    let mut cp = ControlPlane::bootstrap(1, &dir.path().join("cp1"))
        .await
        .unwrap();

    // Three configs stay under 1 MiB of log: no snapshot yet (the default entry count,
    // 10,000, is far away).
    for i in 0..3 {
        put_config(&cp.api_addr, &format!("c{i}")).await;
    }
    let early = cp
        .process
        .wait_for_log("raft store: built snapshot", Duration::from_secs(2))
        .await;
    assert!(early.is_err(), "snapshot before the limit: {early:?}");

    // The fourth passes it.
    put_config(&cp.api_addr, "c3").await;
    let trigger = cp
        .process
        .wait_for_log(
            "raft: the log outgrew its size limit; snapshotting",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let bytes: u64 = trigger["bytes"].parse().unwrap();
    assert!(bytes >= 1 << 20, "{trigger:?}");
    let built = cp
        .process
        .wait_for_log("raft store: built snapshot", Duration::from_secs(10))
        .await
        .unwrap();
    // The snapshot holds the four configs.
    let size: usize = built["bytes"].parse().unwrap();
    assert!(size >= 4 * CONFIG_BYTES, "{built:?}");

    // The count starts again: one more config does not snapshot.
    put_config(&cp.api_addr, "c4").await;
    let again = cp
        .process
        .wait_for_log("raft store: built snapshot", Duration::from_secs(2))
        .await;
    assert!(again.is_err(), "snapshot below the limit: {again:?}");

    // A crashed member comes back from the snapshot and the log after it.
    cp.crash().await.unwrap();
    cp.restart().await.unwrap();
    let configs = client(&cp.api_addr)
        .list_configs(pb::ListConfigsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .configs;
    let mut names: Vec<_> = configs
        .iter()
        .filter_map(|c| c.spec.as_ref())
        .map(|s| (s.name.clone(), s.data.len()))
        .collect();
    names.sort();
    let want: Vec<_> = (0..5).map(|i| (format!("c{i}"), CONFIG_BYTES)).collect();
    assert_eq!(names, want);
}
