//! A multi-host harness: N "hosts" on this one machine, each a network namespace with
//! its own address on a private bridge and its own `dockerd`, plus the faults a
//! failover test needs (kill, restart, partition, heal) and a teardown that leaves
//! nothing behind, even after a panic or a crashed test process.
//!
//! Owns: slot allocation between parallel test processes, the network plumbing
//! (bridge, veths, addresses, one iptables rule), each host's `dockerd` (start, wait,
//! image load, kill, restart), fault injection, the cleanup of a slot (its own at
//! teardown and a crashed run's in [`cleanup_stale`]) and the listing of leftovers.
//!
//! # Layout of one harness instance (slot `X`, 1..=250)
//!
//! - a lock: the abstract unix socket `@constellation-hosts-X`, bound for the life of
//!   the [`Hosts`] value. The kernel releases it when the process dies however it dies,
//!   so a slot whose lock nobody holds is stale and may be cleaned and reused.
//! - bridge `cxhXbr` in the root namespace with `10.200.X.1/24`, and the root
//!   namespace's `FORWARD` rule `-i cxhXbr -o cxhXbr -j ACCEPT` (comment `cxhX-hosts`):
//!   Docker sets `FORWARD`'s policy to `DROP` and `br_netfilter` sends bridged frames
//!   through it, so without the rule hosts could not reach each other.
//! - host `i` (1-based): network namespace `cxhXhi`, veth `cxhXhi` (root side, on the
//!   bridge) paired with `eth0` inside, address `10.200.X.(10+i)`, default route via
//!   the bridge, IPv6 off on `eth0` (so IPv4 is the only path and `partition` is
//!   complete). Its `dockerd` runs in the namespace with everything under
//!   `/run/constellation-hosts/X/hi/` (data root, exec root, pidfile, socket
//!   `docker.sock`, log `dockerd.log`) and puts its containers in the cgroup
//!   `/cxhXhi`, which is how [`Host::kill`] finds container processes: they live in
//!   namespaces of their own, not in the host's.
//!
//! Processes enter a host through `nsenter --net=/var/run/netns/NAME`, not
//! `ip netns exec`: the latter also makes a new mount namespace and remounts `/sys`,
//! which hides the cgroup mounts dockerd needs.

use anyhow::{Context, bail};
use bollard::Docker;
use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binaries::Process;

/// Where slot directories live (host state dirs, the saved image).
pub const STATE_ROOT: &str = "/run/constellation-hosts";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Where containerd (1.6) puts its shims' sockets; a SIGKILLed shim leaves its socket.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Slot numbers; the slot is the third octet of the hosts' subnet.
const SLOTS: std::ops::RangeInclusive<u8> = 1..=250;
/// Most hosts in one instance (addresses .11 to .50).
pub const MAX_HOSTS: usize = 40;
/// Host `i` gets `10.200.X.(HOST_OCTET_BASE + i)`.
const HOST_OCTET_BASE: u8 = 10;
/// How long a `dockerd` may take to answer its socket.
const DOCKERD_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long killed processes may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);
/// Programs the harness runs.
const REQUIRED_TOOLS: &[&str] = &[
    "ip",
    "iptables",
    "nsenter",
    "dockerd",
    "containerd",
    "docker",
    "umount",
    "kill",
    "bash",
    "timeout",
    "sha256sum",
];

fn bridge_name(slot: u8) -> String {
    format!("cxh{slot}br")
}

fn host_name(slot: u8, index: usize) -> String {
    format!("cxh{slot}h{index}")
}

/// True when `name` is `cxh{slot}h{digits}`: a host namespace, veth or cgroup of `slot`.
fn is_host_name_of(slot: u8, name: &str) -> bool {
    name.strip_prefix(&format!("cxh{slot}h"))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

fn rule_comment(slot: u8) -> String {
    format!("cxh{slot}-hosts")
}

fn slot_dir(slot: u8) -> PathBuf {
    Path::new(STATE_ROOT).join(slot.to_string())
}

fn bridge_addr_of(slot: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, slot, 1)
}

fn forward_rule(slot: u8) -> Vec<String> {
    let bridge = bridge_name(slot);
    [
        "FORWARD",
        "-i",
        &bridge,
        "-o",
        &bridge,
        "-m",
        "comment",
        "--comment",
        &rule_comment(slot),
        "-j",
        "ACCEPT",
    ]
    .map(String::from)
    .to_vec()
}

// ---------------------------------------------------------------------------------
// Requirements
// ---------------------------------------------------------------------------------

