//! `constellation snapshot save|restore|verify`: the whole cluster state to and from a
//! file in the format of `snapshot_file`. Save writes `FILE.tmp` and renames it only
//! once the stream checked out; restore checks the whole file before sending a byte.

use crate::connect::Global;
use crate::output::{self, Done};
use crate::progress;
use crate::snapshot_file::{MAX_DATA_CHUNK, Reader, Summary, Writer};
use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use constellation_proto::v1::{SaveSnapshotRequest, SnapshotChunk, snapshot_chunk::Part};
use serde::Serialize;
use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save a consistent copy of the cluster state to FILE (replacing FILE if it exists).
    Save { file: PathBuf },
    /// Replace the cluster's entire state with the snapshot in FILE.
    Restore {
        file: PathBuf,
        /// Required: restoring discards every change made since the snapshot was taken.
        #[arg(long)]
        force: bool,
    },
    /// Check a snapshot file without contacting the cluster.
    Verify { file: PathBuf },
}

pub async fn run(global: &Global, command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Save { file } => save(global, file).await,
        Command::Restore { file, force } => restore(global, file, *force).await,
        Command::Verify { file } => {
            let summary = verify(file.clone()).await?;
            print_summary(global, "verified", file, &summary)
        }
    }
}

/// What save and verify print; in JSON and YAML, the header and trailer as protocol
/// messages plus the file's size.
#[derive(Serialize)]
struct FileReport<'a> {
    path: String,
    file_bytes: u64,
    sha256: String,
    header: &'a constellation_proto::v1::SnapshotHeader,
    trailer: &'a constellation_proto::v1::SnapshotTrailer,
}

fn print_summary(
    global: &Global,
    verb: &str,
    path: &Path,
    summary: &Summary,
) -> anyhow::Result<()> {
    let h = &summary.header;
    let text = format!(
        "{verb} {}\n  data      {} bytes, sha256 {}\n  file      {} bytes\n  index     event {}, log {} (term {})\n  format    {}, written by {}",
        path.display(),
        summary.trailer.total_bytes,
        summary.sha256_hex(),
        summary.file_bytes,
        h.event_index,
        h.last_log_index,
        h.last_log_term,
        h.format_version,
        if h.cluster_version.is_empty() {
            "an unknown version"
        } else {
            &h.cluster_version
        },
    );
    let response = FileReport {
        path: path.display().to_string(),
        file_bytes: summary.file_bytes,
        sha256: summary.sha256_hex(),
        header: &summary.header,
        trailer: &summary.trailer,
    };
    output::print(global.output, &Done { text, response })
}

