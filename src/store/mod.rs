//! Persistent metadata: typed records (pods, containers) that must survive a daemon
//! restart, one JSON file each, written atomically before an RPC answers.
//!
//! A `Store<T>` keeps every record in memory for reads, with an index of unique names,
//! and resolves ids from unique prefixes as crictl users expect.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The record's full id: a file name, so only `[0-9a-zA-Z_.-]`.
    fn id(&self) -> &str;
    /// A name no other record may hold at the same time, if the kind has one.
    fn name(&self) -> Option<&str>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {0:?} not found", kind = .1)]
    NotFound(String, &'static str),
    #[error("{kind} id prefix {0:?} matches more than one {kind}", kind = .1)]
    Ambiguous(String, &'static str),
    #[error("{kind} id {0:?} already exists", kind = .1)]
    IdTaken(String, &'static str),
    #[error("{kind} name {name:?} is held by {holder}")]
    NameTaken {
        kind: &'static str,
        name: String,
        holder: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {kind} {id}: {source}")]
    Encode {
        kind: &'static str,
        id: String,
        source: serde_json::Error,
    },
}

pub struct Store<T> {
    kind: &'static str,
    dir: PathBuf,
    records: RwLock<Index<T>>,
    /// Serializes writers, so the file on disk and the map change in the same order.
    writer: Mutex<()>,
}

struct Index<T> {
    by_id: BTreeMap<String, T>,
    by_name: HashMap<String, String>,
}

/// A file that could not be loaded; the daemon reports it and moves on.
#[derive(Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

impl<T: Record> Store<T> {
    /// Opens (creating) `dir` and loads every record in it. `kind` names the records in
    /// errors ("pod", "container").
    pub fn open(dir: &Path, kind: &'static str) -> Result<(Store<T>, Vec<Unreadable>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut index = Index {
            by_id: BTreeMap::new(),
            by_name: HashMap::new(),
        };
        let mut unreadable = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {}
                // A write that a crash interrupted before its rename.
                Some("tmp") => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                _ => continue,
            }
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<T>(&bytes).map_err(|e| e.to_string()));
            match record {
                Ok(record) => {
                    if let Some(name) = record.name() {
                        index
                            .by_name
                            .insert(name.to_string(), record.id().to_string());
                    }
                    index.by_id.insert(record.id().to_string(), record);
                }
                Err(reason) => unreadable.push(Unreadable { path, reason }),
            }
        }
        let store = Store {
            kind,
            dir: dir.to_path_buf(),
            records: RwLock::new(index),
            writer: Mutex::new(()),
        };
        Ok((store, unreadable))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index<T>> {
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index<T>> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a new record; its id and name must be free. The record is not flushed to disk
    /// (see `update_unsynced`): a new pod or container does not outlive a power loss, and
    /// start-up removes what one whose record was lost left on disk.
    pub fn insert(&self, record: T) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        {
            let index = self.read();
            if index.by_id.contains_key(record.id()) {
                return Err(StoreError::IdTaken(record.id().to_string(), self.kind));
            }
            if let Some(name) = record.name()
                && let Some(holder) = index.by_name.get(name)
            {
                return Err(StoreError::NameTaken {
                    kind: self.kind,
                    name: name.to_string(),
                    holder: holder.clone(),
                });
            }
        }
        self.persist(&record, false)?;
        let mut index = self.write_index();
        if let Some(name) = record.name() {
            index
                .by_name
                .insert(name.to_string(), record.id().to_string());
        }
        index.by_id.insert(record.id().to_string(), record);
        Ok(())
    }

    /// Changes a record with `change` and writes it; returns the new record.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut T)) -> Result<T, StoreError> {
        self.update_with(id, change, true)
    }

    /// `update` without flushing to disk: still atomic against a daemon crash, for
    /// intermediate states whose resources (mounts, namespaces, cgroups, processes)
    /// would not outlive a power loss either.
    pub fn update_unsynced(&self, id: &str, change: impl FnOnce(&mut T)) -> Result<T, StoreError> {
        self.update_with(id, change, false)
    }

    fn update_with(
        &self,
        id: &str,
        change: impl FnOnce(&mut T),
        sync: bool,
    ) -> Result<T, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = self
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string(), self.kind))?;
        let old_name = record.name().map(str::to_string);
        change(&mut record);
        self.persist(&record, sync)?;
        let mut index = self.write_index();
        if let Some(old) = old_name {
            index.by_name.remove(&old);
        }
        if let Some(name) = record.name() {
            index
                .by_name
                .insert(name.to_string(), record.id().to_string());
        }
        index.by_id.insert(id.to_string(), record.clone());
        Ok(record)
    }

    /// Deletes a record; returns it, or `None` when there was none.
    pub fn remove(&self, id: &str) -> Result<Option<T>, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Write { path, source }),
        }
        let mut index = self.write_index();
        let record = index.by_id.remove(id);
        if let Some(name) = record.as_ref().and_then(|r| r.name())
            && index.by_name.get(name).map(String::as_str) == Some(id)
        {
            index.by_name.remove(name);
        }
        Ok(record)
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.read().by_id.get(id).cloned()
    }

    /// The full id of the one record whose id starts with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<String, StoreError> {
        let index = self.read();
        if index.by_id.contains_key(prefix) {
            return Ok(prefix.to_string());
        }
        let mut matches = index
            .by_id
            .range(prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(prefix))
            .map(|(id, _)| id);
        match (prefix.is_empty(), matches.next(), matches.next()) {
            (false, Some(id), None) => Ok(id.clone()),
            (false, Some(_), Some(_)) => Err(StoreError::Ambiguous(prefix.to_string(), self.kind)),
            _ => Err(StoreError::NotFound(prefix.to_string(), self.kind)),
        }
    }

    /// The id of the record holding `name`, if any.
    #[cfg(test)]
    pub fn holder_of(&self, name: &str) -> Option<String> {
        self.read().by_name.get(name).cloned()
    }

    pub fn list(&self) -> Vec<T> {
        self.read().by_id.values().cloned().collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// write, fsync, rename, fsync the directory: a crash leaves the old record or the
    /// new one, never a torn file.
    fn persist(&self, record: &T, sync: bool) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            kind: self.kind,
            id: record.id().to_string(),
            source,
        })?;
        let path = self.path(record.id());
        write_file(&path, &bytes, sync)
    }
}

