//! A member snapshots when its log outgrows `--snapshot-after-mib`, long before the
//! entry count would make it, and resumes from that snapshot (and its count of the log
//! past it) after a crash. The voters of a cluster snapshot at different points.

use constellation_proto::v1 as pb;
use constellation_tests::api::client;
use constellation_tests::binaries::{ControlPlane, set_child_env};
use std::collections::HashMap;
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
    assert_no_snapshot(&mut cp, Duration::from_secs(2)).await;

    // The fourth passes it.
    put_config(&cp.api_addr, "c3").await;
    let built = assert_snapshot_at(&mut cp, LIMIT).await;
    // The snapshot holds the four configs.
    let size: usize = built["bytes"].parse().unwrap();
    assert!(size >= 4 * CONFIG_BYTES, "{built:?}");

    // The count starts again: one more config does not snapshot.
    put_config(&cp.api_addr, "c4").await;
    assert_no_snapshot(&mut cp, Duration::from_secs(2)).await;

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

    // The restarted member still counts c4, the log past its snapshot: two more
    // configs stay under the limit, the third passes it (without that count it would
    // take four).
    for i in 5..7 {
        put_config(&cp.api_addr, &format!("c{i}")).await;
    }
    assert_no_snapshot(&mut cp, Duration::from_secs(2)).await;
    put_config(&cp.api_addr, "c7").await;
    assert_snapshot_at(&mut cp, LIMIT).await;
}

/// `--snapshot-after-mib` in these tests.
const LIMIT: u64 = 1 << 20;

/// `cp` asks for a snapshot once its log grew past `threshold` bytes (and no later
/// than the config after), and builds it. Returns the built snapshot's log line.
async fn assert_snapshot_at(cp: &mut ControlPlane, threshold: u64) -> HashMap<String, String> {
    let trigger = cp
        .process
        .wait_for_log(
            "raft: the log outgrew its limit; snapshotting",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let bytes: u64 = trigger["bytes"].parse().unwrap();
    let slack = CONFIG_BYTES as u64 + 16 * 1024;
    assert!(
        (threshold..threshold + slack).contains(&bytes),
        "cp{}: want {threshold} to {}: {trigger:?}",
        cp.id,
        threshold + slack
    );
    cp.process
        .wait_for_log("raft store: built snapshot", Duration::from_secs(10))
        .await
        .unwrap()
}

/// `cp` builds no snapshot within `wait`.
async fn assert_no_snapshot(cp: &mut ControlPlane, wait: Duration) {
    let built = cp
        .process
        .wait_for_log("raft store: built snapshot", wait)
        .await;
    assert!(
        built.is_err(),
        "cp{}: an unexpected snapshot: {built:?}",
        cp.id
    );
}

#[tokio::test]
async fn the_voters_of_a_cluster_snapshot_at_different_points() {
    let dir = tempfile::tempdir().unwrap();
    set_child_env([("CONSTELLATION_SNAPSHOT_AFTER_MIB".into(), "1".into())]);
    let mut members = ControlPlane::start_cluster(dir.path(), 3).await.unwrap();

    // Each member learns its place among the three voters (ids 1, 2, 3).
    for (place, cp) in members.iter_mut().enumerate() {
        loop {
            let stagger = cp
                .process
                .wait_for_log(
                    "raft: staggering this member's snapshots",
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            if stagger["of"] == "3" {
                assert_eq!(stagger["place"], place.to_string(), "{stagger:?}");
                break;
            }
        }
    }

    // The member in place 2 counts 2/3 of the limit as grown before its first
    // snapshot, so it snapshots once the log holds a third of it: after the 2nd config
    // (600 KiB of log). Place 1 at two thirds, after the 3rd (900 KiB); place 0 at
    // the whole 1 MiB, after the 4th. Each snapshot is awaited before the next config.
    let addr = members[0].api_addr.clone();
    for (config, place) in [(1, None), (2, Some(2)), (3, Some(1)), (4, Some(0))] {
        put_config(&addr, &format!("c{config}")).await;
        let Some(place) = place else { continue };
        assert_snapshot_at(&mut members[place], LIMIT * (3 - place as u64) / 3).await;
    }
    // And each snapshotted once.
    for cp in &mut members {
        assert_no_snapshot(cp, Duration::from_secs(1)).await;
    }
}
