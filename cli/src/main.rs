//! `constellation`: the operator's command line. Everything it does goes through the
//! control plane's gRPC API.

mod output;

use anyhow::Context;
use clap::{Parser, Subcommand};
use output::{Format, Tabular};
use serde::Serialize;
use std::time::Duration;

/// Operate a Constellation cluster.
#[derive(Debug, Parser)]
#[command(name = "constellation", version)]
struct Cli {
    /// Control-plane API address; any member will do.
    #[arg(
        long,
        env = "CONSTELLATION_CONTROLPLANE",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    controlplane: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    /// Longest a request may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask a control-plane member whether it serves (grpc.health.v1).
    Health {
        /// Service name to check; empty checks the server as a whole.
        #[arg(default_value = "")]
        service: String,
    },
}

fn main() -> std::process::ExitCode {
    constellation_proto::process::exit_status(run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Health { service } => health(&cli, service).await,
    }
}

/// Opens a channel to the control plane with the CLI's timeout on every request.
async fn channel(cli: &Cli) -> anyhow::Result<tonic::transport::Channel> {
    let uri = if cli.controlplane.contains("://") {
        cli.controlplane.clone()
    } else {
        format!("http://{}", cli.controlplane)
    };
    tonic::transport::Endpoint::from_shared(uri.clone())
        .with_context(|| format!("controlplane address {uri:?}"))?
        .connect_timeout(cli.timeout)
        .timeout(cli.timeout)
        .connect()
        .await
        .with_context(|| format!("connect to {uri}"))
}

#[derive(Serialize)]
struct HealthReport {
    address: String,
    service: String,
    status: String,
}

impl Tabular for HealthReport {
    fn header(&self) -> Vec<&'static str> {
        vec!["ADDRESS", "SERVICE", "STATUS"]
    }
    fn rows(&self) -> Vec<Vec<String>> {
        let service = if self.service.is_empty() {
            "(server)"
        } else {
            &self.service
        };
        vec![vec![
            self.address.clone(),
            service.to_owned(),
            self.status.clone(),
        ]]
    }
}

async fn health(cli: &Cli, service: &str) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(channel(cli).await?);
    let reply = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .context("health check")?
        .into_inner();
    let report = HealthReport {
        address: cli.controlplane.clone(),
        service: service.to_owned(),
        status: reply.status().as_str_name().to_owned(),
    };
    output::print(cli.output, &report)?;
    anyhow::ensure!(
        reply.status() == tonic_health::pb::health_check_response::ServingStatus::Serving,
        "not serving"
    );
    Ok(())
}
