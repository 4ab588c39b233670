use super::*;
use crate::raft::{LogCommand, Member};
use openraft::storage::RaftLogStorageExt;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Membership};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use tempfile::TempDir;

/// Opens a store in a fresh temporary directory, removed when the guard drops.
struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageIOError::write(ctx(&e, "creating a temporary directory")))?;
        let (log, sm) =
            open(dir.path()).map_err(|e| StorageIOError::write(ctx(&e, "opening the store")))?;
        Ok((dir, log, sm))
    }
}

/// openraft's own conformance suite. It builds its own tokio runtimes, so this is a
/// plain test.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStoreBuilder).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

fn membership(voters: &[u64]) -> Membership<u64, Member> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: BTreeMap<u64, Member> = voters
        .iter()
        .map(|i| {
            let member = Member {
                raft_addr: format!("10.0.0.{i}:7000"),
                api_addr: format!("10.0.0.{i}:8000"),
            };
            (*i, member)
        })
        .collect();
    Membership::new(vec![voters], nodes)
}

fn membership_entry(term: u64, index: u64, voters: &[u64]) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(membership(voters)),
    }
}

fn command_entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(LogCommand::shared(pb::Command {
            version: 1,
            ..Default::default()
        })),
    }
}

/// A command that changes the state: registering node `name`.
fn register_entry(term: u64, index: u64, name: &str) -> Entry {
    let op = pb::command::Op::RegisterNode(pb::RegisterNodeCommand {
        node_id: format!("id-{name}"),
        description: Some(pb::NodeDescription {
            name: name.into(),
            ..Default::default()
        }),
    });
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(LogCommand::shared(pb::Command {
            version: crate::state::COMMAND_VERSION,
            proposed_at: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            op: Some(op),
        })),
    }
}

fn debug<T: Debug>(value: &T) -> String {
    format!("{value:?}")
}

#[tokio::test]
async fn log_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries = vec![
        membership_entry(1, 0, &[1, 2, 3]),
        blank(1, 1),
        command_entry(1, 2),
        command_entry(2, 3),
    ];
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        assert!(!log.is_initialized().unwrap());
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        log.save_committed(Some(log_id(2, 3))).await.unwrap();
        assert!(log.is_initialized().unwrap());
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert!(log.is_initialized().unwrap());
    let back = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(debug(&back), debug(&entries));
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 3)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(2, 3)));

    // Ranges are index ranges, whatever the bounds.
    let mut reader = log.get_log_reader().await;
    let indexes = |v: Vec<Entry>| v.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
    assert_eq!(
        indexes(reader.try_get_log_entries(1..3).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        indexes(reader.try_get_log_entries(1..=3).await.unwrap()),
        [1, 2, 3]
    );
    assert_eq!(
        indexes(reader.try_get_log_entries(2..).await.unwrap()),
        [2, 3]
    );
    assert_eq!(
        indexes(
            reader
                .try_get_log_entries(Range { start: 3, end: 1 })
                .await
                .unwrap()
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        indexes(reader.try_get_log_entries(u64::MAX..).await.unwrap()),
        Vec::<u64>::new()
    );
}

#[tokio::test]
async fn vote_alone_initializes_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.save_vote(&Vote::new(5, 2)).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert!(log.is_initialized().unwrap());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(5, 2)));
    assert_eq!(log.read_committed().await.unwrap(), None);
}

#[tokio::test]
async fn truncate_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append((0..=10).map(|i| blank(1, i)))
            .await
            .unwrap();
        log.truncate(log_id(1, 8)).await.unwrap();
        log.purge(log_id(1, 4)).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
    assert_eq!(state.last_log_id, Some(log_id(1, 7)));
    let left: Vec<u64> = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(left, [5, 6, 7]);

    // Purging everything: the last log id falls back to the last purged one.
    log.purge(log_id(1, 7)).await.unwrap();
    drop(log);
    drop(_sm);
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert!(log.is_initialized().unwrap());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 7)));
    assert_eq!(state.last_log_id, Some(log_id(1, 7)));
    assert!(log.try_get_log_entries(..).await.unwrap().is_empty());
}

/// A purge returns once the purged id is recorded; its entries are deleted after. What
/// a crash leaves below the purged id is not part of the log, and the next purge
/// deletes it.
#[tokio::test]
async fn purged_entries_left_on_disk_are_not_read_and_go_with_the_next_purge() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        log.blocking_append((0..=9).map(|i| blank(1, i)))
            .await
            .unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
        // As if the process died before the background deletion: put two back.
        for i in [2, 3] {
            let entry = convert::encode_entry(&blank(1, i));
            log.logs.insert(index_key(i), entry).unwrap();
        }
        log.flush().await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let indexes = |entries: Vec<Entry>| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
    assert_eq!(
        indexes(log.try_get_log_entries(..).await.unwrap()),
        [4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        indexes(log.try_get_log_entries(2..6).await.unwrap()),
        [4, 5]
    );
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 9)));

    log.purge(log_id(1, 5)).await.unwrap();
    assert_eq!(
        indexes(log.try_get_log_entries(..).await.unwrap()),
        [6, 7, 8, 9]
    );
    // The deletion runs in the background: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.logs.len() != 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} entries left",
            log.logs.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        log.logs.first().unwrap().map(|(k, _)| key_index(&k)),
        Some(Some(6))
    );
}

