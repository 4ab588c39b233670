//! The newest log entries kept in memory beside sled, so that what was just appended
//! is read back without touching sled or decoding its commands again.
//!
//! openraft 0.9 reads every entry back through the log reader at least twice after
//! appending it: each replication task reads it to send it to its follower, and the
//! core reads the committed entries to hand them to the state machine. Decoding a
//! batch of commands took 7-12% of a member's CPU at 256 clients (perf, 2026-12-03).
//! Entries carry their command behind an `Arc`, so a read from here copies pointers.
//!
//! The cache is always a suffix of the log (possibly empty): appends add at the end of
//! the log, truncation removes from the end, purging and the size bounds remove from
//! the front. A read is answered here only when its start lies inside the cache;
//! anything older comes from sled.

use crate::raft::Entry;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// Most entries kept.
const MAX_ENTRIES: usize = 4096;

/// Most encoded bytes kept (a batch entry can be up to 1 MiB).
const MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub(super) struct RecentEntries {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Consecutive entries with their encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Inner {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index + 1)
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }
}

impl RecentEntries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records entries just appended to the log (and made readable there), in order,
    /// with their encoded sizes.
    pub(super) fn appended(&self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        let mut inner = self.lock();
        for (entry, size) in entries {
            // Appends continue the log; anything else means the cache no longer
            // mirrors its end, so it starts over from this entry.
            if inner
                .next_index()
                .is_some_and(|next| next != entry.log_id.index)
            {
                inner.entries.clear();
                inner.bytes = 0;
            }
            inner.bytes += size;
            inner.entries.push_back((entry, size));
            while inner.entries.len() > MAX_ENTRIES
                || (inner.bytes > MAX_BYTES && inner.entries.len() > 1)
            {
                inner.pop_front();
            }
        }
    }

    /// Entries from `start` up to `end` (exclusive; `None` for the end of the log),
    /// or `None` when `start` is older than the cache (read sled instead).
    pub(super) fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let inner = self.lock();
        let first = inner.first_index()?;
        if start < first {
            return None;
        }
        let end = end.unwrap_or(u64::MAX);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        Some(
            inner
                .entries
                .iter()
                .skip(skip)
                .map(|(e, _)| e)
                .take_while(|e| e.log_id.index < end)
                .cloned()
                .collect(),
        )
    }

    /// Forgets entries at `index` and after (the log was truncated there).
    pub(super) fn truncated(&self, index: u64) {
        let mut inner = self.lock();
        while inner
            .entries
            .back()
            .is_some_and(|(entry, _)| entry.log_id.index >= index)
        {
            if let Some((_, size)) = inner.entries.pop_back() {
                inner.bytes -= size;
            }
        }
    }

    /// Forgets entries up to and including `index` (the log was purged there).
    pub(super) fn purged(&self, index: u64) {
        let mut inner = self.lock();
        while inner.first_index().is_some_and(|first| first <= index) {
            inner.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::LogId;
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    fn entry(index: u64) -> (Entry, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 100)
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn reads_inside_the_cache_are_answered_and_older_ones_are_not() {
        let recent = RecentEntries::default();
        assert_eq!(indexes(recent.get(0, None)), None);
        recent.appended((5..10).map(entry));
        assert_eq!(indexes(recent.get(4, None)), None);
        assert_eq!(indexes(recent.get(5, Some(7))), Some(vec![5, 6]));
        assert_eq!(indexes(recent.get(8, None)), Some(vec![8, 9]));
        assert_eq!(indexes(recent.get(10, None)), Some(vec![]));
    }

    #[test]
    fn truncation_purge_and_a_gap_keep_it_a_suffix() {
        let recent = RecentEntries::default();
        recent.appended((1..=6).map(entry));
        recent.truncated(4);
        assert_eq!(indexes(recent.get(1, None)), Some(vec![1, 2, 3]));
        recent.purged(1);
        assert_eq!(indexes(recent.get(1, None)), None);
        assert_eq!(indexes(recent.get(2, None)), Some(vec![2, 3]));
        // Entries that do not continue the cache replace it.
        recent.appended([entry(9)]);
        assert_eq!(indexes(recent.get(2, None)), None);
        assert_eq!(indexes(recent.get(9, None)), Some(vec![9]));
    }

    proptest! {
        /// Against a plain model of the log: whatever the cache answers is exactly the
        /// model's entries for that range, and its size bounds hold.
        #[test]
        fn answers_agree_with_the_log(ops in proptest::collection::vec((0u8..3, 1u64..40), 1..60), reads in proptest::collection::vec((0u64..300, proptest::option::of(0u64..300)), 1..20)) {
            let recent = RecentEntries::default();
            let mut log: Vec<u64> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 => {
                        let next = log.last().map_or(1, |l| l + 1);
                        let new: Vec<u64> = (next..next + n).collect();
                        recent.appended(new.iter().map(|&i| entry(i)));
                        log.extend(new);
                    }
                    1 => {
                        let at = log.first().map_or(1, |f| f + n % (log.len() as u64 + 1));
                        recent.truncated(at);
                        log.retain(|&i| i < at);
                    }
                    _ => {
                        let upto = log.first().map_or(0, |f| f + n % 8);
                        recent.purged(upto);
                        log.retain(|&i| i > upto);
                    }
                }
            }
            prop_assert!(recent.lock().entries.len() <= MAX_ENTRIES);
            for (start, end) in reads {
                if let Some(got) = indexes(recent.get(start, end)) {
                    let want: Vec<u64> = log.iter().copied()
                        .filter(|&i| i >= start && end.is_none_or(|e| i < e))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
