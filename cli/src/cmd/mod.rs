//! The subcommands: each parses its arguments, makes one or a few gRPC calls and
//! prints the result.

pub mod alloc;
pub mod events;
pub mod health;
pub mod lease;
pub mod member;
pub mod node;
pub mod service;
pub mod snapshot;
pub mod status;

use crate::connect::Global;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask a control-plane member whether it serves (grpc.health.v1).
    Health(health::Args),
    /// Show the Raft cluster: members, leader, term and log indexes.
    Status,
    /// Save or restore the whole cluster state.
    #[command(subcommand)]
    Snapshot(snapshot::Command),
    /// Apply, list, show and remove services.
    #[command(subcommand)]
    Service(service::Command),
    /// List and show nodes; cordon, uncordon and drain them.
    #[command(subcommand)]
    Node(node::Command),
    /// List allocations (the replicas of services placed on nodes).
    #[command(subcommand)]
    Alloc(alloc::Command),
    /// List, acquire and release leases.
    #[command(subcommand)]
    Lease(lease::Command),
    /// Follow the cluster's event stream, one JSON object a line, until Ctrl-C.
    Events(events::Args),
    /// Add and remove control-plane members.
    #[command(subcommand)]
    Member(member::Command),
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Health(args) => health::run(global, args).await,
        Command::Status => status::run(global).await,
        Command::Snapshot(command) => snapshot::run(global, command).await,
        Command::Service(command) => service::run(global, command).await,
        Command::Node(command) => node::run(global, command).await,
        Command::Alloc(command) => alloc::run(global, command).await,
        Command::Lease(command) => lease::run(global, command).await,
        Command::Events(args) => events::run(global, args).await,
        Command::Member(command) => member::run(global, command).await,
    }
}
