//! A directory of JSON records keyed by id.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write record {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode record {id}: {source}")]
    Encode {
        id: String,
        source: serde_json::Error,
    },
    #[error("cannot remove record {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list store directory {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("record id {0:?} is not a plain file name")]
    BadId(String),
}

/// Readable records by id, and the paths of unreadable or temporary files.
pub type Loaded<T> = (Vec<(String, T)>, Vec<PathBuf>);

/// Records of one kind (pods, containers) in `<dir>/<id>.json`.
pub struct RecordStore<T> {
    dir: PathBuf,
    _kind: PhantomData<fn() -> T>,
}

const SUFFIX: &str = ".json";
const TEMP_PREFIX: &str = ".tmp-";

impl<T: Serialize + DeserializeOwned> RecordStore<T> {
    pub fn open(dir: &Path) -> Result<RecordStore<T>, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(RecordStore {
            dir: dir.to_path_buf(),
            _kind: PhantomData,
        })
    }

    fn path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(StoreError::BadId(id.to_string()));
        }
        Ok(self.dir.join(format!("{id}{SUFFIX}")))
    }

    /// Writes the record so that a crash leaves either the old or the new version, and
    /// flushes it to disk before returning.
    pub fn put(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.write(id, record, true)
    }

    /// Like `put`, atomic against a daemon crash but not flushed: for intermediate
    /// states whose resources (mounts, namespaces, cgroups, processes) would not outlive
    /// a power loss either.
    pub fn put_unsynced(&self, id: &str, record: &T) -> Result<(), StoreError> {
        self.write(id, record, false)
    }

    fn write(&self, id: &str, record: &T, sync: bool) -> Result<(), StoreError> {
        let path = self.path(id)?;
        let data = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Encode {
            id: id.to_string(),
            source,
        })?;
        let temp = self.dir.join(format!("{TEMP_PREFIX}{id}"));
        let write_error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(write_error)?;
        file.write_all(&data).map_err(write_error)?;
        if sync {
            file.sync_all().map_err(write_error)?;
        }
        drop(file);
        std::fs::rename(&temp, &path).map_err(write_error)?;
        if sync {
            sync_dir(&self.dir).map_err(write_error)?;
        }
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(|source| StoreError::Remove { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }

    /// Every readable record. Unreadable ones and leftover temporary files are returned
    /// separately so the caller can log and discard them.
    pub fn load_all(&self) -> Result<Loaded<T>, StoreError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| StoreError::List {
            path: self.dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        let mut broken = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                broken.push(path);
                continue;
            }
            let Some(id) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            match std::fs::read(&path)
                .ok()
                .and_then(|data| serde_json::from_slice::<T>(&data).ok())
            {
                Some(record) => records.push((id.to_string(), record)),
                None => broken.push(path),
            }
        }
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((records, broken))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    #[test]
    fn records_survive_reopen_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::<Rec>::open(&dir.path().join("pods")).unwrap();
        let a = Rec {
            name: "a".into(),
            n: 1,
        };
        store.put("abc", &a).unwrap();
        store
            .put(
                "abc",
                &Rec {
                    name: "a".into(),
                    n: 2,
                },
            )
            .unwrap();
        std::fs::write(dir.path().join("pods/zzz.json"), b"{broken").unwrap();
        std::fs::write(dir.path().join("pods/.tmp-x"), b"").unwrap();
        let reopened = RecordStore::<Rec>::open(&dir.path().join("pods")).unwrap();
        let (records, broken) = reopened.load_all().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, "abc");
        assert_eq!(records[0].1.n, 2);
        assert_eq!(broken.len(), 2);
        reopened.remove("abc").unwrap();
        reopened.remove("abc").unwrap();
        assert!(reopened.load_all().unwrap().0.is_empty());
    }

    #[test]
    fn ids_that_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::<Rec>::open(dir.path()).unwrap();
        let r = Rec {
            name: String::new(),
            n: 0,
        };
        assert!(matches!(store.put("../x", &r), Err(StoreError::BadId(_))));
        assert!(matches!(store.put("", &r), Err(StoreError::BadId(_))));
    }
}
