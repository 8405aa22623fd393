//! Filesystems: unpacked image layers, one directory per chain id, ready to be overlayfs
//! lower dirs; and containers' overlay root filesystems over those layers.

pub mod idmap;
pub mod rootfs;

pub use criox_formats::unpack;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("layer store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid chain id {0:?}")]
    InvalidChainId(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Detaches the mount on each entry of `dir` (lazily, with its submounts); an entry that is
/// not mounted, or a missing `dir`, is skipped, so this can run again after a crash.
pub fn unmount_entries(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        match nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The chain ids of a stack of layers given their diff ids, bottom first (OCI image spec).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => format!(
                "sha256:{:x}",
                Sha256::digest(format!("{parent} {diff}").as_bytes())
            ),
        };
        out.push(next);
    }
    out
}

/// `<root>/layers/<chain hex>/` holds a layer's files; `<root>/tmp/` holds layers being
/// unpacked, which become visible only by a rename once complete.
#[derive(Debug)]
pub struct LayerStore {
    root: PathBuf,
    next_tmp: AtomicU64,
}

impl LayerStore {
    /// Opens the store, discarding layers that an interrupted pull left half-made.
    pub fn open(root: &Path) -> Result<LayerStore, StorageError> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        for dir in [root.join("layers"), tmp] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(LayerStore {
            root: root.to_path_buf(),
            next_tmp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hex(chain_id: &str) -> Result<&str, StorageError> {
        let hex = chain_id
            .strip_prefix("sha256:")
            .ok_or_else(|| StorageError::InvalidChainId(chain_id.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::InvalidChainId(chain_id.to_string()));
        }
        Ok(hex)
    }

    /// The directory of a layer's files (an overlayfs lower dir).
    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, StorageError> {
        Ok(self.root.join("layers").join(Self::hex(chain_id)?))
    }

    pub fn has(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id)
            .map(|d| d.is_dir())
            .unwrap_or(false)
    }

    /// A new empty private directory to unpack into.
    pub fn temp_dir(&self) -> Result<PathBuf, StorageError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Makes an unpacked directory the layer of `chain_id`. If another pull got there
    /// first, its copy stays and this one is dropped.
    pub fn commit(&self, tmp: &Path, chain_id: &str) -> Result<PathBuf, StorageError> {
        let target = self.layer_dir(chain_id)?;
        if target.is_dir() {
            discard(tmp);
            return Ok(target);
        }
        fs::rename(tmp, &target).map_err(io_err(&target))?;
        Ok(target)
    }

    pub fn remove(&self, chain_id: &str) -> Result<(), StorageError> {
        let dir = self.layer_dir(chain_id)?;
        // Rename first so that a crash half-way leaves no partial layer under its id.
        let doomed = self.temp_path_for_removal();
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io_err(&doomed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    fn temp_path_for_removal(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("rm-{}-{n}", std::process::id()))
    }

    /// Chain ids of all stored layers.
    pub fn list(&self) -> Vec<String> {
        let dir = self.root.join("layers");
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Overlayfs lower dirs for a stack of layers given bottom first: the topmost layer
    /// comes first, as `lowerdir=` wants.
    pub fn lower_dirs(&self, chain_ids: &[String]) -> Result<Vec<PathBuf>, StorageError> {
        chain_ids
            .iter()
            .rev()
            .map(|id| {
                let dir = self.layer_dir(id)?;
                if !dir.is_dir() {
                    return Err(StorageError::Io {
                        path: dir,
                        source: io::Error::from(io::ErrorKind::NotFound),
                    });
                }
                Ok(dir)
            })
            .collect()
    }
}

/// Removes a directory tree that is no longer wanted; failures only leave garbage that
/// the next start clears from `tmp/`.
pub fn discard(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expected = format!("sha256:{:x}", Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(ids[1], expected);
    }

    #[test]
    fn commit_is_atomic_and_lower_dirs_are_top_first() {
        let root = tempfile::tempdir().unwrap();
        let store = LayerStore::open(root.path()).unwrap();
        let ids = chain_ids(&[
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        ]);
        for id in &ids {
            assert!(!store.has(id));
            let tmp = store.temp_dir().unwrap();
            fs::write(tmp.join("f"), id).unwrap();
            store.commit(&tmp, id).unwrap();
            assert!(store.has(id));
        }
        let lowers = store.lower_dirs(&ids).unwrap();
        assert_eq!(lowers[0], store.layer_dir(&ids[1]).unwrap());
        assert_eq!(lowers[1], store.layer_dir(&ids[0]).unwrap());
        // A half-unpacked layer disappears on the next open.
        let tmp = store.temp_dir().unwrap();
        fs::write(tmp.join("partial"), "x").unwrap();
        let store = LayerStore::open(root.path()).unwrap();
        assert!(!tmp.exists());
        store.remove(&ids[0]).unwrap();
        assert!(!store.has(&ids[0]));
        assert!(store.lower_dirs(&ids).is_err());
        assert!(store.layer_dir("sha256:../x").is_err());
    }
}
