//! The task that keeps the [`View`] current: list everything, watch from the view's
//! index, resume from it after a lost stream (on the next member), re-list when the
//! control plane says the index was compacted, and publish a [`Snapshot`] after every
//! batch of events that leaves the view caught up.
//!
//! The view is kept in two copies ([`TwoCopies`]) so that a change never copies the
//! whole view while the published snapshot is still held (by the channel, at least):
//! changes go to the copy nobody reads, which first catches up on the changes it
//! missed. Consecutive responses already waiting are applied together before one
//! publication.

use super::{Lists, Snapshot, View};
use crate::upstream::Upstream;
use constellation_proto::v1::{
    ClusterStatusRequest, ClusterStatusResponse, ListAllocationsRequest, ListLeasesRequest,
    ListMigrationsRequest, ListNodesRequest, ListServicesRequest, WatchRequest, WatchResponse,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

/// The control plane sends a heartbeat every 10 s on an idle stream; a stream silent
/// for this long is treated as lost.
pub const STREAM_IDLE: Duration = Duration::from_secs(25);

/// `google.rpc.ErrorInfo` reason the control plane gives for a compacted index.
pub const INDEX_COMPACTED: &str = "INDEX_COMPACTED";

/// The control plane's largest `WatchResponse`; a full one means more are coming.
const MAX_BATCH: usize = 1000;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Responses broadcast to event subscribers (WebSocket clients) before a slow one
/// misses some.
pub const EVENT_BUFFER: usize = 4096;

/// The channels a feed publishes on.
#[derive(Debug, Clone)]
pub struct Channels {
    pub snapshots: watch::Receiver<Snapshot>,
    /// Every `WatchResponse` carrying events, after the view applied it.
    pub events: broadcast::Sender<Arc<WatchResponse>>,
}

/// The senders a feed task owns and the receivers readers clone.
pub fn channels(stale_after: Duration) -> (watch::Sender<Snapshot>, Channels) {
    let (tx, rx) = watch::channel(Snapshot::initial(stale_after));
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    (
        tx,
        Channels {
            snapshots: rx,
            events,
        },
    )
}

/// Runs until `shutdown` is cancelled, keeping the view current and publishing it.
pub async fn run(
    upstream: Arc<Upstream>,
    snapshots: watch::Sender<Snapshot>,
    events: broadcast::Sender<Arc<WatchResponse>>,
    shutdown: CancellationToken,
) {
    let stale_after = snapshots.borrow().stale_after;
    let mut feed = Feed {
        upstream,
        snapshots,
        events,
        view: TwoCopies::new(View::default()),
        target: 0,
        synced: false,
        lost_since: Some(Instant::now()),
        stale_after,
        backoff: BACKOFF_MIN,
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = feed.run() => {}
    }
}

/// How a watch ended.
enum WatchEnd {
    /// The index is older than the control plane's history: re-list.
    Compacted,
    /// The stream broke or could not be opened: resume on another member.
    Lost(Status),
}

struct Feed {
    upstream: Arc<Upstream>,
    snapshots: watch::Sender<Snapshot>,
    events: broadcast::Sender<Arc<WatchResponse>>,
    view: TwoCopies,
    /// The view is caught up once its index reaches this (the lists' largest index).
    target: u64,
    synced: bool,
    lost_since: Option<Instant>,
    stale_after: Duration,
    backoff: Duration,
}

impl Feed {
    async fn run(&mut self) {
        let mut rotate = false;
        loop {
            match self.list().await {
                Ok(()) => {}
                Err(status) => {
                    tracing::warn!(%status, "listing the cluster failed; retrying");
                    self.lost();
                    self.pause().await;
                    continue;
                }
            }
            loop {
                match self.watch(rotate).await {
                    WatchEnd::Compacted => {
                        tracing::info!(
                            index = self.view.current().index(),
                            "watch index compacted; re-listing"
                        );
                        rotate = false;
                        break;
                    }
                    WatchEnd::Lost(status) => {
                        tracing::warn!(%status, index = self.view.current().index(), "watch stream lost; resuming");
                        self.lost();
                        rotate = true;
                        self.pause().await;
                    }
                }
            }
        }
    }

    /// Lists every collection and the cluster status, and replaces the view with
    /// what they hold; events from the smallest list index on bring it up to date.
    async fn list(&mut self) -> Result<(), Status> {
        let up = &*self.upstream;
        let (services, nodes, allocations, leases, migrations, status) = tokio::try_join!(
            up.call(|mut c| async move { c.list_services(ListServicesRequest::default()).await }),
            up.call(|mut c| async move { c.list_nodes(ListNodesRequest::default()).await }),
            up.call(|mut c| async move {
                c.list_allocations(ListAllocationsRequest {
                    include_terminal: true,
                    ..Default::default()
                })
                .await
            }),
            up.call(|mut c| async move { c.list_leases(ListLeasesRequest::default()).await }),
            up.call(
                |mut c| async move { c.list_migrations(ListMigrationsRequest::default()).await }
            ),
            up.call(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await }),
        )?;
        let lists = Lists {
            services,
            nodes,
            allocations,
            leases,
            migrations,
            status,
        };
        self.target = lists.max_index();
        self.view = TwoCopies::new(View::from_lists(lists));
        tracing::info!(
            index = self.view.current().index(),
            target = self.target,
            "listed the cluster"
        );
        Ok(())
    }

    /// Watches from the view's index until the stream ends.
    async fn watch(&mut self, rotate: bool) -> WatchEnd {
        let (member, mut client) = self.upstream.streaming_client(rotate);
        let request = WatchRequest {
            from_index: self.view.current().index(),
            topics: Vec::new(),
        };
        let opened = tokio::time::timeout(self.upstream.rpc_timeout(), client.watch(request)).await;
        let mut stream = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if is_compacted(&status) => return WatchEnd::Compacted,
            Ok(Err(status)) => return WatchEnd::Lost(status),
            Err(_) => return WatchEnd::Lost(Status::deadline_exceeded("opening the watch")),
        };
        tracing::debug!(%member, from = self.view.current().index(), "watching");
        // Connected: with nothing left to replay the view is current now.
        if self.view.current().index() >= self.target {
            self.caught_up();
        }
        loop {
            let response = match tokio::time::timeout(STREAM_IDLE, stream.message()).await {
                Ok(Ok(Some(response))) => response,
                Ok(Ok(None)) => return WatchEnd::Lost(Status::unavailable("watch stream ended")),
                Ok(Err(status)) if is_compacted(&status) => return WatchEnd::Compacted,
                Ok(Err(status)) => return WatchEnd::Lost(status),
                Err(_) => {
                    return WatchEnd::Lost(Status::deadline_exceeded(format!(
                        "no message on the watch stream for {STREAM_IDLE:?}"
                    )));
                }
            };
            let mut full = self.absorb(response);
            let mut refresh = full.heartbeat || full.leadership;
            // Apply responses already waiting before publishing once.
            while full.full_batch {
                match tokio::time::timeout(Duration::ZERO, stream.message()).await {
                    Ok(Ok(Some(next))) => {
                        full = self.absorb(next);
                        refresh |= full.leadership;
                    }
                    Ok(Ok(None)) => {
                        return WatchEnd::Lost(Status::unavailable("watch stream ended"));
                    }
                    Ok(Err(status)) if is_compacted(&status) => return WatchEnd::Compacted,
                    Ok(Err(status)) => return WatchEnd::Lost(status),
                    Err(_) => break,
                }
            }
            if refresh {
                self.refresh_cluster().await;
            }
            // While a long backlog replays, readers keep the previous snapshot.
            if self.view.current().index() >= self.target && !full.full_batch {
                self.caught_up();
            }
        }
    }

    /// Applies one response to the view and hands it to event subscribers.
    fn absorb(&mut self, response: WatchResponse) -> Absorbed {
        let leadership = response.events.iter().any(|event| {
            matches!(
                event.payload,
                Some(constellation_proto::v1::event::Payload::Leadership(_))
            )
        });
        let absorbed = Absorbed {
            heartbeat: response.events.is_empty(),
            full_batch: response.events.len() >= MAX_BATCH,
            leadership,
        };
        let response = Arc::new(response);
        self.view.change(Change::Events(Arc::clone(&response)));
        if !response.events.is_empty() {
            // No subscriber is not an error.
            let _ = self.events.send(response);
        }
        absorbed
    }

    /// Refreshes members and log positions; a failure only leaves them older.
    async fn refresh_cluster(&mut self) {
        let status = self
            .upstream
            .call(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await })
            .await;
        match status {
            Ok(status) => self.view.change(Change::Cluster(status)),
            Err(status) => tracing::debug!(%status, "cluster status refresh failed"),
        }
    }

    fn caught_up(&mut self) {
        if !self.synced || self.lost_since.is_some() {
            tracing::info!(index = self.view.current().index(), "view caught up");
        }
        self.synced = true;
        self.lost_since = None;
        self.backoff = BACKOFF_MIN;
        self.publish();
    }

    fn lost(&mut self) {
        if self.lost_since.is_none() {
            self.lost_since = Some(Instant::now());
            self.publish();
        }
    }

    fn publish(&self) {
        self.snapshots.send_replace(Snapshot {
            view: Arc::clone(self.view.current()),
            synced: self.synced,
            lost_since: self.lost_since,
            stale_after: self.stale_after,
        });
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// One change to the view, kept until the spare copy has it too.
#[derive(Debug, Clone)]
pub enum Change {
    /// The events of a `WatchResponse`, and its `last_index`.
    Events(Arc<WatchResponse>),
    /// A `ClusterStatus` answer.
    Cluster(ClusterStatusResponse),
}

impl Change {
    fn apply_to(&self, view: &mut View) {
        match self {
            Change::Events(response) => {
                for event in &response.events {
                    view.apply(event);
                }
                view.advance_to(response.last_index);
            }
            Change::Cluster(status) => view.set_cluster(status.clone()),
        }
    }
}

/// Changes the spare copy may fall behind by before it is dropped (a reader held it
/// that long): catching up would cost more than the copy it saves.
const MAX_BEHIND: usize = 4096;

/// The view the feed moves and publishes, in two copies: `current` (published, so
/// held by the snapshot channel and readers) and `spare` (the previous one, which
/// readers leave once a newer one is published), with the changes `spare` misses.
///
/// A change goes to `current` when nobody else holds it. Otherwise the copies swap:
/// `spare`, once no reader holds it, catches up on the changes it missed and becomes
/// `current`. Only when a reader still holds both is the view copied (as
/// `Arc::make_mut` would on every change with one copy: with 10,000 services that copy
/// is tens of milliseconds, much more than replaying a few events). Applying events
/// is deterministic, so both copies hold the same view, journal included.
#[derive(Debug)]
pub struct TwoCopies {
    current: Arc<View>,
    spare: Option<Arc<View>>,
    behind: Vec<Change>,
}

impl TwoCopies {
    pub fn new(view: View) -> Self {
        TwoCopies {
            current: Arc::new(view),
            spare: None,
            behind: Vec::new(),
        }
    }

    /// The latest view, to publish.
    pub fn current(&self) -> &Arc<View> {
        &self.current
    }

    pub fn change(&mut self, change: Change) {
        if Arc::get_mut(&mut self.current).is_none() {
            let mut spare = self
                .spare
                .take()
                .filter(|_| self.behind.len() <= MAX_BEHIND);
            let caught_up = match spare.as_mut().and_then(Arc::get_mut) {
                Some(view) => {
                    for missed in self.behind.drain(..) {
                        missed.apply_to(view);
                    }
                    true
                }
                None => false,
            };
            let next = match spare {
                Some(spare) if caught_up => spare,
                _ => {
                    self.behind.clear();
                    Arc::new(View::clone(&self.current))
                }
            };
            self.spare = Some(std::mem::replace(&mut self.current, next));
        }
        change.apply_to(Arc::get_mut(&mut self.current).expect("current is unique here"));
        if self.spare.is_some() {
            self.behind.push(change);
        }
    }
}

struct Absorbed {
    heartbeat: bool,
    full_batch: bool,
    leadership: bool,
}

/// The control plane's answer to a watch from an index older than its history
/// (`OUT_OF_RANGE`, with an `ErrorInfo` of reason [`INDEX_COMPACTED`]). Any
/// `OUT_OF_RANGE` from Watch is taken as this, whatever its detail says: re-listing
/// is always safe, and resuming from the same index would fail the same way.
pub fn is_compacted(status: &Status) -> bool {
    status.code() == Code::OutOfRange
}
