//! Conversions between openraft's RPC messages and their raft.proto forms. The parts
//! (log ids, votes, entries, memberships) come from [`super::super::convert`]; this
//! file only assembles requests and responses out of them.
//!
//! Decoding is fallible: a message from the wire may lack a required field. Those
//! errors are [`Error::InvalidArgument`] so a server can answer `INVALID_ARGUMENT`.

use crate::raft::convert::{
    entry_from_pb, entry_to_pb, log_id_to_pb, opt_log_id_from_pb, opt_log_id_to_pb,
    snapshot_meta_from_pb, snapshot_meta_to_pb, vote_from_pb, vote_to_pb,
};
use crate::raft::{NodeId, SnapshotMeta, TypeConfig, Vote};
use crate::{Error, Result};
use constellation_proto::v1 as pb;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};

fn required<'a, T>(field: &'static str, value: Option<&'a T>) -> Result<&'a T> {
    value.ok_or_else(|| Error::invalid(field, "required"))
}

pub fn append_entries_request_to_pb(
    req: &AppendEntriesRequest<TypeConfig>,
) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        entries: req.entries.iter().map(entry_to_pb).collect(),
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
    }
}

pub fn append_entries_request_from_pb(
    req: &pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>> {
    let entries = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            entry_from_pb(e).map_err(|err| Error::invalid(format!("entries[{i}]"), err.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(required("vote", req.vote.as_ref())?),
        prev_log_id: opt_log_id_from_pb(req.prev_log_id.as_ref()),
        entries,
        leader_commit: opt_log_id_from_pb(req.leader_commit.as_ref()),
    })
}

/// Fails only for `PartialSuccess(None)`, which raft.proto cannot express (the oneof
/// holds a plain `LogId`). Only a network layer produces `PartialSuccess`, never
/// `Raft::append_entries`, so a server never has one to send.
pub fn append_entries_response_to_pb(
    resp: &AppendEntriesResponse<NodeId>,
) -> Result<pb::AppendEntriesResponse> {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(true),
        AppendEntriesResponse::PartialSuccess(Some(matching)) => {
            R::PartialSuccess(log_id_to_pb(matching))
        }
        AppendEntriesResponse::PartialSuccess(None) => {
            return Err(Error::Internal(
                "AppendEntries PartialSuccess(None) has no wire form".into(),
            ));
        }
        AppendEntriesResponse::Conflict => R::Conflict(true),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    Ok(pb::AppendEntriesResponse {
        result: Some(result),
    })
}

pub fn append_entries_response_from_pb(
    resp: &pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<NodeId>> {
    use pb::append_entries_response::Result as R;
    Ok(match required("result", resp.result.as_ref())? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(matching) => AppendEntriesResponse::PartialSuccess(Some(
            crate::raft::convert::log_id_from_pb(matching),
        )),
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_pb(vote)),
    })
}

pub fn vote_request_to_pb(req: &VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
    }
}

pub fn vote_request_from_pb(req: &pb::VoteRequest) -> Result<VoteRequest<NodeId>> {
    Ok(VoteRequest {
        vote: vote_from_pb(required("vote", req.vote.as_ref())?),
        last_log_id: opt_log_id_from_pb(req.last_log_id.as_ref()),
    })
}

pub fn vote_response_to_pb(resp: &VoteResponse<NodeId>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_pb(resp.last_log_id.as_ref()),
    }
}

pub fn vote_response_from_pb(resp: &pb::VoteResponse) -> Result<VoteResponse<NodeId>> {
    Ok(VoteResponse {
        vote: vote_from_pb(required("vote", resp.vote.as_ref())?),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from_pb(resp.last_log_id.as_ref()),
    })
}

/// The first message of an InstallSnapshot stream.
pub fn snapshot_header_to_pb(
    vote: &Vote,
    meta: &SnapshotMeta,
    total_bytes: u64,
) -> pb::InstallSnapshotHeader {
    pb::InstallSnapshotHeader {
        vote: Some(vote_to_pb(vote)),
        meta: Some(snapshot_meta_to_pb(meta)),
        total_bytes,
    }
}

/// The leader's vote, the snapshot's meta and its size in bytes.
pub fn snapshot_header_from_pb(
    header: &pb::InstallSnapshotHeader,
) -> Result<(Vote, SnapshotMeta, u64)> {
    Ok((
        vote_from_pb(required("header.vote", header.vote.as_ref())?),
        snapshot_meta_from_pb(required("header.meta", header.meta.as_ref())?),
        header.total_bytes,
    ))
}

pub fn snapshot_response_to_pb(vote: &Vote) -> pb::InstallSnapshotResponse {
    pb::InstallSnapshotResponse {
        vote: Some(vote_to_pb(vote)),
    }
}

