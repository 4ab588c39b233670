//! How much the log has grown since the state was last snapshotted (entries and
//! bytes), and the signal that a snapshot is due.
//!
//! openraft 0.9 can trigger snapshots by entry count only, but a group-commit entry
//! holds anything from one command to a thousand: at 256 writers an entry carries about
//! 100 service specs (about 100 KiB), so 10,000 entries let the log reach a GB in sled
//! before the first snapshot, and writes slowed round after round as it grew. So the
//! member decides itself, by entries or bytes, whichever limit is passed first; the
//! cluster's snapshot task ([`crate::cluster`]) waits on [`LogGrowth::due`] and asks
//! openraft for a snapshot.
//!
//! Members append the same entries, so with the same limits they would all snapshot
//! (and purge) within milliseconds of one another, and the leader's appends to its
//! followers time out meanwhile. A head start ([`LogGrowth::set_head_start`]) counts a
//! different part of the limits as grown on each voter before the first snapshot it
//! builds; since every later one comes a whole limit after the member's previous one,
//! the members stay that far apart. The cluster's task sets the head start from the
//! member's place among the voters and updates it as voters join, until that first
//! snapshot.
//!
//! When a member starts, the store counts the entries the log holds past the stored
//! snapshot ([`LogGrowth::resume`]), so a restart does not postpone the next snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// Shared by a member's log store (which counts appends) and state machine (which
/// resets the count when it snapshots).
#[derive(Debug, Default)]
pub struct LogGrowth {
    entries: AtomicU64,
    bytes: AtomicU64,
    /// 0 turns a limit off.
    entry_limit: AtomicU64,
    byte_limit: AtomicU64,
    /// The part of each limit counted as grown until the member builds a snapshot:
    /// `slot / of`, packed as `slot << 32 | of` (0: none).
    head_start: AtomicU64,
    /// Whether this member has built a snapshot since it started: the head start has
    /// done its work then.
    built: AtomicBool,
    due: Notify,
}

impl LogGrowth {
    /// Snapshot once `entries` entries or `bytes` bytes of entries were appended since
    /// the last one (0: never by that measure).
    pub fn set_limits(&self, entries: u64, bytes: u64) {
        self.entry_limit.store(entries, Ordering::Relaxed);
        self.byte_limit.store(bytes, Ordering::Relaxed);
        self.signal_if_due();
    }

    /// Counts `slot / of` of each limit as already grown, until the member builds its
    /// first snapshot: the member in slot `slot` of `of` voters snapshots that much
    /// earlier than the others. Returns false, changing nothing, once it has built one.
    pub fn set_head_start(&self, slot: u64, of: u64) -> bool {
        if self.built.load(Ordering::Relaxed) {
            return false;
        }
        // Voter sets are far smaller than 2^32; clamp anything else to no head start.
        let packed = match (u32::try_from(slot), u32::try_from(of)) {
            (Ok(slot), Ok(of)) if slot < of => u64::from(slot) << 32 | u64::from(of),
            _ => 0,
        };
        self.head_start.store(packed, Ordering::Relaxed);
        self.signal_if_due();
        true
    }

