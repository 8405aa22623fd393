//! Bytes and inodes used by a directory tree: a container's writable layer, the image
//! store.
//!
//! A walk reads every inode of the tree, and the kubelet asks for every container's stats
//! and for ImageFsInfo every few seconds (and metrics scrapers again): a walk's result is
//! kept for [`FRESH_FOR`] per directory, as cAdvisor keeps its periodic disk usage.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StatsError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes, each hard-linked inode counted once.
    pub bytes: u64,
    pub inodes: u64,
}

/// How long a walk's result stands for its directory.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Results older than this are dropped: their directory is no longer asked about (a
/// removed container's, say).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// Walk results by directory, and how many walks were made.
pub struct WalkCache<T> {
    entries: Mutex<BTreeMap<PathBuf, (Instant, T)>>,
    walks: AtomicU64,
}

impl<T: Clone> WalkCache<T> {
    pub const fn new() -> Self {
        WalkCache {
            entries: Mutex::new(BTreeMap::new()),
            walks: AtomicU64::new(0),
        }
    }

    /// `dir`'s result if one is younger than `max_age`, else `walk`'s (kept when it
    /// succeeds). The lock is not held during the walk: walks of different directories
    /// run side by side.
    pub fn get_or_walk<E>(
        &self,
        dir: &Path,
        max_age: Duration,
        walk: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let now = Instant::now();
        if let Ok(entries) = self.entries.lock()
            && let Some((at, value)) = entries.get(dir)
            && now.duration_since(*at) < max_age
        {
            return Ok(value.clone());
        }
        self.walks.fetch_add(1, Ordering::Relaxed);
        let value = walk()?;
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, _)| now.duration_since(*at) < FORGET_AFTER);
            entries.insert(dir.to_path_buf(), (now, value.clone()));
        }
        Ok(value)
    }

    /// Drops `dir`'s result, so that the next call walks it: for a tree whose owner knows
    /// it has just changed.
    pub fn forget(&self, dir: &Path) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(dir);
        }
    }

    /// Walks made so far.
    #[cfg(test)]
    pub fn walks(&self) -> u64 {
        self.walks.load(Ordering::Relaxed)
    }
}

impl<T: Clone> Default for WalkCache<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Every tree measured through [`usage`]: writable layers and the image store alike.
static TREES: WalkCache<Usage> = WalkCache::new();

/// [`walk`]'s result for `dir`, at most [`FRESH_FOR`] old.
pub fn usage(dir: &Path) -> Result<Usage, StatsError> {
    usage_within(dir, FRESH_FOR)
}

/// [`walk`]'s result for `dir`, at most `max_age` old.
pub fn usage_within(dir: &Path, max_age: Duration) -> Result<Usage, StatsError> {
    TREES.get_or_walk(dir, max_age, || walk(dir))
}

/// Makes the next [`usage`] of `dir` walk it again.
pub fn forget(dir: &Path) {
    TREES.forget(dir);
}

/// Walks `dir` without following symlinks or leaving its file system.
pub fn walk(dir: &Path) -> Result<Usage, StatsError> {
    let root = std::fs::symlink_metadata(dir).map_err(|source| StatsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut seen = HashSet::new();
    let mut total = Usage::default();
    let mut pending = vec![dir.to_path_buf()];
    add(&root, &mut seen, &mut total);
    while let Some(current) = pending.pop() {
        // Entries can vanish while a container runs; what is gone is simply not counted.
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != root.dev() {
                continue;
            }
            add(&meta, &mut seen, &mut total);
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Size and inodes of the file system holding a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

pub fn capacity(dir: &Path) -> Result<Capacity, StatsError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| StatsError::Read {
        path: dir.to_path_buf(),
        source: std::io::Error::from(e),
    })?;
    Ok(Capacity {
        bytes: st.blocks() as u64 * st.fragment_size() as u64,
        inodes: st.files() as u64,
        inodes_free: st.files_available() as u64,
    })
}

fn add(meta: &std::fs::Metadata, seen: &mut HashSet<u64>, total: &mut Usage) {
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
        return;
    }
    total.inodes += 1;
    total.bytes += meta.blocks() * 512;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_of_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let cap = capacity(dir.path()).unwrap();
        assert!(cap.bytes > 0 && cap.inodes >= cap.inodes_free, "{cap:?}");
        assert!(capacity(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn counts_bytes_and_inodes_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let empty = walk(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/data"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("sub/data"), dir.path().join("link")).unwrap();
        let full = walk(dir.path()).unwrap();
        assert_eq!(full.inodes, empty.inodes + 2);
        assert!(full.bytes >= empty.bytes + (1 << 20), "{full:?}");
        assert!(
            full.bytes < empty.bytes + (2 << 20),
            "hard link counted twice: {full:?}"
        );
    }

    #[test]
    fn a_walk_stands_for_its_window_and_is_redone_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = WalkCache::new();
        let first = cache
            .get_or_walk(dir.path(), Duration::from_secs(3600), || walk(dir.path()))
            .unwrap();
        std::fs::write(dir.path().join("data"), vec![1u8; 1 << 20]).unwrap();
        let second = cache
            .get_or_walk(dir.path(), Duration::from_secs(3600), || walk(dir.path()))
            .unwrap();
        assert_eq!((second, cache.walks()), (first, 1), "walked again");
        // Once the window has passed (here: no window at all) the tree is walked again.
        let third = cache
            .get_or_walk(dir.path(), Duration::ZERO, || walk(dir.path()))
            .unwrap();
        assert_eq!(cache.walks(), 2);
        assert!(third.bytes >= first.bytes + (1 << 20), "{third:?}");
        // Another directory has a result of its own.
        let other = tempfile::tempdir().unwrap();
        cache
            .get_or_walk(other.path(), Duration::from_secs(3600), || {
                walk(other.path())
            })
            .unwrap();
        assert_eq!(cache.walks(), 3);
    }

    #[test]
    fn writable_layer_usage_is_not_walked_again_within_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let before = TREES.walks();
        let first = usage(dir.path()).unwrap();
        std::fs::write(dir.path().join("data"), vec![1u8; 1 << 20]).unwrap();
        let second = usage(dir.path()).unwrap();
        assert_eq!(
            second, first,
            "the second stats call walked the layer again"
        );
        // Other tests walk too: at least this test's one walk, not two.
        assert!(TREES.walks() > before);
    }
}
