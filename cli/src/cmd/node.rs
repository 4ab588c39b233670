//! `constellation node ls|get|cordon|uncordon|drain`: the machines agents run on.

use crate::cmd::alloc::AllocationTable;
use crate::connect::Global;
use crate::output::{self, Tabular, cell};
use clap::Subcommand;
use constellation_proto::v1::{
    CordonNodeRequest, CordonNodeResponse, DrainNodeRequest, DrainNodeResponse, GetNodeRequest,
    GetNodeResponse, ListNodesRequest, ListNodesResponse, Node, NodeAvailability, NodeStatus,
    UncordonNodeRequest, UncordonNodeResponse,
};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List nodes.
    #[command(alias = "list")]
    Ls,
    /// Show a node and its allocations.
    Get { name: String },
    /// Place no new allocations on a node; running ones stay.
    Cordon { name: String },
    /// Let a cordoned or drained node take allocations again.
    Uncordon { name: String },
    /// Move a node's allocations elsewhere and place no new ones on it.
    Drain {
        name: String,
        /// Allocations still on the node then are stopped [server default: 1h].
        #[arg(long, value_parser = humantime::parse_duration)]
        deadline: Option<Duration>,
        /// Replacements started at a time [server default: 1].
        #[arg(long)]
        batch_size: Option<u32>,
    },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    let mut client = global.client().await?;
    match command {
        Command::Ls => {
            let list = client
                .list_nodes(ListNodesRequest::default())
                .await?
                .into_inner();
            output::print(global.output, &list)
        }
        Command::Get { name } => {
            let reply = client
                .get_node(GetNodeRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            output::print(global.output, &reply)
        }
        Command::Cordon { name } => {
            let reply = client
                .cordon_node(CordonNodeRequest { name: name.clone() })
                .await?
                .into_inner();
            output::print(global.output, &reply)
        }
        Command::Uncordon { name } => {
            let reply = client
                .uncordon_node(UncordonNodeRequest { name: name.clone() })
                .await?
                .into_inner();
            output::print(global.output, &reply)
        }
        Command::Drain {
            name,
            deadline,
            batch_size,
        } => {
            let reply = client
                .drain_node(DrainNodeRequest {
                    name: name.clone(),
                    deadline: deadline.map(Into::into),
                    batch_size: batch_size.unwrap_or(0),
                })
                .await?
                .into_inner();
            output::print(global.output, &reply)
        }
    }
}

const NODE_HEADER: [&str; 8] = [
    "NAME",
    "STATUS",
    "AVAILABILITY",
    "ADDRESS",
    "CPU",
    "MEMORY",
    "AGENT",
    "LAST SEEN",
];

fn status(node: &Node) -> String {
    match node.status() {
        NodeStatus::Unspecified => "unknown".to_owned(),
        s => cell::word(s.as_str_name(), "NODE_STATUS_"),
    }
}

fn availability(node: &Node) -> String {
    let word = match node.availability() {
        NodeAvailability::Unspecified => "active".to_owned(),
        a => cell::word(a.as_str_name(), "NODE_AVAILABILITY_"),
    };
    match &node.drain {
        Some(drain) if node.availability() == NodeAvailability::Draining => {
            if drain.completed {
                format!("{word} (done)")
            } else {
                format!("{word} ({} left)", drain.remaining)
            }
        }
        _ => word,
    }
}

/// "allocated/capacity" of CPU cores and memory.
fn usage(node: &Node) -> (String, String) {
    let capacity = node
        .description
        .as_ref()
        .and_then(|d| d.capacity)
        .unwrap_or_default();
    let allocated = node.allocated.unwrap_or_default();
    (
        format!(
            "{}/{}",
            cell::cpus(allocated.cpu_millis),
            cell::cpus(capacity.cpu_millis)
        ),
        format!(
            "{}/{}",
            cell::bytes(allocated.memory_bytes),
            cell::bytes(capacity.memory_bytes)
        ),
    )
}

fn node_row(node: &Node) -> Vec<String> {
    let description = node.description.clone().unwrap_or_default();
    let addresses = description.addresses.unwrap_or_default();
    let (cpu, memory) = usage(node);
    vec![
        description.name,
        status(node),
        availability(node),
        if addresses.advertise_ip.is_empty() {
            "-".to_owned()
        } else {
            addresses.advertise_ip
        },
        cpu,
        memory,
        if description.agent_version.is_empty() {
            "-".to_owned()
        } else {
            description.agent_version
        },
        cell::age(node.last_seen.as_ref()),
    ]
}

impl Tabular for ListNodesResponse {
    fn header(&self) -> Vec<&'static str> {
        NODE_HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.nodes.iter().map(node_row).collect()
    }
}

/// The responses that are one node after a change: shown as that node's row.
macro_rules! node_response {
    ($($response:ty),*) => {$(
        impl Tabular for $response {
            fn header(&self) -> Vec<&'static str> {
                NODE_HEADER.to_vec()
            }
            fn rows(&self) -> Vec<Vec<String>> {
                self.node.iter().map(node_row).collect()
            }
        }
    )*};
}
node_response!(CordonNodeResponse, UncordonNodeResponse, DrainNodeResponse);

impl Tabular for GetNodeResponse {
    fn preamble(&self) -> Vec<String> {
        let Some(node) = &self.node else {
            return Vec::new();
        };
        let d = node.description.clone().unwrap_or_default();
        let a = d.addresses.clone().unwrap_or_default();
        let (cpu, memory) = usage(node);
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let mut status_line = format!("status        {}", status(node));
        if !node.status_message.is_empty() {
            status_line.push_str(": ");
            status_line.push_str(&node.status_message);
        }
        let mut lines = vec![
            format!("node          {} (id {})", d.name, or_dash(&node.id)),
            status_line,
            format!("availability  {}", availability(node)),
        ];
        if let Some(drain) = node
            .drain
            .as_ref()
            .filter(|_| node.availability() == NodeAvailability::Draining)
        {
            lines.push(format!(
                "drain         started {}, deadline {}",
                cell::when(drain.started_at.as_ref()),
                cell::when(drain.deadline.as_ref())
            ));
        }
        lines.extend([
            format!(
                "addresses     advertise {}, public {}, tailscale {}, gossip {}, transfer {}",
                or_dash(&a.advertise_ip),
                or_dash(&a.public_ip),
                or_dash(&a.tailscale_ip),
                or_dash(&a.gossip_addr),
                or_dash(&a.transfer_addr)
            ),
            format!("allocated     cpu {cpu}, memory {memory}"),
            format!("labels        {}", cell::labels(&d.labels)),
            format!(
                "host          {} ({}/{}), docker {}, agent {}, priority {}",
                or_dash(&d.hostname),
                or_dash(&d.os),
                or_dash(&d.arch),
                or_dash(&d.docker_version),
                or_dash(&d.agent_version),
                d.priority
            ),
            format!(
                "seen          registered {}, last seen {}",
                cell::when(node.registered_at.as_ref()),
                cell::when(node.last_seen.as_ref())
            ),
            String::new(),
        ]);
        lines
    }
    fn header(&self) -> Vec<&'static str> {
        AllocationTable::HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        AllocationTable::rows(&self.allocations)
    }
}
