//! `constellation status`: the Raft cluster as the answering member sees it.

use crate::connect::Global;
use crate::output::{self, Tabular, cell};
use constellation_proto::v1::{ClusterStatusRequest, ClusterStatusResponse, MemberRole};

pub async fn run(global: &Global) -> anyhow::Result<()> {
    let status = global
        .client()
        .await?
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner();
    output::print(global.output, &status)
}

impl Tabular for ClusterStatusResponse {
    fn preamble(&self) -> Vec<String> {
        vec![format!(
            "leader {}, term {}, last log {}, commit {}, applied {}, event index {} (answered by member {}{})",
            cell::opt(self.leader_id),
            self.term,
            self.last_log_index,
            self.commit_index,
            self.applied_index,
            self.event_index,
            self.id,
            if self.version.is_empty() {
                String::new()
            } else {
                format!(", version {}", self.version)
            },
        )]
    }

    fn header(&self) -> Vec<&'static str> {
        vec![
            "ID",
            "RAFT ADDR",
            "API ADDR",
            "ROLE",
            "LEADER",
            "MATCHED",
            "LAG",
        ]
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.members
            .iter()
            .map(|m| {
                vec![
                    m.id.to_string(),
                    m.raft_addr.clone(),
                    m.api_addr.clone(),
                    match m.role() {
                        MemberRole::Voter => "voter".to_owned(),
                        MemberRole::Learner => "learner".to_owned(),
                        MemberRole::Unspecified => "-".to_owned(),
                    },
                    if m.leader { "*" } else { "" }.to_owned(),
                    cell::opt(m.matched_index),
                    cell::opt(m.lag),
                ]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Format, render};
    use constellation_proto::v1::Member;

    fn status() -> ClusterStatusResponse {
        let member = |id: u64, role: MemberRole, leader, matched, lag| Member {
            id,
            raft_addr: format!("10.0.0.{id}:7401"),
            api_addr: format!("10.0.0.{id}:7400"),
            role: role as i32,
            leader,
            matched_index: matched,
            lag,
        };
        ClusterStatusResponse {
            id: 2,
            members: vec![
                member(1, MemberRole::Voter, true, Some(1042), Some(0)),
                member(2, MemberRole::Voter, false, Some(1040), Some(2)),
                member(3, MemberRole::Learner, false, None, None),
            ],
            leader_id: Some(1),
            term: 7,
            last_log_index: 1042,
            commit_index: 1042,
            applied_index: 1041,
            event_index: 311,
            version: "0.1.0".to_owned(),
        }
    }

    #[test]
    fn table_has_a_summary_line_and_a_row_per_member() {
        let text = render(Format::Table, &status()).unwrap();
        let expected = "\
leader 1, term 7, last log 1042, commit 1042, applied 1041, event index 311 (answered by member 2, version 0.1.0)
ID  RAFT ADDR      API ADDR       ROLE     LEADER  MATCHED  LAG
1   10.0.0.1:7401  10.0.0.1:7400  voter    *       1042     0
2   10.0.0.2:7401  10.0.0.2:7400  voter            1040     2
3   10.0.0.3:7401  10.0.0.3:7400  learner          -        -
";
        assert_eq!(text, expected);
    }

    #[test]
    fn no_leader_reads_as_none() {
        let mut status = status();
        status.leader_id = None;
        status.members.clear();
        status.version.clear();
        let text = render(Format::Table, &status).unwrap();
        assert!(
            text.starts_with("leader -, term 7,") && text.contains("(answered by member 2)\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2, "summary and column titles: {text}");
    }

    #[test]
    fn json_is_the_protocol_message() {
        let text = render(Format::Json, &status()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["leader_id"], "1");
        assert_eq!(value["members"][2]["role"], "MEMBER_ROLE_LEARNER");
        let back: ClusterStatusResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status());
    }
}
