//! The comparison runner (`constellation-bench compare`) completes every section
//! against the real peers (etcd, Serf, the docker CLI, the multi-host harness) and
//! writes its results file: a short run (one second per Raft level, five gossip
//! members, three containers, one host kill), so it proves the runner works on a fresh
//! machine, not how fast anything is.
//!
//! Without etcd, Serf, Docker or root (iptables, network namespaces) this fails when
//! `CI` is set (CI installs them and runs as root) and prints `SKIPPED` otherwise.

use constellation_tests::binaries::binary;
use std::time::Duration;

fn peers_runnable() -> bool {
    let runs = |binary: &str, arg: &str| {
        std::process::Command::new(binary)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    runs("etcd", "--version")
        && runs("serf", "version")
        && runs("iptables", "-L")
        && runs("docker", "info")
}

#[tokio::test]
async fn compare_runs_both_sides_and_writes_the_results_file() -> anyhow::Result<()> {
    if !peers_runnable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs etcd, serf, Docker and root (apt-get install -y etcd-server serf)"
        );
        eprintln!("SKIPPED: needs etcd, serf, Docker and root");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results.json");
    let run = tokio::process::Command::new(binary("constellation-bench")?)
        .args([
            "compare",
            "--sections",
            "raft,gossip,containers,failover,traefik",
        ])
        .args([
            "--rounds",
            "2",
            "--containers",
            "3",
            "--failover-trials",
            "1",
        ])
        .args(["--traefik-services", "100", "--traefik-seconds", "1"])
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
        .arg("--logs-dir")
        .arg(dir.path().join("logs"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run).await??;
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

    // The members' log lines were kept.
    let cp1 = std::fs::read_to_string(dir.path().join("logs/cp1.log"))?;
    assert!(
        cp1.lines().any(|l| l.contains("\"control plane serving\"")),
        "cp1.log: {}",
        &cp1[..cp1.len().min(2000)]
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
    let containers = &results["sections"]["containers"];
    assert_eq!(
        containers["constellation_s"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(containers["agent_rss_kib"].as_u64().is_some_and(|k| k > 0));
    let failover = &results["sections"]["failover"];
    for milestone in [
        "kill_to_down_s",
        "kill_to_replacement_healthy_s",
        "kill_to_traefik_document_s",
    ] {
        let trials = failover[milestone].as_array().expect("failover trials");
        assert_eq!(trials.len(), 1, "{milestone}: {failover}");
    }
    let traefik = &results["sections"]["traefik"];
    assert_eq!(
        traefik["polls"].as_array().map(Vec::len),
        Some(6),
        "{traefik}"
    );
    assert_eq!(
        traefik["health_change_to_document_ms"]
            .as_array()
            .map(Vec::len),
        Some(20)
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
    let chains = std::process::Command::new("iptables")
        .args(["-S", "OUTPUT"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&chains.stdout).contains("cbench-"),
        "accounting rules left behind"
    );
    Ok(())
}
