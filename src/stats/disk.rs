//! Bytes and inodes used by a directory tree: a container's writable layer.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::StatsError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes, each hard-linked inode counted once.
    pub bytes: u64,
    pub inodes: u64,
}

/// Walks `dir` without following symlinks or leaving its file system.
pub fn usage(dir: &Path) -> Result<Usage, StatsError> {
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
        let empty = usage(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/data"), vec![1u8; 1 << 20]).unwrap();
        std::fs::hard_link(dir.path().join("sub/data"), dir.path().join("link")).unwrap();
        let full = usage(dir.path()).unwrap();
        assert_eq!(full.inodes, empty.inodes + 2);
        assert!(full.bytes >= empty.bytes + (1 << 20), "{full:?}");
        assert!(
            full.bytes < empty.bytes + (2 << 20),
            "hard link counted twice: {full:?}"
        );
    }
}
