//! The content store under `<root>/images`: manifests and configs by digest in `blobs/`,
//! and one record per image (id = config digest) in `records/` with its tags, digests and
//! layers. Every file is written atomically: a crash leaves the old version or the new.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::reference::is_digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image record {path}: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid digest {0:?}")]
    BadDigest(String),
}

/// What criox knows about one pulled image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest, `sha256:<hex>`.
    pub id: String,
    /// `registry/repository:tag` names as the user asked for them.
    pub repo_tags: Vec<String>,
    /// `registry/repository@<manifest digest>`.
    pub repo_digests: Vec<String>,
    pub manifest_digest: String,
    /// Bytes of the config and the layers as the registry serves them.
    pub size: u64,
    /// Layer chain ids, bottom first.
    pub chain_ids: Vec<String>,
    /// Unix time of the last pull.
    pub pulled_at: u64,
}

#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
    records: RwLock<HashMap<String, ImageRecord>>,
    next_tmp: AtomicU64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(digest: &str) -> Result<&str, StoreError> {
    if !is_digest(digest) {
        return Err(StoreError::BadDigest(digest.to_string()));
    }
    Ok(&digest["sha256:".len()..])
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore, StoreError> {
        for dir in ["blobs/sha256", "records"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let mut records = HashMap::new();
        let dir = root.join("records");
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.as_deref().is_some_and(|n| n.contains(".tmp")) {
                let _ = fs::remove_file(&path);
                continue;
            }
            // One damaged record costs its image (pulled again on demand), never the
            // daemon's start.
            let record = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_slice::<ImageRecord>(&text).map_err(|e| e.to_string())
                })
                .and_then(|r| {
                    if is_digest(&r.id) {
                        Ok(r)
                    } else {
                        Err(format!("its id {:?} is not a digest", r.id))
                    }
                });
            match record {
                Ok(record) => {
                    records.insert(record.id.clone(), record);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "skipping unreadable image record");
                }
            }
        }
        let blobs = root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            if entry.file_name().to_string_lossy().contains(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
            records: RwLock::new(records),
            next_tmp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), StoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(parent) = path.parent() {
                fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err(path))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(hex(digest)?))
    }

    /// Stores a blob whose digest the caller has verified.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        self.write_atomic(&path, data)
    }

    pub fn blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(io_err(&path))
    }

    fn save(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let path = self
            .root
            .join("records")
            .join(format!("{}.json", hex(&record.id)?));
        let data = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &data)
    }

    fn delete_record(&self, id: &str) -> Result<(), StoreError> {
        let path = self.root.join("records").join(format!("{}.json", hex(id)?));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Adds a pulled image, or merges its names into the image with the same id. A tag
    /// moves: the image that held it before loses it.
    pub fn add(&self, new: ImageRecord) -> Result<ImageRecord, StoreError> {
        let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
        for other in records.values_mut() {
            if other.id == new.id {
                continue;
            }
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !new.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                self.save(other)?;
            }
        }
        let merged = match records.get(&new.id) {
            Some(old) => {
                let mut m = old.clone();
                for t in &new.repo_tags {
                    if !m.repo_tags.contains(t) {
                        m.repo_tags.push(t.clone());
                    }
                }
                for d in &new.repo_digests {
                    if !m.repo_digests.contains(d) {
                        m.repo_digests.push(d.clone());
                    }
                }
                m.pulled_at = new.pulled_at;
                m
            }
            None => new,
        };
        self.save(&merged)?;
        records.insert(merged.id.clone(), merged.clone());
        Ok(merged)
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = records.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Finds an image by full id, unique id prefix (with or without `sha256:`), or one of
    /// the fully qualified `names` (tags or digest references).
    pub fn find(&self, query: &str, names: &[String]) -> Option<ImageRecord> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = records.get(query) {
            return Some(r.clone());
        }
        for name in names {
            if let Some(r) = records
                .values()
                .find(|r| r.repo_tags.contains(name) || r.repo_digests.contains(name))
            {
                return Some(r.clone());
            }
        }
        let prefix = query.strip_prefix("sha256:").unwrap_or(query);
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut matching = records
            .values()
            .filter(|r| r.id["sha256:".len()..].starts_with(prefix));
        match (matching.next(), matching.next()) {
            (Some(r), None) => Some(r.clone()),
            _ => None,
        }
    }

    /// Removes one name from an image; the image goes when no tag is left. Returns the
    /// removed record if the image itself is gone.
    pub fn untag(&self, id: &str, tag: &str) -> Result<Option<ImageRecord>, StoreError> {
        let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
        let Some(record) = records.get_mut(id) else {
            return Ok(None);
        };
        record.repo_tags.retain(|t| t != tag);
        if record.repo_tags.is_empty() {
            drop(records);
            return self.remove(id);
        }
        let saved = record.clone();
        self.save(&saved)?;
        Ok(None)
    }

    /// Removes an image with all its names and its manifest and config blobs.
    pub fn remove(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let mut records = self.records.write().unwrap_or_else(|e| e.into_inner());
        let Some(record) = records.get(id).cloned() else {
            return Ok(None);
        };
        self.delete_record(id)?;
        records.remove(id);
        let still_used = |digest: &str| {
            records
                .values()
                .any(|r| r.id == digest || r.manifest_digest == digest)
        };
        for digest in [&record.id, &record.manifest_digest] {
            if !still_used(digest)
                && let Ok(path) = self.blob_path(digest)
            {
                let _ = fs::remove_file(path);
            }
        }
        Ok(Some(record))
    }

    /// Whether any image still uses the layer.
    pub fn layer_in_use(&self, chain_id: &str) -> bool {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        records
            .values()
            .any(|r| r.chain_ids.iter().any(|c| c == chain_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id_char: char, tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", id_char.to_string().repeat(64)),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![],
            manifest_digest: format!("sha256:{}", "f".repeat(64)),
            size: 1,
            chain_ids: vec![],
            pulled_at: 0,
        }
    }

    #[test]
    fn a_corrupt_record_is_skipped_and_the_others_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        store.add(record('a', &["r/x:1"])).unwrap();
        let records = dir.path().join("records");
        fs::write(
            records.join(format!("{}.json", "b".repeat(64))),
            b"{\"id\": 7",
        )
        .unwrap();
        fs::write(
            records.join(format!("{}.json", "c".repeat(64))),
            br#"{"id":"../x","repo_tags":[],"repo_digests":[],"manifest_digest":"","size":0,"chain_ids":[],"pulled_at":0}"#,
        )
        .unwrap();
        let store = ContentStore::open(dir.path()).expect("a corrupt record stopped the store");
        let ids: Vec<String> = store.list().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![record('a', &[]).id]);
    }

    #[test]
    fn tags_move_prefixes_resolve_and_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        store.add(record('a', &["r/x:1", "r/x:2"])).unwrap();
        store.add(record('b', &["r/x:2"])).unwrap();
        let a = store.find("aaaa", &[]).unwrap();
        assert_eq!(a.repo_tags, vec!["r/x:1"]);
        assert_eq!(
            store.find("x", &["r/x:2".into()]).unwrap().id,
            record('b', &[]).id
        );
        store.add(record('a', &["r/x:3"])).unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        assert_eq!(
            store.find("sha256:a", &[]).unwrap().repo_tags,
            vec!["r/x:1", "r/x:3"]
        );
        assert!(store.untag(&a.id, "r/x:1").unwrap().is_none());
        assert!(store.find(&a.id, &[]).is_some());
        assert!(store.untag(&a.id, "r/x:3").unwrap().is_some());
        assert!(store.find(&a.id, &[]).is_none());
        assert_eq!(store.list().len(), 1);
    }
}
