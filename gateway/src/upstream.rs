//! The gateway's connection to the control plane: one lazily connected channel per
//! configured member, every unary call bounded by a timeout, and fail-over to the next
//! member when the current one is unreachable. Any member accepts every call (followers
//! forward writes to the leader), so following the leader needs nothing more than
//! moving on from a member that stopped answering.

use constellation_proto::v1::control_plane_client::ControlPlaneClient;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::{Error, Result};

pub type Client = ControlPlaneClient<Channel>;

/// Largest response accepted from the control plane: a list of every allocation of a
/// large cluster (tens of thousands) fits.
pub const MAX_RESPONSE: usize = 256 << 20;

/// Keep-alive ping interval on streams, so a member that vanished without closing the
/// connection is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

struct Member {
    addr: String,
    /// Every request bounded by the RPC timeout.
    unary: Channel,
    /// No overall bound (streams run for as long as they are useful); connecting is
    /// bounded and HTTP/2 keep-alives notice a dead peer.
    streaming: Channel,
}

/// The configured control-plane members and which one answered last.
pub struct Upstream {
    members: Vec<Member>,
    current: AtomicUsize,
    rpc_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&str> = self.members.iter().map(|m| m.addr.as_str()).collect();
        f.debug_struct("Upstream")
            .field("members", &addrs)
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish()
    }
}

impl Upstream {
    /// Channels to `addrs` (`host:port` or a URI); nothing connects until first used.
    pub fn new(addrs: &[String], rpc_timeout: Duration) -> Result<Self> {
        if addrs.is_empty() {
            return Err(Error::Config("controlplane: no address given".into()));
        }
        let members = addrs
            .iter()
            .map(|addr| {
                let uri = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("http://{addr}")
                };
                let endpoint = Endpoint::from_shared(uri)
                    .map_err(|e| Error::Config(format!("controlplane: {addr:?}: {e}")))?
                    .connect_timeout(rpc_timeout)
                    .tcp_nodelay(true);
                Ok(Member {
                    addr: addr.clone(),
                    unary: endpoint.clone().timeout(rpc_timeout).connect_lazy(),
                    streaming: endpoint
                        .http2_keep_alive_interval(KEEPALIVE)
                        .keep_alive_timeout(rpc_timeout)
                        .keep_alive_while_idle(true)
                        .connect_lazy(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            members,
            current: AtomicUsize::new(0),
            rpc_timeout,
        })
    }

    pub fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout
    }

    /// Calls `f` on the member that answered last, then on each other member in turn
    /// while the failure says the member could not be reached or did not answer in
    /// time. Any other status (not found, invalid argument, ...) is the cluster's
    /// answer and returned at once.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> std::result::Result<T, Status>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let start = self.current.load(Ordering::Relaxed);
        let n = self.members.len();
        let mut last = Status::unavailable("no control-plane member configured");
        for k in 0..n {
            let i = (start + k) % n;
            let client = self.client(i, false);
            match tokio::time::timeout(self.rpc_timeout, f(client)).await {
                Ok(Ok(response)) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if worth_another_member(&status) => {
                    tracing::debug!(member = %self.members[i].addr, %status, "control-plane member failed; trying the next");
                    last = status;
                }
                Ok(Err(status)) => return Err(status),
                Err(_) => {
                    last = Status::deadline_exceeded(format!(
                        "control-plane member {} did not answer within {:?}",
                        self.members[i].addr, self.rpc_timeout
                    ));
                }
            }
        }
        Err(last)
    }

    /// A client for streams on the member that answered last; `rotate` first moves on
    /// to the next member (after that one failed).
    pub fn streaming_client(&self, rotate: bool) -> (String, Client) {
        let n = self.members.len();
        let i = if rotate {
            let next = (self.current.load(Ordering::Relaxed) + 1) % n;
            self.current.store(next, Ordering::Relaxed);
            next
        } else {
            self.current.load(Ordering::Relaxed) % n
        };
        (self.members[i].addr.clone(), self.client(i, true))
    }

    fn client(&self, i: usize, streaming: bool) -> Client {
        let member = &self.members[i];
        let channel = if streaming {
            member.streaming.clone()
        } else {
            member.unary.clone()
        };
        ControlPlaneClient::new(channel).max_decoding_message_size(MAX_RESPONSE)
    }
}

/// Failures after which another member may do better: it could not be reached, it is
/// shutting down or has no leader, or it did not answer in time.
fn worth_another_member(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}
