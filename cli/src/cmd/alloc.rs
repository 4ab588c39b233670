//! `constellation alloc ls`: allocations, the replicas of services placed on nodes.

use crate::connect::Global;
use crate::output::{self, Tabular, cell};
use clap::Subcommand;
use constellation_proto::v1::{
    Allocation, AllocationDesiredState, AllocationState, AllocationStatus, HealthState,
    ListAllocationsRequest, ListAllocationsResponse,
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List allocations: by default the live ones of every service on every node.
    #[command(alias = "list")]
    Ls {
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// Only those on this node.
        #[arg(long)]
        node: Option<String>,
        /// Also stopped, failed and lost allocations still retained.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    let Command::Ls { service, node, all } = command;
    let list = global
        .client()
        .await?
        .list_allocations(ListAllocationsRequest {
            service_name: service.clone().unwrap_or_default(),
            node_name: node.clone().unwrap_or_default(),
            include_terminal: *all,
            ..Default::default()
        })
        .await?
        .into_inner();
    output::print(global.output, &list)
}

impl Tabular for ListAllocationsResponse {
    fn header(&self) -> Vec<&'static str> {
        AllocationTable::HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        AllocationTable::rows(&self.allocations)
    }
}

/// The allocation columns, shared by `alloc ls`, `service get` and `node get`.
pub struct AllocationTable;

impl AllocationTable {
    pub const HEADER: [&'static str; 11] = [
        "ID",
        "SERVICE",
        "SLOT",
        "NODE",
        "DESIRED",
        "STATE",
        "HEALTH",
        "RESTARTS",
        "ENDPOINTS",
        "AGE",
        "MESSAGE",
    ];

    pub fn rows(allocations: &[Allocation]) -> Vec<Vec<String>> {
        allocations.iter().map(row).collect()
    }
}

fn row(a: &Allocation) -> Vec<String> {
    let status = a.status.clone().unwrap_or_default();
    let desired = match a.desired_state() {
        AllocationDesiredState::Unspecified | AllocationDesiredState::Run => "run",
        AllocationDesiredState::Stop => "stop",
    };
    let mut state = match status.state() {
        AllocationState::Unspecified => "pending".to_owned(),
        s => cell::word(s.as_str_name(), "ALLOCATION_STATE_"),
    };
    if !status.active_fallback.is_empty() {
        state = format!("{state} (fallback {})", status.active_fallback);
    }
    let health = match status.health() {
        HealthState::Unspecified => "-".to_owned(),
        h => cell::word(h.as_str_name(), "HEALTH_STATE_"),
    };
    let endpoints = status
        .endpoints
        .iter()
        .map(|e| format!("{}:{}->{}", e.host_ip, e.host_port, e.container_port))
        .collect::<Vec<_>>();
    vec![
        a.id.clone(),
        a.service_name.clone(),
        a.slot.to_string(),
        if a.node_name.is_empty() {
            a.node_id.clone()
        } else {
            a.node_name.clone()
        },
        desired.to_owned(),
        state,
        health,
        status.restart_count.to_string(),
        if endpoints.is_empty() {
            "-".to_owned()
        } else {
            endpoints.join(",")
        },
        cell::age(a.created_at.as_ref()),
        message(a, &status),
    ]
}

/// Why the allocation is as it is: the control plane's word when it gave one (a
/// replacement's due time, or why there will be none), else the agent's last message.
fn message(a: &Allocation, status: &AllocationStatus) -> String {
    [&a.desired_description, &status.message]
        .into_iter()
        .find(|m| !m.is_empty())
        .map_or_else(|| "-".to_owned(), |m| m.replace('\n', " "))
}
