//! `constellation service apply|ls|get|rm|rollback`: services, the desired state operators
//! write.

use crate::cmd::alloc::AllocationTable;
use crate::connect::Global;
use crate::output::{self, Done, Tabular, cell};
use crate::service_file;
use anyhow::Context;
use clap::Subcommand;
use constellation_proto::v1::{
    ApplyServiceRequest, ApplyServiceResponse, DeleteServiceRequest, GetServiceRequest,
    GetServiceResponse, ListServicesRequest, ListServicesResponse, RollbackServiceRequest, Service,
    UpdateState,
};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or replace the services defined in a file.
    Apply {
        /// YAML (.yaml, .yml) or JSON (.json) holding a ServiceSpec, a list of them or
        /// {services: [...]}; `-` reads YAML from stdin.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Validate and report what would change, without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List services.
    #[command(alias = "list")]
    Ls,
    /// Show a service and its allocations.
    Get { name: String },
    /// Delete a service; its allocations are stopped.
    #[command(alias = "delete", alias = "remove")]
    Rm { name: String },
    /// Go back to the service's previous spec, replacing its replicas as an update
    /// does; `service get` shows the progress.
    Rollback { name: String },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Apply { file, dry_run } => apply(global, file, *dry_run).await,
        Command::Ls => {
            let list = global
                .client()
                .await?
                .list_services(ListServicesRequest::default())
                .await?
                .into_inner();
            output::print(global.output, &list)
        }
        Command::Get { name } => {
            let reply = global
                .client()
                .await?
                .get_service(GetServiceRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            output::print(global.output, &reply)
        }
        Command::Rm { name } => {
            let response = global
                .client()
                .await?
                .delete_service(DeleteServiceRequest { name: name.clone() })
                .await?
                .into_inner();
            let text = format!("deleted service {name} (event index {})", response.index);
            output::print(global.output, &Done { text, response })
        }
        Command::Rollback { name } => {
            let response = global
                .client()
                .await?
                .rollback_service(RollbackServiceRequest { name: name.clone() })
                .await?
                .into_inner();
            let version = response.service.as_ref().map_or(0, |s| s.version);
            let text = format!(
                "rolling back service {name} to its previous spec as version {version} \
                 (event index {})",
                response.index
            );
            output::print(global.output, &Done { text, response })
        }
    }
}

async fn apply(global: &Global, file: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
    let specs = service_file::read(file)?;
    let mut client = global.client().await?;
    let mut applied = Applied {
        dry_run,
        results: Vec::new(),
    };
    for spec in specs {
        let name = spec.name.clone();
        let result = client
            .apply_service(ApplyServiceRequest {
                spec: Some(spec),
                expected_version: None,
                dry_run,
            })
            .await;
        match result {
            Ok(response) => applied.results.push(response.into_inner()),
            Err(status) => {
                // Show what went through before the failure, then fail.
                if !applied.results.is_empty() {
                    output::print(global.output, &applied)?;
                }
                return Err(status).with_context(|| format!("service {name:?}"));
            }
        }
    }
    output::print(global.output, &applied)
}

/// The responses to `apply`, one per service in the file.
#[derive(Serialize)]
#[serde(transparent)]
struct Applied {
    #[serde(skip)]
    dry_run: bool,
    results: Vec<ApplyServiceResponse>,
}

impl Tabular for Applied {
    fn preamble(&self) -> Vec<String> {
        if self.dry_run {
            vec!["dry run: nothing was written".to_owned()]
        } else {
            Vec::new()
        }
    }
    fn header(&self) -> Vec<&'static str> {
        vec!["NAME", "RESULT", "VERSION", "INDEX"]
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.results
            .iter()
            .map(|r| {
                let service = r.service.clone().unwrap_or_default();
                let name = service.spec.as_ref().map(|s| s.name.clone());
                let result = match (r.changed, service.version) {
                    (false, _) => "unchanged",
                    (true, 1) => "created",
                    (true, _) => "updated",
                };
                vec![
                    name.unwrap_or_default(),
                    result.to_owned(),
                    service.version.to_string(),
                    if self.dry_run {
                        "-".to_owned()
                    } else {
                        r.index.to_string()
                    },
                ]
            })
            .collect()
    }
}

const SERVICE_HEADER: [&str; 7] = [
    "NAME", "IMAGE", "VERSION", "REPLICAS", "HEALTHY", "UPDATE", "UPDATED",
];

fn service_row(service: &Service) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let status = service.status.clone().unwrap_or_default();
    vec![
        spec.name,
        spec.image,
        service.version.to_string(),
        format!("{}/{}", status.running, status.desired),
        status.healthy.to_string(),
        update_state(status.update.as_ref().map_or(0, |u| u.state)),
        cell::age(service.updated_at.as_ref()),
    ]
}

fn update_state(state: i32) -> String {
    match UpdateState::try_from(state) {
        Ok(UpdateState::Unspecified) | Err(_) => "-".to_owned(),
        Ok(state) => cell::word(state.as_str_name(), "UPDATE_STATE_"),
    }
}

impl Tabular for ListServicesResponse {
    fn header(&self) -> Vec<&'static str> {
        SERVICE_HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.services.iter().map(service_row).collect()
    }
}

impl Tabular for GetServiceResponse {
    fn preamble(&self) -> Vec<String> {
        let service = self.service.clone().unwrap_or_default();
        let spec = service.spec.clone().unwrap_or_default();
        let status = service.status.clone().unwrap_or_default();
        let mut lines = vec![
            format!("service   {}", spec.name),
            format!("image     {}", spec.image),
            format!(
                "version   {} (spec hash {})",
                service.version,
                if service.spec_hash.is_empty() {
                    "-"
                } else {
                    &service.spec_hash
                }
            ),
            format!(
                "replicas  {} desired, {} running, {} healthy",
                status.desired, status.running, status.healthy
            ),
        ];
        if let Some(update) = status.update.filter(|u| u.state != 0) {
            let mut line = format!(
                "update    {} (version {} to {})",
                update_state(update.state),
                update.from_version,
                update.to_version
            );
            if !update.message.is_empty() {
                line.push_str(": ");
                line.push_str(&update.message);
            }
            lines.push(line);
        }
        lines.push(format!(
            "created   {}, updated {}",
            cell::when(service.created_at.as_ref()),
            cell::when(service.updated_at.as_ref())
        ));
        lines.push(String::new());
        lines
    }
    fn header(&self) -> Vec<&'static str> {
        AllocationTable::HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        AllocationTable::rows(&self.allocations)
    }
}
