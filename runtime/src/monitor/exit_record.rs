//! The record of how a container ended, written atomically into its state directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE_NAME: &str = "exit.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status; 128 + signal when a signal ended the process.
    pub exit_code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// The memory cgroup killed a process of the container.
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    pub finished_at_unix_nanos: i64,
    /// Set when the container never ran (creation failed after the monitor reported it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExitRecordError {
    #[error("exit record {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exit record {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ExitRecord {
    pub fn now(exit_code: i32, signal: Option<i32>, oom_killed: bool) -> Self {
        let now = chrono::Utc::now();
        ExitRecord {
            exit_code,
            signal,
            oom_killed,
            finished_at: now.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
            finished_at_unix_nanos: now.timestamp_nanos_opt().unwrap_or(0),
            error: None,
        }
    }

    /// Writes the record to `dir/exit.json`: temporary file, fsync, rename, fsync of dir.
    pub fn write(&self, dir: &Path) -> Result<(), ExitRecordError> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let io = |source| ExitRecordError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|source| ExitRecordError::Parse {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads `dir/exit.json`; `Ok(None)` while the container has not exited.
    pub fn read(dir: &Path) -> Result<Option<Self>, ExitRecordError> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ExitRecordError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ExitRecordError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), None);
        let rec = ExitRecord::now(137, Some(9), true);
        rec.write(dir.path()).unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), Some(rec));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
