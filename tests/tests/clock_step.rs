//! A step of the hosts' wall clock in the middle of a rolling update does not change
//! its outcome. The control plane and the agent run under libfaketime (Debian's
//! `faketime`), whose offset the test moves: five minutes forward just after the
//! broken version is applied, then ten minutes back while it rolls back. A fresh
//! machine's first NTP sync does the same to a running cluster.
//!
//! Before the control plane's clock was made step-proof (`controlplane::clock`), the
//! step forward failed the new replica at once as "not healthy within the healthy
//! deadline" (or left the update stuck), and the step back froze every monitor period
//! for as long as the step.
//!
//! Alone in its test binary: the faketime environment is process-wide in the harness.

use constellation_proto::v1 as pb;
use constellation_tests::api::{allocations, apply_service, is_healthy, service, update_state};
use constellation_tests::binaries::{OneNode, set_child_env};
use constellation_tests::docker;
use constellation_tests::specs::rolling_http_service;
use constellation_tests::wait_until;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where Debian's `faketime` package puts the multi-threaded preload library.
const FAKETIME_LIBRARIES: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

/// The environment that runs a process under libfaketime with its wall clock offset
/// by the contents of `offset_file` (re-read on every call), its monotonic clock real.
fn faketime_env(library: &Path, offset_file: &Path) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
        ("DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

/// Seconds since the epoch as `date` sees them under `env`: proof that the offset
/// reaches processes started with it.
fn faked_seconds(env: &[(String, String)]) -> i64 {
    let out = std::process::Command::new("date")
        .arg("+%s")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("date +%s prints seconds")
}

fn real_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn set_offset(file: &Path, seconds: i64) {
    std::fs::write(file, format!("{seconds:+}\n")).expect("write the faketime offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_during_a_rolling_update_does_not_change_its_outcome() {
    let Some(_docker) = docker::connect_or_skip("clock_step").await.unwrap() else {
        return;
    };
    let Some(library) = FAKETIME_LIBRARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        assert!(
            !docker::in_ci(),
            "libfaketime is required in CI: apt-get install -y faketime (.ci/run does)"
        );
        eprintln!("==== SKIPPED: no libfaketime (apt-get install -y faketime) ====");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime-offset");
    let env = faketime_env(&library, &offset);
    set_offset(&offset, 300);
    let seen = faked_seconds(&env) - real_seconds();
    assert!(
        (295..=305).contains(&seen),
        "faketime offset not applied: {seen} s"
    );
    set_offset(&offset, 0);
    set_child_env(env);

    let cluster = OneNode::start(dir.path(), "clock").await.unwrap();
    let cp = &cluster.cp;
    let name = docker::unique_name("clockweb");
    // Its healthy deadline (20 s) is far shorter than the step forward, its monitor
    // period (1 s) far shorter than the step back: either step, seen by the control
    // plane, would decide the update.
    let spec = rolling_http_service(&name);
    apply_service(&cp.api_addr, spec.clone()).await;
    wait_until(Duration::from_secs(40), "two healthy replicas", || async {
        let live = allocations(&cp.api_addr, &name).await;
        live.len() == 2 && live.iter().all(is_healthy)
    })
    .await;
    let original = service(&cp.api_addr, &name).await;

    // The new version never passes its health check.
    let mut broken = spec.clone();
    broken.command = ["sh", "-c", "exec sleep 3600"].map(String::from).to_vec();
    apply_service(&cp.api_addr, broken).await;
    set_offset(&offset, 300);
    wait_until(Duration::from_secs(40), "rolling back", || async {
        update_state(&service(&cp.api_addr, &name).await) == pb::UpdateState::RollingBack
    })
    .await;
    set_offset(&offset, -300);
    wait_until(Duration::from_secs(40), "rolled back", || async {
        let live = allocations(&cp.api_addr, &name).await;
        update_state(&service(&cp.api_addr, &name).await) == pb::UpdateState::RolledBack
            && live.len() == 2
            && live.iter().all(is_healthy)
    })
    .await;

    let rolled = service(&cp.api_addr, &name).await;
    assert_eq!(rolled.spec, original.spec, "the spec is the original again");
    let update = rolled.status.and_then(|s| s.update).expect("update status");
    assert!(
        update.message.contains("health check failing")
            && !update.message.contains("healthy deadline"),
        "the broken version failed for what it did, not for the clock: {update:?}"
    );
    // The update's own times stay in order, and within a few seconds' slew of the
    // real time it took, whatever the clock did.
    let (started, completed) = (
        update.started_at.expect("started_at"),
        update.completed_at.expect("completed_at"),
    );
    let took = completed.seconds - started.seconds;
    assert!(
        (0..60).contains(&took),
        "update took {took} s by its own times"
    );
}
