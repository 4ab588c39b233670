//! Status reports from the reconciler to the session: coalesced per allocation until
//! the session flushes them, plus the latest report of every allocation for the
//! `Hello` of the next session.

use constellation_proto::v1::AllocationReport;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    /// Changed since the last flush.
    pending: BTreeMap<String, AllocationReport>,
    /// Latest report of every allocation with a container.
    latest: BTreeMap<String, AllocationReport>,
}

/// Shared between the reconciler (which pushes) and the session (which takes).
#[derive(Debug, Default)]
pub struct StatusQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    applied_version: AtomicU64,
}

impl StatusQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `report`, replacing any unsent one for the same allocation.
    pub fn push(&self, report: AllocationReport) {
        {
            let mut inner = self.lock();
            inner
                .latest
                .insert(report.allocation_id.clone(), report.clone());
            inner.pending.insert(report.allocation_id.clone(), report);
        }
        self.notify.notify_one();
    }

    /// Queues `report` as the allocation's last one: it is sent, then forgotten.
    pub fn push_final(&self, report: AllocationReport) {
        {
            let mut inner = self.lock();
            inner.latest.remove(&report.allocation_id);
            inner.pending.insert(report.allocation_id.clone(), report);
        }
        self.notify.notify_one();
    }

    /// Forgets the allocation's latest report (it has no container any more).
    pub fn forget(&self, allocation_id: &str) {
        self.lock().latest.remove(allocation_id);
    }

    /// Everything queued since the last call.
    pub fn take(&self) -> Vec<AllocationReport> {
        std::mem::take(&mut self.lock().pending)
            .into_values()
            .collect()
    }

    /// True when reports wait to be sent.
    pub fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// Latest report of every allocation (for `Hello.running`).
    pub fn snapshot(&self) -> Vec<AllocationReport> {
        self.lock().latest.values().cloned().collect()
    }

    /// The latest report of one allocation.
    pub fn latest(&self, allocation_id: &str) -> Option<AllocationReport> {
        self.lock().latest.get(allocation_id).cloned()
    }

    /// Resolves when reports have been pushed since the last wake-up.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    pub fn set_applied_version(&self, v: u64) {
        self.applied_version.store(v, Ordering::Relaxed);
    }

    pub fn applied_version(&self) -> u64 {
        self.applied_version.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::{AllocationState, AllocationStatus};

    fn report(id: &str, state: AllocationState) -> AllocationReport {
        AllocationReport {
            allocation_id: id.into(),
            status: Some(AllocationStatus {
                state: state as i32,
                ..Default::default()
            }),
            spec_hash: String::new(),
        }
    }

    #[test]
    fn coalesces_per_allocation() {
        let q = StatusQueue::new();
        q.push(report("a", AllocationState::Preparing));
        q.push(report("a", AllocationState::Running));
        q.push(report("b", AllocationState::Failed));
        let taken = q.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            taken[0].status.as_ref().unwrap().state(),
            AllocationState::Running
        );
        assert!(q.take().is_empty());
        assert_eq!(q.snapshot().len(), 2);
        q.push_final(report("a", AllocationState::Stopped));
        assert_eq!(q.snapshot().len(), 1);
        assert_eq!(q.take().len(), 1);
    }
}
