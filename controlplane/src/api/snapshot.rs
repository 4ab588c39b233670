//! Operator backups: SaveSnapshot streams a linearizable copy of the whole state and
//! RestoreSnapshot replaces the state with one.
//!
//! The stream format (controlplane.proto): one `SnapshotHeader`, the gzip-compressed
//! protobuf `StateSnapshot` in data chunks of at most [`CHUNK_BYTES`], then one
//! `SnapshotTrailer` with the SHA-256 and length of every data byte as sent.
//!
//! A restore checks everything before it writes anything: the order of the parts, the
//! format version, the checksum and length, that the data inflates (at most
//! [`MAX_RESTORE_STATE_BYTES`], which also defuses zip bombs) to a `StateSnapshot`, and
//! that the state it describes is consistent (`State::from_snapshot`). Only then is one
//! `RestoreCommand` committed through the Raft log.
//!
//! Limit: the restore travels as a single Raft log entry, and the peer transport
//! carries messages of at most 64 MiB, so a state whose encoding exceeds
//! [`MAX_RESTORE_STATE_BYTES`] is refused with FAILED_PRECONDITION. Restoring larger
//! states needs a restore that goes through Raft's snapshot installation instead.

use std::io::{Read, Write};

use constellation_proto::v1::{self as pb, command::Op, snapshot_chunk::Part};
use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Status, Streaming};

use crate::cluster::Cluster;
use crate::state::{SNAPSHOT_FORMAT_VERSION, State};
use crate::{Error, Result};

/// Largest data chunk of a snapshot stream.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Most compressed bytes a restore accepts before refusing the stream.
pub const MAX_COMPRESSED_BYTES: usize = 512 * 1024 * 1024;

/// Largest encoded `StateSnapshot` a restore accepts: it must fit, with room to spare,
/// into one Raft message (`raft::network::MAX_MESSAGE_BYTES`, 64 MiB).
pub const MAX_RESTORE_STATE_BYTES: usize = 48 * 1024 * 1024;

/// The SaveSnapshot response stream (the snapshot is built whole before sending).
pub type ChunkStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::SnapshotChunk, Status>>>;

/// Takes a linearizable snapshot of the state and returns it as a chunk stream.
pub async fn save(cluster: &Cluster) -> Result<ChunkStream> {
    // The same path as a Raft snapshot: only the objects are encoded under the read
    // lock (which holds up apply); the event history after it.
    let (writer, event_index) = cluster
        .read(pb::ReadConsistency::Linearizable, |state| {
            (state.begin_snapshot(), state.event_index())
        })
        .await?;
    let status = cluster.status().await?;
    let header = pb::SnapshotHeader {
        format_version: SNAPSHOT_FORMAT_VERSION,
        last_log_index: status.applied_index,
        last_log_term: status.term,
        event_index,
        cluster_version: status.version,
    };
    let data = tokio::task::spawn_blocking(move || compress(&writer.finish()))
        .await
        .map_err(|e| Error::Internal(format!("snapshot compression task: {e}")))??;
    let chunks: Vec<_> = chunks(header, &data).into_iter().map(Ok).collect();
    Ok(tokio_stream::iter(chunks))
}

