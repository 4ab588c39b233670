//! The agent's state file: its last assignment set, saved on every change, so an agent
//! restarted while the control plane is unreachable still knows what to keep running
//! (static stability). It holds secret data, so it is written with mode 0600.

use constellation_proto::v1::Assignments;
use prost::Message;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the file under the state directory.
pub const FILE_NAME: &str = "assignments.pb";
/// A saved set larger than this is refused on load (a corrupt or foreign file).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Where the agent keeps its last assignment set.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file under `dir` (created, mode 0700, on the first save).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved set; `None` when there is none.
    pub fn load(&self) -> std::io::Result<Option<Assignments>> {
        let bytes = match std::fs::metadata(&self.path) {
            Ok(m) if m.len() > MAX_BYTES => {
                return Err(std::io::Error::other(format!(
                    "{}: {} bytes, more than {MAX_BYTES}",
                    self.path.display(),
                    m.len()
                )));
            }
            Ok(_) => std::fs::read(&self.path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Assignments::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", self.path.display())))
    }

    /// Replaces the saved set atomically (write aside, fsync, rename).
    pub fn save(&self, set: &Assignments) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = self.path.with_extension("pb.tmp");
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&set.encode_to_vec())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_proto::v1::{Allocation, Assignment, AssignmentsKind};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_and_loads_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(&dir.path().join("agent"));
        assert_eq!(f.load().unwrap(), None);
        let set = Assignments {
            kind: AssignmentsKind::Full as i32,
            version: 7,
            upserts: vec![Assignment {
                allocation: Some(Allocation {
                    id: "a".into(),
                    ..Default::default()
                }),
                spec_hash: "h".into(),
                ..Default::default()
            }],
            removals: vec![],
        };
        f.save(&set).unwrap();
        assert_eq!(f.load().unwrap(), Some(set));
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(f.path(), b"\xff\xff garbage").unwrap();
        assert!(f.load().is_err());
    }
}