/// Why the harness cannot run here (not root, a tool missing), or `None` when it can.
pub fn unmet_requirements() -> Option<String> {
    let mut missing = Vec::new();
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        missing.push(format!("needs root (effective uid {uid:?})"));
    }
    for tool in REQUIRED_TOOLS {
        if find_in_path(tool).is_none() {
            missing.push(format!("`{tool}` not found in PATH"));
        }
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------
// Small process helpers
// ---------------------------------------------------------------------------------

/// Runs `program args`, failing with its stderr when it exits non-zero.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `iptables -w 10 ARGS` in the root namespace, or in `netns` through nsenter. The `-w`
/// matters: parallel tests and dockerds all take the xtables lock.
fn iptables(netns: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut full: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        full.push(format!("--net={}", ns.display()));
        full.push("iptables".into());
    }
    full.extend(["-w", "10"].map(String::from));
    full.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    run(
        if netns.is_some() {
            "nsenter"
        } else {
            "iptables"
        },
        &refs,
    )
}

fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

// ---------------------------------------------------------------------------------
// Slot lock
// ---------------------------------------------------------------------------------

/// Exclusive ownership of one slot: an abstract unix socket bound by this process.
struct SlotLock {
    slot: u8,
    _listener: UnixListener,
}

impl SlotLock {
    /// Claims `slot`, or `None` when another process (or another [`Hosts`] in this one)
    /// holds it.
    fn try_claim(slot: u8) -> anyhow::Result<Option<Self>> {
        let addr = SocketAddr::from_abstract_name(format!("constellation-hosts-{slot}"))?;
        match UnixListener::bind_addr(&addr) {
            Ok(listener) => Ok(Some(Self {
                slot,
                _listener: listener,
            })),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
            Err(err) => Err(err).context("binding the slot lock socket"),
        }
    }
}

// ---------------------------------------------------------------------------------
// /proc scanning
// ---------------------------------------------------------------------------------

/// What the harness needs to know about one process.
struct ProcView {
    pid: u32,
    /// (dev, inode) of its network namespace.
    netns: Option<(u64, u64)>,
    /// The cgroup paths it is in, one per hierarchy.
    cgroups: Vec<String>,
    cmdline: String,
}

/// Every live (not zombie) process but this one.
fn live_processes() -> Vec<ProcView> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        // The state is the first field after the parenthesised command name.
        let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        if matches!(state, "Z" | "X" | "x") {
            continue;
        }
        let netns = fs::metadata(dir.join("ns/net"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let cgroups = fs::read_to_string(dir.join("cgroup"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_owned))
            .collect();
        let cmdline = fs::read(dir.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(ProcView {
            pid,
            netns,
            cgroups,
            cmdline,
        });
    }
    out
}

/// Which processes belong to a host or a slot.
struct Ownership {
    /// Network namespaces (dev, inode) whose members belong.
    netns: HashSet<(u64, u64)>,
    /// A process whose cgroup path starts with a directory of these belongs.
    cgroups: CgroupOwner,
    /// A process whose command line mentions this directory belongs.
    dir: String,
}

impl Ownership {
    fn owns(&self, p: &ProcView) -> bool {
        p.netns.is_some_and(|ns| self.netns.contains(&ns))
            || p.cgroups.iter().any(|path| {
                path.trim_start_matches('/')
                    .split('/')
                    .next()
                    .is_some_and(|first| self.cgroups.owns(first))
            })
            || p.cmdline.contains(&self.dir)
    }
}

/// Top-level cgroup directories that belong to a host or to a whole slot.
enum CgroupOwner {
    Host(String),
    Slot(u8),
}

impl CgroupOwner {
    fn owns(&self, top_dir: &str) -> bool {
        match self {
            Self::Host(name) => top_dir == name,
            Self::Slot(slot) => is_host_name_of(*slot, top_dir),
        }
    }
}

fn netns_id(name: &str) -> Option<(u64, u64)> {
    fs::metadata(netns_path(name))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// SIGKILLs every process `ownership` claims, again and again, until none is left.
fn kill_all(ownership: &Ownership, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids: Vec<String> = live_processes()
            .iter()
            .filter(|p| ownership.owns(p))
            .map(|p| p.pid.to_string())
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: processes {pids:?} survive SIGKILL after {KILL_TIMEOUT:?}");
        }
        // Some may be gone already; kill's status does not matter, the next scan does.
        let mut args = vec!["-KILL", "--"];
        args.extend(pids.iter().map(String::as_str));
        let _ = Command::new("kill")
            .args(&args)
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------
// Mounts, cgroups, shim sockets
// ---------------------------------------------------------------------------------

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut found: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found.dedup();
    found
}

/// /proc/self/mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything at or under `dir` (dockerd's private bind of its data
/// root, overlay `merged` dirs, container network namespaces under the exec root).
fn unmount_under(dir: &Path) -> anyhow::Result<()> {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in &mounts {
            // Lazy: a mount still busy (a dying process) is detached now, freed later.
            let _ = run("umount", &["-l", m]);
        }
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        bail!("mounts under {} survive umount -l: {left:?}", dir.display())
    }
}

