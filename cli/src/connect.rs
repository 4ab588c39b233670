//! The one place the CLI connects to the control plane: flags every command shares and
//! the channels built from them.

use crate::output::Format;
use anyhow::Context;
use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub type Client = ControlPlaneClient<Channel>;

/// Largest response accepted: lists of a few hundred nodes and thousands of
/// allocations fit with room to spare.
const MAX_RESPONSE: usize = 64 << 20;

/// Flags every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Control-plane API address; any member will do.
    #[arg(
        long,
        env = "CONSTELLATION_CONTROLPLANE",
        default_value = "127.0.0.1:7400",
        global = true
    )]
    pub controlplane: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Longest a request may take. Streams (snapshots, events) may run longer: for them
    /// it bounds connecting and, when saving a snapshot, each wait for the next chunk.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
}

/// Whether every request on a channel is bounded by `--timeout` as a whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calls {
    /// Unary requests: each bounded by `--timeout`.
    Unary,
    /// Streams, which may rightly last longer than `--timeout`: only connecting is
    /// bounded, and HTTP/2 keep-alives notice a server that went away.
    Streaming,
}

impl Global {
    /// A ControlPlane client for unary requests.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(client(self.channel(Calls::Unary).await?))
    }

    /// A ControlPlane client for streams.
    pub async fn streaming_client(&self) -> anyhow::Result<Client> {
        Ok(client(self.channel(Calls::Streaming).await?))
    }

    /// Opens a channel to the control plane.
    pub async fn channel(&self, calls: Calls) -> anyhow::Result<Channel> {
        let uri = if self.controlplane.contains("://") {
            self.controlplane.clone()
        } else {
            format!("http://{}", self.controlplane)
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .with_context(|| format!("controlplane address {uri:?}"))?
            .connect_timeout(self.timeout);
        endpoint = match calls {
            Calls::Unary => endpoint.timeout(self.timeout),
            Calls::Streaming => endpoint
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(self.timeout)
                .keep_alive_while_idle(true),
        };
        endpoint
            .connect()
            .await
            .with_context(|| format!("connect to {uri}"))
    }
}

fn client(channel: Channel) -> Client {
    ControlPlaneClient::new(channel).max_decoding_message_size(MAX_RESPONSE)
}
