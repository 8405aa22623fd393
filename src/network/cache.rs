//! The cached ADD of each pod: `<cache dir>/<pod id>.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::NetworkError;
use super::conf::NetworkList;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAttachment {
    pub list: NetworkList,
    pub cni_args: String,
    pub runtime_config: Value,
    pub ifname: String,
    pub netns: PathBuf,
    /// The final ADD result; null while the ADD has not finished.
    pub result: Value,
}

fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes atomically; `sync` flushes to disk, for entries that must outlive a power
/// loss (the IPAM allocations they release do).
pub fn write(
    dir: &Path,
    id: &str,
    entry: &CachedAttachment,
    sync: bool,
) -> Result<(), NetworkError> {
    let target = path(dir, id);
    let err = |source| NetworkError::Cache {
        action: "write",
        path: target.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let temp = dir.join(format!(".tmp-{id}"));
    let data = serde_json::to_vec(entry).map_err(|e| err(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&temp).map_err(err)?;
    file.write_all(&data).map_err(err)?;
    if sync {
        file.sync_all().map_err(err)?;
    }
    std::fs::rename(&temp, &target).map_err(err)?;
    if sync {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// Flushes an entry written without `sync` to disk; no entry is nothing to flush.
pub fn flush(dir: &Path, id: &str) -> Result<(), NetworkError> {
    let target = path(dir, id);
    let err = |source| NetworkError::Cache {
        action: "flush",
        path: target.clone(),
        source,
    };
    match std::fs::File::open(&target) {
        Ok(file) => file.sync_all().map_err(err)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

pub fn read(dir: &Path, id: &str) -> Result<Option<CachedAttachment>, NetworkError> {
    let target = path(dir, id);
    match std::fs::read(&target) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| NetworkError::Cache {
                action: "read",
                path: target,
                source: std::io::Error::other(e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NetworkError::Cache {
            action: "read",
            path: target,
            source,
        }),
    }
}

pub fn remove(dir: &Path, id: &str) -> Result<(), NetworkError> {
    let target = path(dir, id);
    match std::fs::remove_file(&target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NetworkError::Cache {
            action: "remove",
            path: target,
            source: e,
        }),
        _ => Ok(()),
    }
}

pub fn ids(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}
