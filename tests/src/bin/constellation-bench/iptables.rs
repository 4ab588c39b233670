//! Byte accounting with iptables, the same for both sides of the gossip comparison:
//! each side binds its members to a loopback address of its own (127.0.0.0/8 is all
//! loopback), and two counting rules in a chain of this process's count every IP
//! packet from or to that address once, headers included: from it (UDP from the bound
//! sockets, TCP answers) or else to it (TCP a member opens without binding its source,
//! which the kernel sends from 127.0.0.1, as memberlist's push-pull and fallback pings
//! do). Needs root; the chain is removed on drop.

use anyhow::Context;
use std::net::IpAddr;
use std::process::Command;

pub struct AddressCounter {
    chain: String,
    address: IpAddr,
}

impl AddressCounter {
    pub fn install(address: IpAddr) -> anyhow::Result<Self> {
        remove_stale_chains();
        // Chain names are at most 28 characters.
        let chain = format!("cbench-{}-{}", std::process::id(), address_tag(address));
        let counter = Self { chain, address };
        iptables(&["-N", &counter.chain])
            .context("iptables accounting needs root and the iptables package")?;
        let host = format!("{address}/32");
        // A packet from the address is counted by the first rule and leaves the chain.
        iptables(&["-A", &counter.chain, "-s", &host, "-j", "RETURN"])?;
        iptables(&["-A", &counter.chain, "-d", &host])?;
        iptables(&["-I", "OUTPUT", "-j", &counter.chain])?;
        Ok(counter)
    }

    /// Bytes of IP packets from or to the address since the rules were installed.
    pub fn bytes(&self) -> anyhow::Result<u64> {
        let listing = iptables(&["-L", &self.chain, "-v", "-x", "-n"])?;
        let address = self.address.to_string();
        let counts: Vec<u64> = listing
            .lines()
            .filter(|line| line.split_whitespace().any(|field| field == address))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
            .collect();
        anyhow::ensure!(
            counts.len() == 2,
            "no counters for {address} in:\n{listing}"
        );
        Ok(counts.iter().sum())
    }
}

impl Drop for AddressCounter {
    fn drop(&mut self) {
        remove_chain(&self.chain);
    }
}

fn remove_chain(chain: &str) {
    let _ = iptables(&["-D", "OUTPUT", "-j", chain]);
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

/// Removes the chains of bench processes that are gone (killed before their drop ran).
fn remove_stale_chains() {
    let Ok(rules) = iptables(&["-S"]) else { return };
    for chain in rules.lines().filter_map(|l| l.strip_prefix("-N cbench-")) {
        let pid = chain.split('-').next().unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_chain(&format!("cbench-{chain}"));
        }
    }
}

/// The last octet of an IPv4 address (the part that differs between sides).
fn address_tag(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.octets()[3].to_string(),
        IpAddr::V6(_) => "v6".into(),
    }
}

fn iptables(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .context("running iptables")?;
    anyhow::ensure!(
        output.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
