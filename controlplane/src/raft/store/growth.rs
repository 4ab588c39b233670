//! How many bytes the log has grown since the state was last snapshotted, and the
//! signal that a snapshot is due by size.
//!
//! openraft 0.9 triggers snapshots by entry count only, but a group-commit entry holds
//! anything from one command to a thousand: at 256 writers an entry carries about 100
//! service specs (about 100 KiB), so the default 10,000 entries let the log reach a GB
//! in sled before the first snapshot, and writes slowed round after round as it grew.
//! A byte limit bounds the log whatever the batching; the cluster's snapshot task
//! ([`crate::cluster`]) waits on [`LogGrowth::due`] and asks openraft for a snapshot.
//!
//! The count starts at zero when the member starts: a restarted member snapshots by
//! size only after another limit's worth of appends (or at the entry count).

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Shared by a member's log store (which counts appends) and state machine (which
/// resets the count when it snapshots).
#[derive(Debug, Default)]
pub struct LogGrowth {
    since_snapshot: AtomicU64,
    /// 0 turns the byte limit off.
    limit: AtomicU64,
    due: Notify,
}

impl LogGrowth {
    /// Snapshot once `bytes` of entries were appended since the last one (0: never by
    /// size).
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Encoded bytes of entries appended since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        self.since_snapshot.load(Ordering::Relaxed)
    }

    /// Whether the log has outgrown the limit.
    pub fn is_due(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit > 0 && self.since_snapshot() >= limit
    }

    /// Resolves after an append that left the log over the limit (at once if one
    /// happened since the last call). A snapshot already building when the limit was
    /// passed resets the count before those bytes, so every append over the limit
    /// signals again until a snapshot has taken them in.
    pub async fn due(&self) {
        self.due.notified().await;
    }

    pub(super) fn appended(&self, bytes: u64) {
        self.since_snapshot.fetch_add(bytes, Ordering::Relaxed);
        if self.is_due() {
            self.due.notify_one();
        }
    }

    /// The state was captured for a snapshot (or replaced by an installed one): what
    /// the log holds up to here is covered.
    pub(super) fn snapshotted(&self) {
        self.since_snapshot.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn signals_once_the_limit_is_passed_and_again_until_a_snapshot() {
        let growth = LogGrowth::default();
        let due = || tokio::time::timeout(Duration::from_millis(50), growth.due());
        // Off by default.
        growth.appended(1 << 40);
        assert!(!growth.is_due());
        assert!(due().await.is_err());

        growth.snapshotted();
        growth.set_limit(1000);
        growth.appended(600);
        assert!(!growth.is_due());
        assert!(due().await.is_err());
        growth.appended(400);
        assert!(growth.is_due());
        assert!(due().await.is_ok());
        // Still over: the next append signals again.
        growth.appended(1);
        assert!(due().await.is_ok());
        growth.snapshotted();
        assert_eq!(growth.since_snapshot(), 0);
        growth.appended(999);
        assert!(due().await.is_err());
    }
}