#[tokio::test]
async fn apply_tracks_membership_and_publishes_the_event_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).unwrap();
    let mut applied = sm.subscribe_applied();
    assert_eq!(*applied.borrow_and_update(), 0);
    assert_eq!(sm.applied_state().await.unwrap().0, None);

    // Blank and membership entries answer with a default result and change no state.
    let results = sm
        .apply([membership_entry(1, 0, &[1, 2]), blank(1, 1), blank(2, 2)])
        .await
        .unwrap();
    assert_eq!(results, vec![CommandResult::default(); 3]);
    assert!(!applied.has_changed().unwrap());
    let (last, stored) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(2, 2)));
    assert_eq!(stored.log_id(), &Some(log_id(1, 0)));
    assert_eq!(stored.membership(), &membership(&[1, 2]));

    // A command goes through State::apply; its event wakes subscribers.
    let results = sm
        .apply([register_entry(2, 3, "a"), register_entry(2, 4, "b")])
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2]);
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), 2);
    assert_eq!(sm.state().read().await.event_index(), 2);
    assert_eq!(sm.last_applied(), Some(log_id(2, 4)));
}

#[tokio::test]
async fn snapshot_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let built = {
        let (_log, mut sm) = open(dir.path()).unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none());
        sm.apply([
            membership_entry(1, 0, &[1, 2, 3]),
            blank(1, 1),
            register_entry(3, 2, "app"),
        ])
        .await
        .unwrap();
        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(3, 2)));
        assert!(
            built.meta.snapshot_id.starts_with("3-2-"),
            "{}",
            built.meta.snapshot_id
        );
        built
    };

    let (log, mut sm) = open(dir.path()).unwrap();
    assert!(log.is_initialized().unwrap());
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("stored snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
    let (last, stored) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(3, 2)));
    assert_eq!(
        stored,
        StoredMembership::new(Some(log_id(1, 0)), membership(&[1, 2, 3]))
    );
    // The state itself came back from the snapshot.
    {
        let state = sm.state();
        let state = state.read().await;
        assert_eq!(state.event_index(), 1);
        assert_eq!(state.nodes().count(), 1);
    }
    assert_eq!(*sm.subscribe_applied().borrow(), 1);

    // A second build after restart gets a fresh id.
    let again = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(again.meta.last_log_id, built.meta.last_log_id);
    assert_ne!(again.meta.snapshot_id, built.meta.snapshot_id);
}

#[tokio::test]
async fn installed_snapshot_survives_reopen() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (_l, mut leader) = open(leader_dir.path()).unwrap();
    leader
        .apply([
            membership_entry(1, 0, &[1, 2]),
            register_entry(1, 1, "a"),
            register_entry(1, 2, "b"),
        ])
        .await
        .unwrap();
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let want = (
        Some(log_id(1, 2)),
        StoredMembership::new(Some(log_id(1, 0)), membership(&[1, 2])),
    );
    {
        let (_f, mut follower) = open_with_history(follower_dir.path(), 7).unwrap();
        let mut woken = follower.subscribe_applied();
        let mut received = follower.begin_receiving_snapshot().await.unwrap();
        received
            .get_mut()
            .extend_from_slice(built.snapshot.get_ref());
        follower
            .install_snapshot(&built.meta, received)
            .await
            .unwrap();
        assert_eq!(follower.applied_state().await.unwrap(), want);
        assert!(woken.has_changed().unwrap());
        assert_eq!(*woken.borrow_and_update(), 2);
        let state = follower.state();
        let state = state.read().await;
        assert_eq!(state.nodes().count(), 2);
        // The member's own history setting survives the install.
        assert_eq!(state.history_capacity(), 7);
    }
    let (_f, mut follower) = open(follower_dir.path()).unwrap();
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);
    assert_eq!(follower.applied_state().await.unwrap(), want);
    assert_eq!(follower.state().read().await.event_index(), 2);
}

#[tokio::test]
async fn older_snapshot_does_not_replace_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, sm) = open(dir.path()).unwrap();
    let meta = |index: u64, id: &str| SnapshotMeta {
        last_log_id: Some(log_id(1, index)),
        last_membership: StoredMembership::default(),
        snapshot_id: id.to_string(),
    };
    sm.inner
        .write_snapshot(&meta(5, "new"), b"new")
        .await
        .unwrap();
    sm.inner
        .write_snapshot(&meta(3, "old"), b"old")
        .await
        .unwrap();
    let (stored, data) = read_snapshot(&sm.inner.snapshot).unwrap().unwrap();
    assert_eq!(stored.snapshot_id, "new");
    assert_eq!(data, b"new");
}

#[test]
fn snapshot_meta_round_trips() {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(4, 9)),
        last_membership: StoredMembership::new(Some(log_id(2, 3)), membership(&[1, 3])),
        snapshot_id: "4-9-17".into(),
    };
    assert_eq!(
        convert::snapshot_meta_from_pb(&convert::snapshot_meta_to_pb(&meta)),
        meta
    );
    let empty = SnapshotMeta::default();
    assert_eq!(
        convert::snapshot_meta_from_pb(&convert::snapshot_meta_to_pb(&empty)),
        empty
    );
}