/// Writes `bytes` to `path` so that readers see either the old content or the new, without
/// flushing to disk: atomic against a daemon crash, for files whose container or pod would
/// not outlive a power loss either.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_file(path, bytes, false)
}

fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
    // A name of its own per write, so that two writers of one record never share a
    // temporary file: the last rename wins, and neither fails.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let write_error = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Records and bundles carry annotations and the containers' environment: root's
    // alone, whatever umask the process was started with.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_error)?;
    file.write_all(bytes).map_err(write_error)?;
    if sync {
        file.sync_all().map_err(write_error)?;
    }
    std::fs::rename(&tmp, path).map_err(write_error)?;
    if sync && let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Pod {
        id: String,
        name: String,
        state: u32,
    }

    impl Record for Pod {
        fn id(&self) -> &str {
            &self.id
        }
        fn name(&self) -> Option<&str> {
            Some(&self.name)
        }
    }

    fn pod(id: &str, name: &str) -> Pod {
        Pod {
            id: id.to_string(),
            name: name.to_string(),
            state: 0,
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        store.insert(pod("abc1", "web")).unwrap();
        store.update("abc1", |p| p.state = 2).unwrap();
        store.insert(pod("def2", "db")).unwrap();
        store.remove("def2").unwrap();
        drop(store);

        let (store, unreadable) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(
            store.list(),
            vec![Pod {
                state: 2,
                ..pod("abc1", "web")
            }]
        );
        assert_eq!(store.holder_of("web").as_deref(), Some("abc1"));
        assert_eq!(store.holder_of("db"), None);
    }

    #[test]
    fn names_are_unique_and_freed_on_removal() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        store.insert(pod("abc1", "web")).unwrap();
        let err = store.insert(pod("abc2", "web")).unwrap_err();
        assert!(err.to_string().contains("abc1"), "{err}");
        assert!(store.get("abc2").is_none());
        assert!(
            !dir.path().join("abc2.json").exists(),
            "refused record was written"
        );
        store.remove("abc1").unwrap();
        store.insert(pod("abc2", "web")).unwrap();
    }

    #[test]
    fn prefixes_resolve_only_when_unique() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        store.insert(pod("abc1", "a")).unwrap();
        store.insert(pod("abd2", "b")).unwrap();
        assert_eq!(store.resolve("abc").unwrap(), "abc1");
        assert_eq!(store.resolve("abd2").unwrap(), "abd2");
        assert!(matches!(
            store.resolve("ab"),
            Err(StoreError::Ambiguous(..))
        ));
        assert!(matches!(store.resolve("x"), Err(StoreError::NotFound(..))));
        assert!(matches!(store.resolve(""), Err(StoreError::NotFound(..))));
    }

    #[test]
    fn torn_and_corrupt_files_do_not_stop_loading() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        store.insert(pod("good", "g")).unwrap();
        drop(store);
        std::fs::write(dir.path().join("half.tmp"), b"{\"id\":").unwrap();
        std::fs::write(dir.path().join("bad.json"), b"not json").unwrap();
        let (store, unreadable) = Store::<Pod>::open(dir.path(), "pod").unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(unreadable.len(), 1);
        assert!(unreadable[0].path.ends_with("bad.json"));
        assert!(!dir.path().join("half.tmp").exists());
    }
}