async fn save(global: &Global, path: &Path) -> anyhow::Result<()> {
    let mut client = global.streaming_client().await?;
    let mut stream =
        tokio::time::timeout(global.timeout, client.save_snapshot(SaveSnapshotRequest {}))
            .await
            .map_err(|_| {
                anyhow!(
                    "the server did not start the snapshot within {:?}",
                    global.timeout
                )
            })??
            .into_inner();

    let (tmp, file) = PartialFile::create(path)?;
    let mut writer = Writer::new(BufWriter::new(file))
        .with_context(|| format!("write {}", tmp.path.display()))?;
    let bar = progress::bytes("saving snapshot", None);
    loop {
        let message = tokio::time::timeout(global.timeout, stream.message())
            .await
            .map_err(|_| {
                anyhow!(
                    "the server sent nothing for {:?} after {} bytes",
                    global.timeout,
                    writer.data_bytes()
                )
            })??;
        let Some(SnapshotChunk { part }) = message else {
            break;
        };
        let part = part.ok_or_else(|| anyhow!("the server sent an empty snapshot chunk"))?;
        writer
            .push(part)
            .with_context(|| format!("write {}", tmp.path.display()))?;
        bar.set_position(writer.data_bytes());
    }
    bar.finish_and_clear();
    let (out, summary) = writer
        .finish()
        .with_context(|| format!("write {}", tmp.path.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("write {}", tmp.path.display()))?;
    tmp.commit(file)?;
    print_summary(global, "saved", path, &summary)
}

/// `FILE.tmp` while a snapshot is being written: removed unless committed, so a failed
/// save never leaves a file that looks like a snapshot.
struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PartialFile {
    fn create(target: &Path) -> anyhow::Result<(Self, std::fs::File)> {
        let mut name = OsString::from(
            target
                .file_name()
                .ok_or_else(|| anyhow!("{} is not a file name", target.display()))?,
        );
        name.push(".tmp");
        let path = target.with_file_name(name);
        let file =
            std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let partial = PartialFile {
            path,
            target: target.to_owned(),
            committed: false,
        };
        Ok((partial, file))
    }

    /// Makes the file durable and gives it its final name.
    fn commit(mut self, mut file: std::fs::File) -> anyhow::Result<()> {
        file.flush()
            .and_then(|()| file.sync_all())
            .with_context(|| format!("write {}", self.path.display()))?;
        drop(file);
        std::fs::rename(&self.path, &self.target).with_context(|| {
            format!(
                "rename {} to {}",
                self.path.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        // The rename itself survives a crash only once the directory is synced.
        let dir = match self.target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads all of `path`, checking magic, record framing, payload checksum and size, and
/// the file digest.
async fn verify(path: PathBuf) -> anyhow::Result<Summary> {
    tokio::task::spawn_blocking(move || {
        let file =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        Reader::new(BufReader::new(file))
            .and_then(Reader::verify)
            .with_context(|| format!("snapshot file {}", path.display()))
    })
    .await?
}

async fn restore(global: &Global, path: &Path, force: bool) -> anyhow::Result<()> {
    if !force {
        bail!(
            "restoring replaces the cluster's entire state with the snapshot in {}, discarding every change since it was taken; pass --force to do it",
            path.display()
        );
    }
    let summary = verify(path.to_owned()).await?;

    let mut client = global.streaming_client().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
    let bar = progress::bytes("restoring snapshot", Some(summary.trailer.total_bytes));
    let sender = {
        let path = path.to_owned();
        let bar = bar.clone();
        // Reads the file again as it sends: the reader yields the trailer only once the
        // file has checked out a second time, so a file changed since the check above
        // never gets its trailer sent, and the server never commits it.
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let file =
                std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            let mut reader = Reader::new(BufReader::new(file))
                .with_context(|| format!("snapshot file {}", path.display()))?;
            while let Some(part) = reader
                .next_part()
                .with_context(|| format!("snapshot file {}", path.display()))?
            {
                for part in split(part) {
                    if let Part::Data(data) = &part {
                        bar.inc(data.len() as u64);
                    }
                    tx.blocking_send(SnapshotChunk { part: Some(part) })
                        .map_err(|_| anyhow!("the server stopped reading the snapshot"))?;
                }
            }
            Ok(())
        })
    };
    let call = client.restore_snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
    tokio::pin!(call);
    tokio::pin!(sender);
    let response = tokio::select! {
        // The server answered, possibly before reading everything (a refusal).
        response = &mut call => response?,
        sent = &mut sender => {
            // Failing here drops the call unfinished, which resets the stream: the
            // server sees a cancelled upload, never a complete one.
            sent??;
            call.await?
        }
    }
    .into_inner();
    bar.finish_and_clear();
    let text = format!(
        "restored {} ({} bytes, snapshot event index {}); the cluster is at event index {}",
        path.display(),
        summary.trailer.total_bytes,
        summary.header.event_index,
        response.index
    );
    output::print(global.output, &Done { text, response })
}

/// A part as RestoreSnapshot messages: data in chunks of at most 1 MiB (the file's
/// records already are; this keeps the promise for any file).
fn split(part: Part) -> Vec<Part> {
    match part {
        Part::Data(data) if data.len() > MAX_DATA_CHUNK => data
            .chunks(MAX_DATA_CHUNK)
            .map(|c| Part::Data(c.to_vec()))
            .collect(),
        other => vec![other],
    }
}
