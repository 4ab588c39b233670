//! The example configuration files under deploy/config are read by the binaries they
//! are for, with no unknown key and every value valid.

use constellation_proto::process::layered;
use std::path::{Path, PathBuf};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config")
        .join(name)
}

#[test]
fn controlplane_example_resolves() {
    use constellation_controlplane::config::{Flags, Start};
    let flags: Flags = layered(Some(&example("controlplane.yaml")), &Flags::default()).unwrap();
    let config = flags.resolve().unwrap();
    assert_eq!(config.id, 1);
    assert_eq!(config.start, Start::Bootstrap);
    assert_eq!(config.api_listen.to_string(), "127.0.0.1:7400");
}

#[test]
fn agent_example_resolves() {
    use constellation_nodeagent::config::Flags;
    let flags: Flags = layered(Some(&example("agent.yaml")), &Flags::default()).unwrap();
    let config = flags.resolve().unwrap();
    assert_eq!(config.name, "node-1");
    assert_eq!(config.gossip_listen.to_string(), "127.0.0.1:7946");
}

#[test]
fn gateway_example_resolves() {
    use constellation_gateway::config::Flags;
    let flags: Flags = layered(Some(&example("gateway.toml")), &Flags::default()).unwrap();
    let config = flags.resolve().unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn a_flag_overrides_the_file() {
    use clap::Parser;
    use constellation_controlplane::config::Flags;
    let cli = Flags::parse_from([
        "constellation-controlplane",
        "--id",
        "9",
        "--api-listen",
        "127.0.0.1:9999",
    ]);
    let flags: Flags = layered(Some(&example("controlplane.yaml")), &cli).unwrap();
    let config = flags.resolve().unwrap();
    assert_eq!(config.id, 9);
    assert_eq!(config.api_listen.to_string(), "127.0.0.1:9999");
    assert_eq!(config.raft_listen.to_string(), "127.0.0.1:7401");
}
