//! `constellation lease ls|acquire|release`: named leases with fencing tokens, for
//! operators and scripts that need one actor at a time.

use crate::connect::Global;
use crate::output::{self, Done, Tabular, cell};
use clap::Subcommand;
use constellation_proto::v1::{
    AcquireLeaseRequest, AcquireLeaseResponse, Lease, ListLeasesRequest, ListLeasesResponse,
    ReleaseLeaseRequest,
};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List leases.
    #[command(alias = "list")]
    Ls,
    /// Take a lease; fails when another holder has it.
    Acquire {
        name: String,
        /// Who takes it; the same string must be given to release it.
        #[arg(long)]
        holder: String,
        /// How long it lasts unless renewed, e.g. 10s.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Give a lease up.
    Release {
        name: String,
        #[arg(long)]
        holder: String,
        /// The fencing token acquire returned.
        #[arg(long)]
        token: u64,
    },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    let mut client = global.client().await?;
    match command {
        Command::Ls => {
            let list = client
                .list_leases(ListLeasesRequest::default())
                .await?
                .into_inner();
            output::print(global.output, &list)
        }
        Command::Acquire { name, holder, ttl } => {
            let reply = client
                .acquire_lease(AcquireLeaseRequest {
                    name: name.clone(),
                    holder: holder.clone(),
                    ttl: Some((*ttl).into()),
                })
                .await?
                .into_inner();
            output::print(global.output, &reply)?;
            if !reply.acquired {
                let current = reply.lease.as_ref().map_or("", |l| l.holder.as_str());
                anyhow::bail!("lease {name:?} is held by {current:?}");
            }
            Ok(())
        }
        Command::Release {
            name,
            holder,
            token,
        } => {
            let response = client
                .release_lease(ReleaseLeaseRequest {
                    name: name.clone(),
                    holder: holder.clone(),
                    fencing_token: *token,
                })
                .await?
                .into_inner();
            let text = format!("released lease {name}");
            output::print(global.output, &Done { text, response })
        }
    }
}

const LEASE_HEADER: [&str; 5] = ["NAME", "HOLDER", "TOKEN", "TTL", "EXPIRES"];

fn lease_row(lease: &Lease) -> Vec<String> {
    vec![
        lease.name.clone(),
        lease.holder.clone(),
        lease.fencing_token.to_string(),
        cell::duration(lease.ttl.as_ref()),
        cell::when(lease.expires_at.as_ref()),
    ]
}

impl Tabular for ListLeasesResponse {
    fn header(&self) -> Vec<&'static str> {
        LEASE_HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.leases.iter().map(lease_row).collect()
    }
}

impl Tabular for AcquireLeaseResponse {
    fn preamble(&self) -> Vec<String> {
        vec![
            if self.acquired {
                "acquired"
            } else {
                "not acquired: held by another holder"
            }
            .to_owned(),
        ]
    }
    fn header(&self) -> Vec<&'static str> {
        LEASE_HEADER.to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.lease.iter().map(lease_row).collect()
    }
}
