//! The comparison runner (`constellation-bench compare`) completes against a real etcd
//! cluster and real Serf agents and writes its results file: a short run (one second
//! per Raft level, five gossip members), so it proves the runner works on a fresh
//! machine, not how fast anything is.
//!
//! Without etcd, Serf or root (iptables) this fails when `CI` is set (CI installs
//! them and runs as root) and prints `SKIPPED` otherwise.

use constellation_tests::binaries::binary;
use std::time::Duration;

fn peers_runnable() -> bool {
    let runs = |binary: &str, arg: &str| {
        std::process::Command::new(binary)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    runs("etcd", "--version") && runs("serf", "version") && runs("iptables", "-L")
}

#[tokio::test]
async fn compare_runs_both_sides_and_writes_the_results_file() -> anyhow::Result<()> {
    if !peers_runnable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs etcd, serf and iptables as root (apt-get install -y etcd-server serf iptables)"
        );
        eprintln!("SKIPPED: needs etcd, serf and root for iptables");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results.json");
    let run = tokio::process::Command::new(binary("constellation-bench")?)
        .args(["compare", "--sections", "raft,gossip", "--rounds", "2"])
        .args([
            "--seconds",
            "1",
            "--clients",
            "1,4",
            "--gossip-members",
            "5",
        ])
        .args([
            "--gossip-rounds",
            "1",
            "--gossip-steady",
            "2",
            "--gossip-trials",
            "1",
        ])
        .arg("--out")
        .arg(&out)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run).await??;
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
    let gossip = &results["sections"]["gossip"]["sizes"][0];
    assert_eq!(gossip["members"], 5);
    for side in ["constellation", "serf"] {
        let bytes = gossip[side]["bytes_per_second_per_member"][0].as_f64();
        assert!(
            bytes.is_some_and(|b| b > 0.0),
            "{side}: iptables counted its gossip: {gossip}"
        );
        let detection = gossip[side]["detection_s"][0].as_f64();
        assert!(
            detection.is_some_and(|d| d > 0.0 && d < 60.0),
            "{side}: the killed member was reported: {gossip}"
        );
    }
    assert!(results["machine"]["cpus"].as_u64().is_some());
    // The runner stopped every etcd it started.
    let left = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("etcd --name .* --data-dir {}", dir.path().display()),
        ])
        .output()?;
    assert!(left.stdout.is_empty(), "etcd processes left behind");
    let chains = std::process::Command::new("iptables")
        .args(["-S", "OUTPUT"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&chains.stdout).contains("cbench-"),
        "accounting rules left behind"
    );
    Ok(())
}
