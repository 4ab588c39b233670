//! The comparison runner (`constellation-bench compare`) completes against a real etcd
//! cluster and writes its results file: a short run (one round, one second per level),
//! so it proves the runner works on a fresh machine, not how fast anything is.
//!
//! Without etcd this fails when `CI` is set (CI installs it) and prints
//! `SKIPPED: no etcd` otherwise.

use constellation_tests::binaries::binary;
use std::time::Duration;

fn etcd_installed() -> bool {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn compare_runs_both_sides_and_writes_the_results_file() -> anyhow::Result<()> {
    if !etcd_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is required in CI (apt-get install -y etcd-server)"
        );
        eprintln!("SKIPPED: no etcd");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results.json");
    let run = tokio::process::Command::new(binary("constellation-bench")?)
        .args([
            "compare",
            "--sections",
            "raft",
            "--rounds",
            "2",
            "--seconds",
            "1",
        ])
        .args(["--clients", "1,4", "--out"])
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "compare failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("writes/s, 4 clients"),
        "table printed:\n{stdout}"
    );

    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let levels = results["sections"]["raft"]["levels"]
        .as_array()
        .expect("raft levels");
    assert_eq!(levels.len(), 2);
    for level in levels {
        for side in ["constellation", "etcd"] {
            let rounds = level[side]["writes_per_second"].as_array().expect("rounds");
            assert_eq!(rounds.len(), 2, "{side}: one figure per round");
            assert!(
                rounds.iter().all(|w| w.as_f64().is_some_and(|w| w > 0.0)),
                "{side} completed writes in every round: {level}"
            );
        }
    }
    let table = results["table"].as_array().expect("table");
    let throughput = table
        .iter()
        .find(|row| row["metric"] == "writes/s, 1 clients")
        .expect("throughput row");
    let (ours, peer, ratio) = (
        throughput["constellation"].as_f64().unwrap(),
        throughput["peer"].as_f64().unwrap(),
        throughput["ratio"].as_f64().unwrap(),
    );
    assert!(
        (ratio - ours / peer).abs() < 1e-9,
        "ratio is ours over the peer's"
    );
    assert!(results["machine"]["cpus"].as_u64().is_some());
    // The runner stopped every etcd it started.
    let left = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("etcd --name .* --data-dir {}", dir.path().display()),
        ])
        .output()?;
    assert!(left.stdout.is_empty(), "etcd processes left behind");
    Ok(())
}
