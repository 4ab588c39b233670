//! Byte accounting with iptables, the same for both sides of the gossip comparison:
//! each side binds its members to a loopback address of its own (127.0.0.0/8 is all
//! loopback), and one counting rule in a chain of this process's counts every IP
//! packet sent from that address, headers included. Needs root; the chain is removed
//! on drop.

use anyhow::Context;
use std::net::IpAddr;
use std::process::Command;

pub struct SourceCounter {
    chain: String,
    source: IpAddr,
}

impl SourceCounter {
    pub fn install(source: IpAddr) -> anyhow::Result<Self> {
        // Chain names are at most 28 characters.
        let chain = format!("cbench-{}-{}", std::process::id(), source_tag(source));
        let counter = Self { chain, source };
        iptables(&["-N", &counter.chain])
            .context("iptables accounting needs root and the iptables package")?;
        iptables(&["-A", &counter.chain, "-s", &format!("{source}/32")])?;
        iptables(&["-I", "OUTPUT", "-j", &counter.chain])?;
        Ok(counter)
    }

    /// Bytes of IP packets sent from the source address since the rule was installed.
    pub fn bytes(&self) -> anyhow::Result<u64> {
        let listing = iptables(&["-L", &self.chain, "-v", "-x", "-n"])?;
        let source = self.source.to_string();
        listing
            .lines()
            .find(|line| line.split_whitespace().any(|field| field == source))
            .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
            .with_context(|| format!("no counter for {source} in:\n{listing}"))
    }
}

impl Drop for SourceCounter {
    fn drop(&mut self) {
        let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}

/// The last octet of an IPv4 address (the part that differs between sides).
fn source_tag(source: IpAddr) -> String {
    match source {
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
