//! A session's status buffer: reports are coalesced per allocation (the last one wins)
//! and written as one `ReportStatus` command when the first buffered report has waited
//! the flush interval, or at once when the buffer holds `status_batch_max`
//! allocations. Not one Raft write per report.
//!
//! The buffer runs as its own task so a slow write never delays the session's
//! heartbeat acks; the session sends it batches over a bounded channel (which pushes
//! back on the agent while a write is slow). When the channel closes (the session
//! ended) the task writes what is left and ends.

use std::collections::BTreeMap;

use constellation_proto::v1::{self as pb, command::Op};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::DispatcherSettings;
use crate::cluster::Cluster;

/// Batches queued between a session and its buffer task.
const CHANNEL: usize = 64;

pub(super) type StatusSender = mpsc::Sender<Vec<pb::AllocationReport>>;

/// Starts the buffer task of node `node_id`'s session.
pub(super) fn spawn(
    cluster: Cluster,
    node_id: String,
    settings: &DispatcherSettings,
) -> (StatusSender, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let buffer = Buffer {
        cluster,
        node_id,
        interval: settings.status_flush_interval,
        max: settings.status_batch_max.max(1),
        pending: BTreeMap::new(),
    };
    (tx, tokio::spawn(buffer.run(rx)))
}

struct Buffer {
    cluster: Cluster,
    node_id: String,
    interval: std::time::Duration,
    max: usize,
    /// By allocation id.
    pending: BTreeMap<String, pb::AllocationReport>,
}

impl Buffer {
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<pb::AllocationReport>>) {
        // When the oldest buffered report is due; `None` while the buffer is empty.
        let mut due: Option<Instant> = None;
        loop {
            let deadline = due.unwrap_or_else(Instant::now);
            tokio::select! {
                batch = rx.recv() => {
                    let Some(reports) = batch else { break };
                    self.add(reports);
                    if self.pending.len() >= self.max {
                        self.flush().await;
                        due = None;
                    }
                }
                () = tokio::time::sleep_until(deadline), if due.is_some() => {
                    self.flush().await;
                    due = None;
                }
            }
            // Reports left after a failed write wait another interval.
            due = match (due, self.pending.is_empty()) {
                (_, true) => None,
                (Some(due), false) => Some(due),
                (None, false) => Some(Instant::now() + self.interval),
            };
        }
        self.flush().await;
        if !self.pending.is_empty() {
            tracing::warn!(
                node_id = %self.node_id, dropped = self.pending.len(),
                "dispatcher: status reports not written before the session ended"
            );
        }
    }

    fn add(&mut self, reports: Vec<pb::AllocationReport>) {
        for report in reports {
            if report.allocation_id.is_empty() || report.status.is_none() {
                continue;
            }
            self.pending.insert(report.allocation_id.clone(), report);
        }
    }

    /// Writes the buffer, at most `max` reports per command. Reports of a failed write
    /// go back into the buffer (behind any newer report of the same allocation).
    async fn flush(&mut self) {
        let reports: Vec<_> = std::mem::take(&mut self.pending).into_values().collect();
        for chunk in reports.chunks(self.max) {
            let command = pb::Command {
                op: Some(Op::ReportStatus(pb::ReportStatusCommand {
                    node_id: self.node_id.clone(),
                    reports: chunk.to_vec(),
                })),
                ..Default::default()
            };
            if let Err(e) = self.cluster.write(command).await {
                tracing::warn!(
                    node_id = %self.node_id, reports = chunk.len(), error = %e,
                    "dispatcher: writing status reports failed; retrying"
                );
                for report in chunk {
                    self.pending
                        .entry(report.allocation_id.clone())
                        .or_insert_with(|| report.clone());
                }
            }
        }
    }
}
