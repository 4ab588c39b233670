//! `constellation events`: the Watch stream, one event a line as JSON (ndjson) whatever
//! `-o` says, until Ctrl-C. Heartbeats print nothing.

use crate::connect::Global;
use crate::output;
use anyhow::Context;
use constellation_proto::v1::{Topic, WatchRequest};
use tonic_types::StatusExt;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print events after this index; 0 starts at the oldest one retained.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Only these topics, comma-separated: node, service, allocation, health,
    /// leadership, lease, migration. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = parse_topic)]
    topic: Vec<Topic>,
}

fn parse_topic(name: &str) -> Result<Topic, String> {
    match Topic::from_str_name(&format!("TOPIC_{}", name.trim().to_ascii_uppercase())) {
        Some(Topic::Unspecified) | None => Err(
            "expected one of node, service, allocation, health, leadership, lease, migration"
                .to_owned(),
        ),
        Some(topic) => Ok(topic),
    }
}

pub async fn run(global: &Global, args: &Args) -> anyhow::Result<()> {
    let mut client = global.streaming_client().await?;
    let request = WatchRequest {
        from_index: args.from,
        topics: args.topic.iter().map(|t| *t as i32).collect(),
    };
    let mut stream = tokio::time::timeout(global.timeout, client.watch(request))
        .await
        .map_err(|_| anyhow::anyhow!("the server did not answer within {:?}", global.timeout))?
        .map_err(|status| explain(status, args.from))?
        .into_inner();
    let mut last = args.from;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let message = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            message = stream.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => anyhow::bail!(
                "the server ended the watch after event {last}; resume with --from {last}"
            ),
            Err(status) if compacted(&status) => return Err(explain(status, last)),
            Err(status) => {
                return Err(status).with_context(|| {
                    format!("watch broke after event {last}; resume with --from {last}")
                });
            }
        };
        let mut lines = String::new();
        for event in &response.events {
            lines.push_str(&serde_json::to_string(event)?);
            lines.push('\n');
            last = last.max(event.index);
        }
        if !lines.is_empty() {
            output::write_stdout(&lines)?;
        }
    }
}

/// Whether the server no longer has the events the watch asked for.
fn compacted(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "INDEX_COMPACTED")
}

/// A status, with what to do about an index older than the server's history.
fn explain(status: tonic::Status, from: u64) -> anyhow::Error {
    if compacted(&status) && from > 0 {
        anyhow::anyhow!(
            "{} (--from 0 starts at the oldest event retained)",
            status.message()
        )
    } else {
        status.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_by_short_name() {
        assert_eq!(parse_topic("node"), Ok(Topic::Node));
        assert_eq!(parse_topic("Leadership"), Ok(Topic::Leadership));
        assert!(parse_topic("unspecified").is_err());
        assert!(parse_topic("nodes").is_err());
    }
}