/// Cgroup hierarchies: `/sys/fs/cgroup` (v2) and each directory in it (v1 controllers).
fn cgroup_roots() -> Vec<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut roots = vec![root.clone()];
    if let Ok(entries) = fs::read_dir(&root) {
        roots.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && p.join("cgroup.procs").exists()),
        );
    }
    roots
}

/// The top-level cgroup directories named like the slot's hosts, in every hierarchy.
fn cgroup_dirs_of(slot: u8) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in cgroup_roots() {
        let Ok(entries) = fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_host_name_of(slot, &name) && entry.path().is_dir() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Removes a cgroup directory and its children (cgroup dirs hold only control files,
/// which go with the directory).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    // Tasks that were just killed may still be leaving the cgroup.
    let mut last = Ok(());
    for _ in 0..50 {
        last = fs::remove_dir(dir);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    last
}

/// containerd 1.6 names a shim's socket `/run/containerd/s/` + hex(sha256(containerd's
/// socket + "/" + namespace + "/" + container id)); a SIGKILLed shim leaves it behind.
fn shim_sockets_of(host_dir: &Path) -> Vec<PathBuf> {
    let containerd_sock = host_dir.join("exec/containerd/containerd.sock");
    let Ok(entries) = fs::read_dir(host_dir.join("data/containers")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let key = format!("{}/moby/{id}", containerd_sock.display());
        let Ok(mut child) = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            continue;
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(key.as_bytes());
        }
        let Ok(output) = child.wait_with_output() else {
            continue;
        };
        let digest = String::from_utf8_lossy(&output.stdout);
        if let Some(hex) = digest.split_whitespace().next() {
            let path = Path::new(SHIM_SOCKET_DIR).join(hex);
            if path.exists() {
                out.push(path);
            }
        }
    }
    out
}

/// Host directories (`h1`, `h2`, ...) in a slot directory.
fn host_dirs(slot: u8) -> Vec<PathBuf> {
    fs::read_dir(slot_dir(slot))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn netns_names_of(slot: u8) -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_host_name_of(slot, n))
                .collect()
        })
        .unwrap_or_default()
}

fn links_of(slot: u8) -> Vec<String> {
    let bridge = bridge_name(slot);
    fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| *n == bridge || is_host_name_of(slot, n))
                .collect()
        })
        .unwrap_or_default()
}

fn forward_rule_present(slot: u8) -> bool {
    let mut args: Vec<String> = vec!["-C".into()];
    args.extend(forward_rule(slot));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    iptables(None, &refs).is_ok()
}

// ---------------------------------------------------------------------------------
// Cleaning a slot
// ---------------------------------------------------------------------------------