fn compress(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// The parts of a snapshot stream: header, data chunks, trailer.
pub(super) fn chunks(header: pb::SnapshotHeader, data: &[u8]) -> Vec<pb::SnapshotChunk> {
    let chunk = |part| pb::SnapshotChunk { part: Some(part) };
    let trailer = pb::SnapshotTrailer {
        sha256: Sha256::digest(data).to_vec(),
        total_bytes: data.len() as u64,
    };
    std::iter::once(chunk(Part::Header(header)))
        .chain(
            data.chunks(CHUNK_BYTES)
                .map(|d| chunk(Part::Data(d.to_vec()))),
        )
        .chain(std::iter::once(chunk(Part::Trailer(trailer))))
        .collect()
}

/// Receives and checks a snapshot stream, then commits it as a `RestoreCommand`.
/// Returns the event index after the restore.
pub async fn restore(
    cluster: &Cluster,
    mut stream: Streaming<pb::SnapshotChunk>,
) -> std::result::Result<u64, Status> {
    let data = receive(&mut stream).await?;
    let snapshot = tokio::task::spawn_blocking(move || decode(&data))
        .await
        .map_err(|e| Error::Internal(format!("snapshot decoding task: {e}")))??;
    let result = cluster
        .write(pb::Command {
            op: Some(Op::Restore(pb::RestoreCommand {
                state: Some(snapshot),
            })),
            ..Default::default()
        })
        .await?;
    Ok(result.index)
}

/// Collects the data of a stream, checking the order of its parts, the header, and the
/// trailer's checksum and length.
async fn receive(
    stream: &mut Streaming<pb::SnapshotChunk>,
) -> std::result::Result<Vec<u8>, Status> {
    let mut header = false;
    let mut trailer = None;
    let mut data = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.message().await? {
        if trailer.is_some() {
            return Err(Error::invalid("trailer", "must be the last message").into());
        }
        match chunk.part {
            Some(Part::Header(h)) if !header => {
                check_header(&h)?;
                header = true;
            }
            Some(Part::Header(_)) => {
                return Err(Error::invalid("header", "sent more than once").into());
            }
            _ if !header => {
                return Err(
                    Error::invalid("header", "the first message must be the header").into(),
                );
            }
            Some(Part::Data(bytes)) => {
                if data.len() + bytes.len() > MAX_COMPRESSED_BYTES {
                    return Err(Error::invalid(
                        "data",
                        format!("more than {MAX_COMPRESSED_BYTES} bytes"),
                    )
                    .into());
                }
                hasher.update(&bytes);
                data.extend_from_slice(&bytes);
            }
            Some(Part::Trailer(t)) => trailer = Some(t),
            None => return Err(Error::invalid("part", "empty message").into()),
        }
    }
    if !header {
        return Err(Error::invalid("header", "missing: the stream was empty").into());
    }
    let trailer =
        trailer.ok_or_else(|| Error::invalid("trailer", "missing: the stream ended early"))?;
    if trailer.total_bytes != data.len() as u64 {
        return Err(Error::invalid(
            "trailer.total_bytes",
            format!(
                "is {}, but {} data bytes arrived",
                trailer.total_bytes,
                data.len()
            ),
        )
        .into());
    }
    if hasher.finalize().as_slice() != trailer.sha256.as_slice() {
        return Err(Error::invalid(
            "trailer.sha256",
            "does not match the data: the snapshot is corrupt or truncated",
        )
        .into());
    }
    Ok(data)
}

fn check_header(header: &pb::SnapshotHeader) -> Result<()> {
    if header.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(Error::invalid(
            "header.format_version",
            format!(
                "unsupported snapshot format version {} (this member reads {SNAPSHOT_FORMAT_VERSION})",
                header.format_version
            ),
        ));
    }
    Ok(())
}

/// Inflates and decodes the data, and checks the state it describes.
pub(super) fn decode(data: &[u8]) -> Result<pb::StateSnapshot> {
    let mut encoded = Vec::new();
    GzDecoder::new(data)
        .take(MAX_RESTORE_STATE_BYTES as u64 + 1)
        .read_to_end(&mut encoded)
        .map_err(|e| Error::invalid("data", format!("not a gzip stream: {e}")))?;
    if encoded.len() > MAX_RESTORE_STATE_BYTES {
        return Err(Error::FailedPrecondition(format!(
            "the snapshot's state is larger than {} MiB: restoring it as one Raft log entry \
             is not supported yet",
            MAX_RESTORE_STATE_BYTES / (1024 * 1024)
        )));
    }
    let snapshot = pb::StateSnapshot::decode(encoded.as_slice())
        .map_err(|e| Error::invalid("data", format!("not a StateSnapshot: {e}")))?;
    State::from_snapshot(snapshot.clone())?;
    Ok(snapshot)
}