    /// Entries and encoded bytes of entries appended since the last snapshot.
    pub fn since_snapshot(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Whether the log has outgrown a limit.
    pub fn is_due(&self) -> bool {
        let packed = self.head_start.load(Ordering::Relaxed);
        let (slot, of) = (packed >> 32, (packed & u64::from(u32::MAX)).max(1));
        let over = |count: &AtomicU64, limit: &AtomicU64| {
            let limit = limit.load(Ordering::Relaxed);
            let counted_grown = u128::from(limit) * u128::from(slot) / u128::from(of);
            limit > 0
                && u128::from(count.load(Ordering::Relaxed)) + counted_grown >= u128::from(limit)
        };
        over(&self.entries, &self.entry_limit) || over(&self.bytes, &self.byte_limit)
    }

    /// Resolves after an append that left the log over a limit (at once if one
    /// happened since the last call). A snapshot already building when the limit was
    /// passed resets the count before those entries, so every append over the limit
    /// signals again until a snapshot has taken them in.
    pub async fn due(&self) {
        self.due.notified().await;
    }

    /// The log held `entries` entries of `bytes` bytes past the stored snapshot when
    /// the member started.
    pub(super) fn resume(&self, entries: u64, bytes: u64) {
        self.entries.store(entries, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.signal_if_due();
    }

    pub(super) fn appended(&self, entries: u64, bytes: u64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.signal_if_due();
    }

    /// The state was captured for a snapshot: what the log holds up to here is
    /// covered, and the head start, if any, has done its work.
    pub(super) fn snapshot_built(&self) {
        self.built.store(true, Ordering::Relaxed);
        self.head_start.store(0, Ordering::Relaxed);
        self.snapshot_installed();
    }

    /// The state was replaced by a snapshot from the leader: what the log holds up to
    /// here is covered. The head start still applies, since the installed snapshot is
    /// in the leader's phase, not this member's.
    pub(super) fn snapshot_installed(&self) {
        self.entries.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    fn signal_if_due(&self) {
        if self.is_due() {
            self.due.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn signalled(growth: &LogGrowth) -> bool {
        tokio::time::timeout(Duration::from_millis(50), growth.due())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn signals_once_a_limit_is_passed_and_again_until_a_snapshot() {
        let growth = LogGrowth::default();
        // Off by default.
        growth.appended(1 << 40, 1 << 40);
        assert!(!growth.is_due());
        assert!(!signalled(&growth).await);

        growth.snapshot_built();
        growth.set_limits(0, 1000);
        growth.appended(1, 600);
        assert!(!growth.is_due());
        assert!(!signalled(&growth).await);
        growth.appended(1, 400);
        assert!(growth.is_due());
        assert!(signalled(&growth).await);
        // Still over: the next append signals again.
        growth.appended(1, 1);
        assert!(signalled(&growth).await);
        growth.snapshot_built();
        assert_eq!(growth.since_snapshot(), (0, 0));
        growth.appended(1, 999);
        assert!(!signalled(&growth).await);

        // By entries, whichever comes first.
        growth.snapshot_built();
        growth.set_limits(10, 1000);
        growth.appended(9, 9);
        assert!(!growth.is_due());
        growth.appended(1, 1);
        assert!(signalled(&growth).await);
    }

    #[tokio::test]
    async fn a_head_start_brings_only_the_first_snapshot_forward() {
        let growth = LogGrowth::default();
        growth.set_limits(300, 3000);
        growth.set_head_start(1, 3);
        growth.appended(199, 10);
        assert!(!growth.is_due());
        growth.appended(1, 10);
        assert!(signalled(&growth).await);
        growth.snapshot_built();
        // The next one comes a whole limit later.
        growth.appended(299, 10);
        assert!(!growth.is_due());
        growth.appended(1, 10);
        assert!(growth.is_due());

        // Once a snapshot was built, a head start changes nothing.
        growth.snapshot_built();
        growth.appended(0, 2000);
        assert!(!growth.set_head_start(2, 3));
        assert!(!growth.is_due());

        // Setting a head start that is already passed signals at once; an installed
        // snapshot keeps it.
        let growth = LogGrowth::default();
        growth.set_limits(0, 3000);
        growth.appended(0, 2000);
        assert!(!signalled(&growth).await);
        assert!(growth.set_head_start(2, 3));
        assert!(signalled(&growth).await);
        growth.snapshot_installed();
        assert_eq!(growth.since_snapshot(), (0, 0));
        growth.appended(0, 1000);
        assert!(growth.is_due());
    }

    #[test]
    fn head_starts_spread_the_voters_evenly() {
        for (slot, first_due) in [(0, 3072), (1, 2048), (2, 1024)] {
            let growth = LogGrowth::default();
            growth.set_limits(0, 3 * 1024);
            growth.set_head_start(slot, 3);
            growth.appended(1, first_due - 1);
            assert!(!growth.is_due(), "slot {slot}");
            growth.appended(1, 1);
            assert!(growth.is_due(), "slot {slot}");
        }
        // A huge limit does not overflow.
        let growth = LogGrowth::default();
        growth.set_limits(u64::MAX, u64::MAX);
        growth.set_head_start(2, 3);
        assert!(!growth.is_due());
    }
}
