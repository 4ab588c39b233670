//! `constellation member add|rm`: change the control plane's Raft membership.

use crate::connect::Global;
use crate::output::{self, Tabular};
use clap::Subcommand;
use constellation_proto::v1::{AddMemberRequest, ClusterStatusResponse, RemoveMemberRequest};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a member: it joins as a learner and becomes a voter once caught up.
    Add {
        /// The new member's Raft node id (unique, never reused).
        id: u64,
        /// host:port its Raft listener is reachable at.
        #[arg(long)]
        raft_addr: String,
        /// host:port its API listener is reachable at.
        #[arg(long)]
        api_addr: String,
        /// Keep it a learner instead of promoting it to voter.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member from the cluster.
    #[command(alias = "remove")]
    Rm { id: u64 },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    let mut client = global.client().await?;
    let (text, status) = match command {
        Command::Add {
            id,
            raft_addr,
            api_addr,
            learner,
        } => {
            let reply = client
                .add_member(AddMemberRequest {
                    id: *id,
                    raft_addr: raft_addr.clone(),
                    api_addr: api_addr.clone(),
                    learner_only: *learner,
                })
                .await?
                .into_inner();
            (format!("added member {id}"), reply.status)
        }
        Command::Rm { id } => {
            let reply = client
                .remove_member(RemoveMemberRequest { id: *id })
                .await?
                .into_inner();
            (format!("removed member {id}"), reply.status)
        }
    };
    output::print(
        global.output,
        &Changed {
            text,
            status: status.unwrap_or_default(),
        },
    )
}

/// A membership change: a sentence, then the cluster status after it. JSON and YAML
/// show `{status: ...}`, the shape of both responses.
#[derive(serde::Serialize)]
struct Changed {
    #[serde(skip)]
    text: String,
    status: ClusterStatusResponse,
}

impl Tabular for Changed {
    fn preamble(&self) -> Vec<String> {
        let mut lines = vec![self.text.clone()];
        lines.extend(self.status.preamble());
        lines
    }
    fn header(&self) -> Vec<&'static str> {
        self.status.header()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.status.rows()
    }
}