/// Removes everything slot `slot` may have left: processes, mounts, shim sockets,
/// namespaces, links, the FORWARD rule, cgroups and the directory. The caller holds the
/// slot's lock. Best effort: it goes on after a failure and reports all of them.
fn clean_slot(slot: u8) -> anyhow::Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let dir = slot_dir(slot);
    let ownership = Ownership {
        netns: netns_names_of(slot)
            .iter()
            .filter_map(|n| netns_id(n))
            .collect(),
        cgroups: CgroupOwner::Slot(slot),
        dir: format!("{}/", dir.display()),
    };
    if let Err(err) = kill_all(&ownership, &format!("slot {slot}")) {
        problems.push(format!("{err:#}"));
    }
    for host_dir in host_dirs(slot) {
        for socket in shim_sockets_of(&host_dir) {
            let _ = fs::remove_file(socket);
        }
    }
    if let Err(err) = unmount_under(&dir) {
        problems.push(format!("{err:#}"));
    }
    for ns in netns_names_of(slot) {
        if let Err(err) = run("ip", &["netns", "delete", &ns]) {
            problems.push(format!("{err:#}"));
        }
    }
    // Root-side veths vanish with their namespace; the bridge has to go by name.
    for link in links_of(slot) {
        if let Err(err) = run("ip", &["link", "delete", &link]) {
            // Already gone with its peer.
            if links_of(slot).contains(&link) {
                problems.push(format!("{err:#}"));
            }
        }
    }
    while forward_rule_present(slot) {
        let mut args: Vec<String> = vec!["-D".into()];
        args.extend(forward_rule(slot));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(err) = iptables(None, &refs) {
            problems.push(format!("{err:#}"));
            break;
        }
    }
    for cgroup in cgroup_dirs_of(slot) {
        if let Err(err) = remove_cgroup_tree(&cgroup) {
            problems.push(format!("removing cgroup {}: {err}", cgroup.display()));
        }
    }
    if dir.exists() {
        // Never recurse into something still mounted: that would delete through it.
        if mounts_under(&dir).is_empty() {
            if let Err(err) = fs::remove_dir_all(&dir) {
                problems.push(format!("removing {}: {err}", dir.display()));
            }
        } else {
            problems.push(format!("{} kept: mounts remain", dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("cleaning slot {slot}: {}", problems.join("; "))
    }
}

/// Everything of slot `slot` still present: processes, mounts, namespaces, links, the
/// FORWARD rule, cgroups, shim sockets, the directory. Empty when the slot is clean.
fn leftovers_unlocked(slot: u8) -> Vec<String> {
    let mut out = Vec::new();
    let dir = slot_dir(slot);
    let ownership = Ownership {
        netns: netns_names_of(slot)
            .iter()
            .filter_map(|n| netns_id(n))
            .collect(),
        cgroups: CgroupOwner::Slot(slot),
        dir: format!("{}/", dir.display()),
    };
    for p in live_processes().iter().filter(|p| ownership.owns(p)) {
        out.push(format!("process {} ({})", p.pid, p.cmdline.trim()));
    }
    for m in mounts_under(&dir) {
        out.push(format!("mount {m}"));
    }
    for ns in netns_names_of(slot) {
        out.push(format!("netns {ns}"));
    }
    for link in links_of(slot) {
        out.push(format!("link {link}"));
    }
    if forward_rule_present(slot) {
        out.push(format!("iptables FORWARD rule {}", rule_comment(slot)));
    }
    for cgroup in cgroup_dirs_of(slot) {
        out.push(format!("cgroup {}", cgroup.display()));
    }
    for host_dir in host_dirs(slot) {
        for socket in shim_sockets_of(&host_dir) {
            out.push(format!("shim socket {}", socket.display()));
        }
    }
    if dir.exists() {
        out.push(format!("directory {}", dir.display()));
    }
    out
}

/// What slot `slot` left behind, checked while holding its lock so no other instance
/// is building in it at the same time. `None` when another instance owns the slot now.
pub fn leftovers_of_free_slot(slot: u8) -> anyhow::Result<Option<Vec<String>>> {
    let Some(_lock) = SlotLock::try_claim(slot)? else {
        return Ok(None);
    };
    Ok(Some(leftovers_unlocked(slot)))
}

/// Cleans every slot that shows traces (a directory, a namespace or a link) but whose
/// lock nobody holds: what a crashed or killed test run left. Returns the slots cleaned.
/// [`Hosts::create`] calls it; `tests/fixtures/hosts-cleanup.sh` does the same from a
/// shell.
pub fn cleanup_stale() -> anyhow::Result<Vec<u8>> {
    let mut candidates: Vec<u8> = Vec::new();
    let mut note = |slot: u8| {
        if !candidates.contains(&slot) {
            candidates.push(slot);
        }
    };
    if let Ok(entries) = fs::read_dir(STATE_ROOT) {
        for e in entries.flatten() {
            if let Some(slot) = e.file_name().to_str().and_then(|s| s.parse::<u8>().ok()) {
                note(slot);
            }
        }
    }
    let traces: Vec<String> = [NETNS_DIR, "/sys/class/net"]
        .iter()
        .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in traces {
        if let Some(rest) = name.strip_prefix("cxh") {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(slot) = digits.parse::<u8>()
                && (is_host_name_of(slot, &name) || name == bridge_name(slot))
            {
                note(slot);
            }
        }
    }
    let mut cleaned = Vec::new();
    let mut problems = Vec::new();
    for slot in candidates {
        let Some(lock) = SlotLock::try_claim(slot)? else {
            continue;
        };
        match clean_slot(slot) {
            Ok(()) => cleaned.push(slot),
            Err(err) => problems.push(format!("{err:#}")),
        }
        drop(lock);
    }
    if problems.is_empty() {
        Ok(cleaned)
    } else {
        bail!("stale harness state: {}", problems.join("; "))
    }
}

// ---------------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------------

/// How long creating the hosts took, per phase.
#[derive(Debug, Clone, Default)]
pub struct CreateTimings {
    /// Cleaning stale slots and claiming one.
    pub claim: Duration,
    /// Bridge, namespaces, veths, addresses, the FORWARD rule.
    pub network: Duration,
    /// `docker save` of the test image from the main engine.
    pub image_save: Duration,
    /// From spawning each dockerd until it answered (they start in parallel).
    pub dockerd_ready: Vec<Duration>,
    /// `docker load` into every host (in parallel).
    pub image_load: Duration,
    /// The whole of [`Hosts::create`].
    pub total: Duration,
}

/// N hosts on one bridge. Dropping it tears everything down (also after a panic);
/// [`Hosts::teardown`] does the same and reports failures.
pub struct Hosts {
    lock: Option<SlotLock>,
    hosts: Vec<Host>,
    timings: CreateTimings,
}

impl Hosts {
    /// [`Hosts::create`] for a test named `test`, or `Ok(None)` with a loud `SKIPPED`
    /// line when the machine cannot run it (not root, a tool missing) and `CI` is not
    /// set. Under CI an unmet requirement fails the test.
    pub async fn create_or_skip(test: &str, n: usize) -> anyhow::Result<Option<Self>> {
        if let Some(why) = unmet_requirements() {
            if crate::docker::in_ci() {
                bail!("{test}: the multi-host harness is required in CI but cannot run: {why}");
            }
            eprintln!(
                "\n==== SKIPPED: multi-host harness unavailable ==== {test}: {why}\n\
                 ==== (set CI=1 to make this a failure) ====\n"
            );
            return Ok(None);
        }
        Self::create(n).await.map(Some)
    }

    /// Creates `n` hosts (1..=[`MAX_HOSTS`]), each with its own dockerd holding the test
    /// image. Cleans stale slots first.
    pub async fn create(n: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_HOSTS).contains(&n),
            "hosts: n must be 1..={MAX_HOSTS}, got {n}"
        );
        if let Some(why) = unmet_requirements() {
            bail!("multi-host harness cannot run: {why}");
        }
        let started = Instant::now();
        if let Err(err) = cleanup_stale() {
            // Another slot's debris must not stop this test; it is reported.
            eprintln!("warning: {err:#}");
        }
        let lock = claim_slot()?;
        let slot = lock.slot;
        let mut hosts = Self {
            lock: Some(lock),
            hosts: Vec::new(),
            timings: CreateTimings::default(),
        };
        hosts.timings.claim = started.elapsed();

        let phase = Instant::now();
        hosts.create_network(n)?;
        hosts.timings.network = phase.elapsed();

        let phase = Instant::now();
        let image_tar = slot_dir(slot).join("image.tar");
        let image = crate::docker::test_image();
        run(
            "docker",
            &["save", "-o", &image_tar.display().to_string(), &image],
        )
        .with_context(|| {
            format!(
                "saving {image} from the main Docker engine; build it with \
                 tests/fixtures/busybox-image/build.sh"
            )
        })?;
        hosts.timings.image_save = phase.elapsed();

        for host in &mut hosts.hosts {
            host.spawn_dockerd()?;
        }
        let ready = futures::future::join_all(hosts.hosts.iter_mut().map(Host::wait_ready)).await;
        for r in ready {
            hosts.timings.dockerd_ready.push(r?);
        }

        let phase = Instant::now();
        let loads = hosts.hosts.iter().map(|h| {
            let socket = h.docker_host();
            let tar = image_tar.clone();
            async move {
                let output = tokio::process::Command::new("docker")
                    .args(["-H", &socket, "load", "-q", "-i"])
                    .arg(&tar)
                    .stdin(Stdio::null())
                    .output()
                    .await
                    .context("running docker load")?;
                anyhow::ensure!(
                    output.status.success(),
                    "docker -H {socket} load failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                Ok(())
            }
        });
        for r in futures::future::join_all(loads).await {
            r?;
        }
        hosts.timings.image_load = phase.elapsed();
        hosts.timings.total = started.elapsed();
        Ok(hosts)
    }

    fn create_network(&mut self, n: usize) -> anyhow::Result<()> {
        let slot = self.slot();
        let dir = slot_dir(slot);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("owner"), format!("{}\n", std::process::id()))?;
        let bridge = bridge_name(slot);
        let bridge_cidr = format!("{}/24", bridge_addr_of(slot));
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run("ip", &["addr", "add", &bridge_cidr, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        let mut insert: Vec<String> = vec!["-I".into()];
        insert.extend(forward_rule(slot));
        let refs: Vec<&str> = insert.iter().map(String::as_str).collect();
        iptables(None, &refs)?;

        for index in 1..=n {
            let name = host_name(slot, index);
            let addr = Ipv4Addr::new(10, 200, slot, HOST_OCTET_BASE + index as u8);
            let host_dir = dir.join(format!("h{index}"));
            fs::create_dir_all(&host_dir)?;
            // Read by dockerd instead of /etc/docker/daemon.json, which may say anything.
            fs::write(host_dir.join("daemon.json"), "{}\n")?;
            // Pushed before the commands so a failure half-way is still torn down.
            self.hosts.push(Host {
                index,
                name: name.clone(),
                addr,
                bridge_addr: bridge_addr_of(slot),
                dir: host_dir,
                dockerd: None,
                partitioned: false,
            });
            run("ip", &["netns", "add", &name])?;
            run(
                "ip",
                &[
                    "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
                ],
            )?;
            run("ip", &["link", "set", &name, "master", &bridge, "up"])?;
            let cidr = format!("{addr}/24");
            run("ip", &["-n", &name, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &name, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &name, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &name,
                    "route",
                    "add",
                    "default",
                    "via",
                    &bridge_addr_of(slot).to_string(),
                ],
            )?;
            // IPv4 only, so the IPv4 partition rules cut every path. /proc/sys/net shows
            // the namespace of the process reading it, hence nsenter.
            let _ = run(
                "nsenter",
                &[
                    &format!("--net={}", netns_path(&name).display()),
                    "bash",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
                ],
            );
        }
        Ok(())
    }

    /// The slot number: the hosts' subnet is `10.200.SLOT.0/24`.
    pub fn slot(&self) -> u8 {
        self.lock.as_ref().map(|l| l.slot).unwrap_or_default()
    }

    /// The bridge's name in the root namespace.
    pub fn bridge(&self) -> String {
        bridge_name(self.slot())
    }

    /// The root namespace's address on the bridge (`10.200.X.1`): bind a control plane
    /// here (port 0) and every host reaches it.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        bridge_addr_of(self.slot())
    }

    /// All hosts, in order (index 0 is host 1).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i` (0-based), mutable for faults.
    pub fn host_mut(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    /// Two different hosts at once, mutable (e.g. kill one, probe from the other).
    pub fn pair_mut(&mut self, a: usize, b: usize) -> (&mut Host, &mut Host) {
        assert_ne!(a, b, "pair_mut needs two different hosts");
        if a < b {
            let (left, right) = self.hosts.split_at_mut(b);
            (&mut left[a], &mut right[0])
        } else {
            let (left, right) = self.hosts.split_at_mut(a);
            (&mut right[0], &mut left[b])
        }
    }

    /// How long [`Hosts::create`] took.
    pub fn timings(&self) -> &CreateTimings {
        &self.timings
    }

    /// Kills every host's processes and removes everything the instance made, then
    /// releases the slot. Returns how long it took.
    pub fn teardown(mut self) -> anyhow::Result<Duration> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let Some(lock) = self.lock.take() else {
            return Ok(Duration::ZERO);
        };
        let result = clean_slot(lock.slot);
        // Reap our dockerd children (already killed by clean_slot).
        for host in &mut self.hosts {
            host.reap_dockerd();
        }
        drop(lock);
        result.map(|()| started.elapsed())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Err(err) = self.teardown_inner() {
            eprintln!("warning: multi-host teardown: {err:#}");
        }
    }
}

/// Claims a free slot, starting at a place derived from the pid so parallel test
/// processes rarely contend, skipping subnets some other software routes.
fn claim_slot() -> anyhow::Result<SlotLock> {
    let count = SLOTS.len();
    let start = (std::process::id() as usize).wrapping_mul(7919) % count;
    for k in 0..count {
        let slot = *SLOTS.start() + ((start + k) % count) as u8;
        let Some(lock) = SlotLock::try_claim(slot)? else {
            continue;
        };
        // A previous owner of this slot may have crashed.
        clean_slot(slot)?;
        let subnet = format!("10.200.{slot}.0/24");
        let routed = run("ip", &["-4", "route", "show", "to", "match", &subnet])
            .map(|out| out.lines().any(|l| !l.starts_with("default")))
            .unwrap_or(true);
        if routed {
            continue;
        }
        return Ok(lock);
    }
    bail!("no free multi-host slot among {count}")
}

/// One host: a network namespace with its own address and dockerd.
pub struct Host {
    index: usize,
    name: String,
    addr: Ipv4Addr,
    bridge_addr: Ipv4Addr,
    dir: PathBuf,
    dockerd: Option<Child>,
    partitioned: bool,
}

impl Host {
    /// 1-based position in its [`Hosts`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// The name of its network namespace (also its root-side veth and its cgroup).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/NAME`, for `nsenter --net=`.
    pub fn netns_path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Its address on the bridge (its `eth0`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The bridge's address, which is this host's default gateway and where the root
    /// namespace (a control plane bound there) is reached.
    pub fn gateway(&self) -> Ipv4Addr {
        self.bridge_addr
    }

    /// Its state directory (dockerd's dirs and log); put an agent's dirs here too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its dockerd's socket as a URI: for bollard and for the agent's `--docker-host`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// A bollard client for its dockerd (API version negotiated).
    pub async fn docker(&self) -> anyhow::Result<Docker> {
        let docker =
            Docker::connect_with_unix(&self.docker_host(), 30, bollard::API_DEFAULT_VERSION)?;
        docker
            .negotiate_version()
            .await
            .with_context(|| format!("{}: dockerd does not answer", self.name))
    }

    /// The OS pid of its dockerd while running.
    pub fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// `program` prefixed with `nsenter --net=...`: runs inside the host's network
    /// namespace and nowhere else (same mounts, cgroups and pid namespace as the test).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns_path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Starts a Constellation binary inside the host (see
    /// [`Process::spawn_in_netns`]); [`Host::kill`] kills it with the rest.
    pub fn spawn(&self, name: &str, binary: &Path, args: &[String]) -> anyhow::Result<Process> {
        Process::spawn_in_netns(name, &self.netns_path(), binary, args)
    }

    /// Starts `constellation-agent` named `name` inside the host against `controlplane`
    /// (API addresses, comma-separated; bind the control plane on [`Hosts::bridge_addr`]
    /// so hosts reach it): its engine is this host's dockerd, it advertises and gossips
    /// on the host's address (port 0), and its secrets and state live under
    /// [`Host::dir`]`/agent-NAME/`. `extra` flags are appended. Waits for
    /// `agent started`; wait for `session accepted` on the returned process to know it
    /// reached the control plane.
    pub async fn start_agent(
        &self,
        name: &str,
        controlplane: &str,
        extra: &[String],
    ) -> anyhow::Result<Process> {
        let dir = self.dir.join(format!("agent-{name}"));
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.into(),
            "--controlplane".into(),
            controlplane.into(),
            "--docker-host".into(),
            self.docker_host(),
            "--advertise-addr".into(),
            self.addr.to_string(),
            "--gossip-listen".into(),
            format!("{}:0", self.addr),
            "--secrets-dir".into(),
            dir.join("secrets").display().to_string(),
            "--state-dir".into(),
            dir.join("state").display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let binary = crate::binaries::binary("constellation-agent")?;
        let mut process = self.spawn(name, &binary, &args)?;
        process
            .wait_for_log("agent started", Duration::from_secs(30))
            .await?;
        Ok(process)
    }

    /// `GET /` on `addr:port` from inside this host (bash's /dev/tcp, HTTP/1.0): the
    /// whole response, or `None` when nothing answered within `timeout` (a partition);
    /// an error when the connection failed otherwise (refused, unreachable).
    pub async fn http_get(
        &self,
        addr: Ipv4Addr,
        port: u16,
        timeout: Duration,
    ) -> anyhow::Result<Option<String>> {
        // One write for the request; a server that answers and closes early must not
        // kill bash with SIGPIPE before it reads the answer.
        let script = "trap '' PIPE; exec 3<>/dev/tcp/$0/$1 || exit 3; \
                      printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3";
        let output = self
            .command("timeout")
            .arg(format!("{}", timeout.as_secs_f64()))
            .args(["bash", "-c", script])
            .arg(addr.to_string())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .output()
            .await
            .context("running bash /dev/tcp in the host")?;
        match output.status.code() {
            Some(0) => Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned())),
            // timeout(1)'s status when it had to stop the command.
            Some(124) => Ok(None),
            _ => bail!(
                "{}: GET http://{addr}:{port}/ failed ({}): {}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    fn dockerd_args(&self) -> Vec<String> {
        let dir = self.dir.display();
        vec![
            format!("--net={}", self.netns_path().display()),
            "dockerd".into(),
            format!("--data-root={dir}/data"),
            format!("--exec-root={dir}/exec"),
            format!("--pidfile={dir}/docker.pid"),
            format!("--host=unix://{dir}/docker.sock"),
            format!("--config-file={dir}/daemon.json"),
            // Containers live in their own namespaces; this cgroup is how kill finds them.
            format!("--cgroup-parent=/{}", self.name),
            // cgroupfs whatever the machine's default, so the parent above is valid.
            "--exec-opt=native.cgroupdriver=cgroupfs".into(),
        ]
    }

    fn spawn_dockerd(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.dockerd.is_none(),
            "{}: dockerd already runs",
            self.name
        );
        // A killed run's socket and pidfiles would confuse the start: dockerd trusts
        // containerd's pidfile when that pid still exists, and a killed containerd can
        // linger as an unreaped zombie, so it would wait for a containerd that is dead.
        let _ = fs::remove_file(self.socket_path());
        let _ = fs::remove_file(self.dir.join("docker.pid"));
        let _ = fs::remove_file(self.dir.join("exec/containerd/containerd.pid"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))?;
        let child = Command::new("nsenter")
            .args(self.dockerd_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("{}: starting dockerd", self.name))?;
        self.dockerd = Some(child);
        Ok(())
    }

    /// Waits until dockerd answers a ping; returns how long that took.
    async fn wait_ready(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + DOCKERD_READY_TIMEOUT;
        loop {
            if let Some(child) = self.dockerd.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.dockerd = None;
                bail!(
                    "{}: dockerd exited ({status}) before answering; log tail:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            if self.socket_path().exists()
                && let Ok(docker) =
                    Docker::connect_with_unix(&self.docker_host(), 2, bollard::API_DEFAULT_VERSION)
                && docker.ping().await.is_ok()
            {
                return Ok(started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: dockerd did not answer within {DOCKERD_READY_TIMEOUT:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The last `lines` lines of its dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::binaries::log_tail(&self.dir.join("dockerd.log"), lines)
    }

    fn reap_dockerd(&mut self) {
        if let Some(mut child) = self.dockerd.take() {
            // Killed already; if it somehow lives on, do not block on it.
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!("warning: {}: dockerd {} not reaped", self.name, child.id());
        }
    }

    fn ownership(&self) -> Ownership {
        Ownership {
            netns: netns_id(&self.name).into_iter().collect(),
            cgroups: CgroupOwner::Host(self.name.clone()),
            dir: format!("{}/", self.dir.display()),
        }
    }

    /// SIGKILLs every process of the host, as a power cut would: whatever runs in its
    /// namespace (agents, dockerd, containerd, shims, docker-proxy) and every container
    /// process (found by cgroup), until none is left. The namespace and its address stay
    /// up: the kernel still answers, so connections are refused rather than hanging.
    /// Use [`Host::crash`] for a host that goes silent.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.start_kill().await??;
        self.reap_after_kill();
        Ok(())
    }

    /// [`Host::kill`] without waiting: the killing runs on its own (the first SIGKILLs
    /// go out at once; it ends when every process is gone), so a caller can watch what
    /// the death causes meanwhile. Then [`Host::reap_after_kill`].
    pub fn start_kill(&self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        let ownership = self.ownership();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || kill_all(&ownership, &name))
    }

    /// Collects the killed dockerd after [`Host::start_kill`] has finished.
    pub fn reap_after_kill(&mut self) {
        self.reap_dockerd();
    }

    /// A machine that dies and falls silent: [`Host::partition`] then [`Host::kill`].
    /// Bring it back with [`Host::heal`] and [`Host::restart`].
    pub async fn crash(&mut self) -> anyhow::Result<()> {
        self.partition()?;
        self.kill().await
    }

    /// Starts dockerd again with the same directories (after [`Host::kill`]) and waits
    /// until it answers; returns how long that took. Docker restores what it restores:
    /// containers with restart policy `always`/`unless-stopped` start again, others stay
    /// exited (status 255). Agents are not restarted. A partition stays in place.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        if let Some(child) = self.dockerd.as_mut()
            && child.try_wait()?.is_none()
        {
            bail!("{}: dockerd still runs; kill the host first", self.name);
        }
        self.dockerd = None;
        self.spawn_dockerd()?;
        self.wait_ready().await
    }

    fn partition_rules() -> [[&'static str; 7]; 2] {
        [
            // raw PREROUTING sees every packet arriving on eth0 before anything else.
            ["-t", "raw", "PREROUTING", "-i", "eth0", "-j", "DROP"],
            // mangle POSTROUTING sees every packet leaving by eth0, the host's own and
            // its containers' (after routing), and dockerd never rewrites it.
            ["-t", "mangle", "POSTROUTING", "-o", "eth0", "-j", "DROP"],
        ]
    }

    /// Drops all of the host's IPv4 traffic on `eth0`, both ways, inside its namespace
    /// (raw and mangle tables, which dockerd leaves alone). Like a firewall partition:
    /// packets vanish, so connects and in-flight TCP connections hang instead of being
    /// refused or reset. ARP still works. Loopback and container-to-container traffic
    /// inside the host keep working.
    pub fn partition(&mut self) -> anyhow::Result<()> {
        if self.partitioned {
            return Ok(());
        }
        for rule in Self::partition_rules() {
            let mut args = vec![rule[0], rule[1], "-I"];
            args.extend(&rule[2..]);
            iptables(Some(&self.netns_path()), &args)?;
        }
        self.partitioned = true;
        Ok(())
    }

    /// Removes the partition; TCP connections that hung resume (retransmission).
    pub fn heal(&mut self) -> anyhow::Result<()> {
        if !self.partitioned {
            return Ok(());
        }
        for rule in Self::partition_rules() {
            let mut args = vec![rule[0], rule[1], "-D"];
            args.extend(&rule[2..]);
            iptables(Some(&self.netns_path()), &args)?;
        }
        self.partitioned = false;
        Ok(())
    }

    /// Whether [`Host::partition`] is in force.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Pids of processes in the host (namespace members and container processes).
    pub fn pids(&self) -> Vec<u32> {
        let ownership = self.ownership();
        live_processes()
            .iter()
            .filter(|p| ownership.owns(p))
            .map(|p| p.pid)
            .collect()
    }

    /// Pids of its container processes (found through the host's cgroup).
    pub fn container_pids(&self) -> Vec<u32> {
        let name = self.name.clone();
        live_processes()
            .iter()
            .filter(|p| {
                p.cgroups.iter().any(|path| {
                    path.trim_start_matches('/').split('/').next() == Some(name.as_str())
                })
            })
            .map(|p| p.pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_belong_to_their_slot_only() {
        assert!(is_host_name_of(1, "cxh1h1"));
        assert!(is_host_name_of(1, "cxh1h12"));
        assert!(!is_host_name_of(1, "cxh12h1"));
        assert!(!is_host_name_of(1, "cxh1br"));
        assert!(!is_host_name_of(1, "cxh1h"));
        assert!(!is_host_name_of(1, "cxh1h1x"));
        assert!(is_host_name_of(250, &host_name(250, MAX_HOSTS)));
        // Linux interface names hold at most 15 bytes.
        assert!(host_name(250, MAX_HOSTS).len() <= 15);
        assert!(bridge_name(250).len() <= 15);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain/path"), "/plain/path");
        assert_eq!(unescape_mount_path("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mount_path("/end\\04"), "/end\\04");
    }
}
