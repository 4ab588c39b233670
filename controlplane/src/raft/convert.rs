//! Conversions between openraft's types and their protobuf forms in raft.proto. The
//! same encoding serves the on-disk log (store) and the wire (network), so an entry is
//! encoded once and the log never depends on a serde format.

use super::{Entry, LogCommand, LogId, Member, NodeId, SnapshotMeta, StoredMembership, Vote};
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

pub fn vote_to_pb(vote: &Vote) -> pb::RaftVote {
    pb::RaftVote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::RaftVote) -> Vote {
    if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    }
}

pub fn membership_to_pb(m: &Membership<NodeId, Member>) -> pb::RaftMembership {
    pb::RaftMembership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::NodeIdSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, node)| {
                let node = pb::MemberNode {
                    raft_addr: node.raft_addr.clone(),
                    api_addr: node.api_addr.clone(),
                };
                (*id, node)
            })
            .collect(),
    }
}

pub fn membership_from_pb(m: &pb::RaftMembership) -> Membership<NodeId, Member> {
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, Member> = m
        .nodes
        .iter()
        .map(|(id, node)| {
            let member = Member {
                raft_addr: node.raft_addr.clone(),
                api_addr: node.api_addr.clone(),
            };
            (*id, member)
        })
        .collect();
    Membership::new(configs, nodes)
}

pub fn stored_membership_to_pb(m: &StoredMembership) -> (Option<pb::LogId>, pb::RaftMembership) {
    (
        opt_log_id_to_pb(m.log_id().as_ref()),
        membership_to_pb(m.membership()),
    )
}

pub fn stored_membership_from_pb(
    log_id: Option<&pb::LogId>,
    m: Option<&pb::RaftMembership>,
) -> StoredMembership {
    StoredMembership::new(
        opt_log_id_from_pb(log_id),
        m.map(membership_from_pb).unwrap_or_default(),
    )
}

/// A snapshot's metadata, as the snapshot tree stores it and InstallSnapshot sends it.
pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMetaPb {
    let (last_membership_log_id, last_membership) = stored_membership_to_pb(&meta.last_membership);
    pb::SnapshotMetaPb {
        last_log_id: opt_log_id_to_pb(meta.last_log_id.as_ref()),
        last_membership_log_id,
        last_membership: Some(last_membership),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn snapshot_meta_from_pb(meta: &pb::SnapshotMetaPb) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: opt_log_id_from_pb(meta.last_log_id.as_ref()),
        last_membership: stored_membership_from_pb(
            meta.last_membership_log_id.as_ref(),
            meta.last_membership.as_ref(),
        ),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

pub fn entry_to_pb(entry: &Entry) -> pb::LogEntry {
    use pb::log_entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(true),
        EntryPayload::Normal(command) => Payload::Command(command.encoded().to_vec()),
        EntryPayload::Membership(m) => Payload::Membership(membership_to_pb(m)),
    };
    pb::LogEntry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(entry: &pb::LogEntry) -> Result<Entry> {
    use pb::log_entry::Payload;
    let log_id = entry
        .log_id
        .as_ref()
        .ok_or_else(|| Error::Internal("log entry without log_id".into()))?;
    let payload = match &entry.payload {
        Some(Payload::Blank(_)) => EntryPayload::Blank,
        Some(Payload::Command(bytes)) => EntryPayload::Normal(
            LogCommand::decode(bytes.clone())
                .map_err(|e| Error::Internal(format!("log entry command: {e}")))?,
        ),
        Some(Payload::Membership(m)) => EntryPayload::Membership(membership_from_pb(m)),
        None => return Err(Error::Internal("log entry without payload".into())),
    };
    Ok(Entry {
        log_id: log_id_from_pb(log_id),
        payload,
    })
}

/// An entry as the bytes the log stores.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_to_pb(entry).encode_to_vec()
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry> {
    let pb = pb::LogEntry::decode(bytes).map_err(|e| Error::Internal(format!("log entry: {e}")))?;
    entry_from_pb(&pb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(i: u64) -> Member {
        Member {
            raft_addr: format!("127.0.0.1:{}", 7000 + i),
            api_addr: format!("127.0.0.1:{}", 8000 + i),
        }
    }

    proptest! {
        #[test]
        fn log_ids_and_votes_round_trip(term in any::<u64>(), node in any::<u64>(), index in any::<u64>(), committed in any::<bool>()) {
            let id = LogId::new(CommittedLeaderId::new(term, node), index);
            prop_assert_eq!(log_id_from_pb(&log_id_to_pb(&id)), id);
            let vote = if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) };
            prop_assert_eq!(vote_from_pb(&vote_to_pb(&vote)), vote);
        }

        #[test]
        fn entries_round_trip(term in 0u64..100, index in 0u64..1000, kind in 0u8..3, voters in proptest::collection::btree_set(1u64..10, 1..4)) {
            let log_id = LogId::new(CommittedLeaderId::new(term, 1), index);
            let payload = match kind {
                0 => EntryPayload::Blank,
                1 => EntryPayload::Normal(LogCommand::shared(pb::Command { version: 1, ..Default::default() })),
                _ => {
                    let nodes: BTreeMap<_, _> = voters.iter().map(|i| (*i, member(*i))).collect();
                    EntryPayload::Membership(Membership::new(vec![voters.clone()], nodes))
                }
            };
            let entry = Entry { log_id, payload };
            let back = decode_entry(&encode_entry(&entry)).unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{entry:?}"));
        }
    }
}
