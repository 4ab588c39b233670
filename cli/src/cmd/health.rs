//! `constellation health`: asks a control-plane member whether it serves, through the
//! standard grpc.health.v1 service rather than the ControlPlane API.

use crate::connect::{Calls, Global};
use crate::output::{self, Tabular};
use anyhow::Context;
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Service name to check; empty checks the server as a whole.
    #[arg(default_value = "")]
    service: String,
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

pub async fn run(global: &Global, args: &Args) -> anyhow::Result<()> {
    let mut client = HealthClient::new(global.channel(Calls::Unary).await?);
    let reply = client
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
        .context("health check")?
        .into_inner();
    let report = HealthReport {
        address: global.controlplane.clone(),
        service: args.service.clone(),
        status: reply.status().as_str_name().to_owned(),
    };
    output::print(global.output, &report)?;
    anyhow::ensure!(reply.status() == ServingStatus::Serving, "not serving");
    Ok(())
}