/// The receiver's vote.
pub fn snapshot_response_from_pb(resp: &pb::InstallSnapshotResponse) -> Result<Vote> {
    Ok(vote_from_pb(required("vote", resp.vote.as_ref())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, LogCommand, LogId, Member, StoredMembership};
    use openraft::{CommittedLeaderId, EntryPayload, Membership};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn member(i: u64) -> Member {
        Member {
            raft_addr: format!("10.0.0.{i}:7000"),
            api_addr: format!("10.0.0.{i}:8000"),
        }
    }

    fn log_id() -> impl Strategy<Value = LogId> {
        (0u64..1000, 0u64..10, any::<u64>())
            .prop_map(|(term, node, index)| LogId::new(CommittedLeaderId::new(term, node), index))
    }

    fn vote() -> impl Strategy<Value = Vote> {
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(term, node, committed)| {
            if committed {
                Vote::new_committed(term, node)
            } else {
                Vote::new(term, node)
            }
        })
    }

    fn membership() -> impl Strategy<Value = Membership<NodeId, Member>> {
        (
            proptest::collection::btree_set(1u64..10, 1..4),
            proptest::option::of(proptest::collection::btree_set(1u64..10, 1..4)),
            proptest::collection::btree_set(10u64..13, 0..2),
        )
            .prop_map(|(voters, joint, learners)| {
                let mut configs = vec![voters];
                configs.extend(joint);
                let all: BTreeSet<_> = configs.iter().flatten().chain(&learners).copied().collect();
                let nodes: BTreeMap<_, _> = all.into_iter().map(|i| (i, member(i))).collect();
                Membership::new(configs, nodes)
            })
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let payload = prop_oneof![
            Just(EntryPayload::Blank),
            (0u32..3).prop_map(
                |version| EntryPayload::Normal(LogCommand::shared(pb::Command {
                    version,
                    ..Default::default()
                }))
            ),
            membership().prop_map(EntryPayload::Membership),
        ];
        (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
    }

    fn append_response() -> impl Strategy<Value = AppendEntriesResponse<NodeId>> {
        (0u8..4, log_id(), vote()).prop_map(|(kind, id, v)| match kind {
            0 => AppendEntriesResponse::Success,
            1 => AppendEntriesResponse::Conflict,
            2 => AppendEntriesResponse::PartialSuccess(Some(id)),
            _ => AppendEntriesResponse::HigherVote(v),
        })
    }

    proptest! {
        #[test]
        fn append_entries_requests_round_trip(
            vote in vote(),
            prev in proptest::option::of(log_id()),
            commit in proptest::option::of(log_id()),
            entries in proptest::collection::vec(entry(), 0..5),
        ) {
            let req = AppendEntriesRequest::<TypeConfig> { vote, prev_log_id: prev, entries, leader_commit: commit };
            let wire = append_entries_request_to_pb(&req);
            let back = append_entries_request_from_pb(&wire).unwrap();
            prop_assert_eq!(back.vote, req.vote);
            prop_assert_eq!(back.prev_log_id, req.prev_log_id);
            prop_assert_eq!(back.leader_commit, req.leader_commit);
            prop_assert_eq!(format!("{:?}", back.entries), format!("{:?}", req.entries));
            prop_assert_eq!(append_entries_request_to_pb(&back), wire);
        }

        #[test]
        fn append_entries_responses_round_trip(resp in append_response()) {
            let back = append_entries_response_from_pb(&append_entries_response_to_pb(&resp).unwrap()).unwrap();
            prop_assert_eq!(back, resp);
        }

        #[test]
        fn votes_round_trip(v in vote(), last in proptest::option::of(log_id()), granted in any::<bool>()) {
            let req = VoteRequest { vote: v, last_log_id: last };
            prop_assert_eq!(vote_request_from_pb(&vote_request_to_pb(&req)).unwrap(), req);
            let resp = VoteResponse { vote: v, vote_granted: granted, last_log_id: last };
            prop_assert_eq!(vote_response_from_pb(&vote_response_to_pb(&resp)).unwrap(), resp);
        }

        #[test]
        fn snapshot_headers_round_trip(
            v in vote(),
            last in proptest::option::of(log_id()),
            membership_log in proptest::option::of(log_id()),
            m in membership(),
            id in "[a-z0-9-]{0,20}",
            total in any::<u64>(),
        ) {
            let meta = SnapshotMeta {
                last_log_id: last,
                last_membership: StoredMembership::new(membership_log, m),
                snapshot_id: id,
            };
            let (v2, meta2, total2) = snapshot_header_from_pb(&snapshot_header_to_pb(&v, &meta, total)).unwrap();
            prop_assert_eq!(v2, v);
            prop_assert_eq!(meta2, meta);
            prop_assert_eq!(total2, total);
            prop_assert_eq!(snapshot_response_from_pb(&snapshot_response_to_pb(&v)).unwrap(), v);
        }
    }

    #[test]
    fn missing_fields_are_invalid_arguments() {
        let err = vote_request_from_pb(&pb::VoteRequest::default()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = append_entries_request_from_pb(&pb::AppendEntriesRequest::default()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let bad_entry = pb::AppendEntriesRequest {
            vote: Some(pb::RaftVote::default()),
            entries: vec![pb::LogEntry::default()],
            ..Default::default()
        };
        let err = append_entries_request_from_pb(&bad_entry).unwrap_err();
        assert!(err.to_string().contains("entries[0]"), "{err}");
        assert!(append_entries_response_from_pb(&pb::AppendEntriesResponse::default()).is_err());
        assert!(snapshot_header_from_pb(&pb::InstallSnapshotHeader::default()).is_err());
        assert!(
            append_entries_response_to_pb(&AppendEntriesResponse::PartialSuccess(None)).is_err()
        );
    }
}
