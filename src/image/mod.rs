//! Images: pulling from registries (mirrors, auth, trust policy), the content store, and
//! the unpacked layers that containers use as overlayfs lower dirs.
//!
//! The container side calls [`ImageManager::rootfs`] to get an image's config and its
//! lower dirs. This file holds the manager, its lookups and removal; `pull.rs` the pull.

pub mod client;
pub mod fetch;
mod pull;
pub mod sigstore;
pub mod store;

pub use criox_formats::{manifest, policy, reference, registries};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use client::Credentials;
use client::{ClientError, HttpClient};
use fetch::FetchError;
pub use manifest::OciImageConfig;
use manifest::{ManifestError, Platform};
use policy::PolicyError;
use reference::{Reference, ReferenceError};
use registries::{RegistriesConf, RegistriesError};
pub use store::ImageRecord;
use store::{ContentStore, StoreError};

use crate::stats::disk::{self, Usage};
use crate::storage::{LayerStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registries(#[from] RegistriesError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Tls(#[from] client::TlsError),
    #[error("image {image} not found")]
    NotFound { image: String },
    #[error("image {image} is in use by container {container}")]
    InUse { image: String, container: String },
    #[error("pulling {image}: {source}")]
    Pull {
        image: String,
        #[source]
        source: PullError,
    },
    #[error("pulling {image}: timed out after {seconds} s")]
    Timeout { image: String, seconds: u64 },
    #[error("image {image}: its stored {what} is unreadable: {detail}")]
    Damaged {
        image: String,
        what: &'static str,
        detail: String,
    },
}

/// Why one pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest {reference}: digest mismatch, the registry sent {actual}")]
    ManifestDigest { reference: String, actual: String },
    #[error("an index refers to another index ({0}), which is not supported")]
    NestedIndex(String),
    #[error("refused by the trust policy's sigstoreSigned requirement: {0}")]
    Signature(#[from] sigstore::SigstoreError),
}

/// An image ready to run: what the container side needs.
#[derive(Debug, Clone)]
pub struct ImageRootfs {
    pub id: String,
    pub config: OciImageConfig,
    /// Overlayfs lower dirs, topmost layer first (the order `lowerdir=` takes).
    pub lower_dirs: Vec<PathBuf>,
}

type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

pub struct ImageManager {
    store: ContentStore,
    layers: Arc<LayerStore>,
    registries_path: PathBuf,
    policy_path: PathBuf,
    http: HttpClient,
    platform: Platform,
    timeout: Duration,
    /// One pull per image name and one download per layer at a time; the second waiter
    /// finds the work done.
    pull_locks: Locks,
    layer_locks: Locks,
    /// Bounds layer downloads across all pulls ([`pull::DOWNLOADS_IN_ALL`]).
    downloads: tokio::sync::Semaphore,
    /// Pulls read, removals write: a removal never deletes a layer a pull relies on.
    gc: tokio::sync::RwLock<()>,
}

impl ImageManager {
    /// Opens the stores under `root` (`root/images`, `root/storage`). The registries
    /// configuration and trust policy are read at each pull, so edits apply at once.
    pub fn open(
        root: &Path,
        registries_path: &Path,
        policy_path: &Path,
        certs_dir: &Path,
    ) -> Result<ImageManager, ImageError> {
        let store = ContentStore::open(&root.join("images"))?;
        let layers = Arc::new(LayerStore::open(&root.join("storage"))?);
        // A crash between unpacking and recording leaves layers no image uses.
        for chain in layers.list() {
            if !store.layer_in_use(&chain) {
                tracing::info!(layer = %chain, "removing a layer no image uses");
                layers.remove(&chain)?;
            }
        }
        for record in store.list() {
            if let Err(e) = layers.lower_dirs(&record.chain_ids) {
                tracing::warn!(image = %record.id, error = %e, "image has missing layers");
            }
        }
        RegistriesConf::load(registries_path)?;
        Ok(ImageManager {
            store,
            layers,
            registries_path: registries_path.to_path_buf(),
            policy_path: policy_path.to_path_buf(),
            http: client::http_client(certs_dir)?,
            platform: Platform::host(),
            timeout: Duration::from_secs(30 * 60),
            pull_locks: Mutex::default(),
            layer_locks: Mutex::default(),
            downloads: tokio::sync::Semaphore::new(pull::DOWNLOADS_IN_ALL),
            gc: tokio::sync::RwLock::new(()),
        })
    }

    /// Fully qualified names a user's name can stand for (short names expand through the
    /// search registries).
    fn names_for(&self, name: &str) -> Vec<String> {
        let Ok(reference) = Reference::parse(name) else {
            return Vec::new();
        };
        let conf = RegistriesConf::load(&self.registries_path).unwrap_or_default();
        let qualified = match &reference.registry {
            Some(_) => vec![reference],
            None => conf
                .candidates(&reference)
                .map(|c| c.into_iter().map(|s| s.reference).collect())
                .unwrap_or_default(),
        };
        qualified.iter().map(|r| r.to_string()).collect()
    }

    /// An image by id, unique id prefix, tag or digest reference.
    pub fn find(&self, name: &str) -> Option<ImageRecord> {
        self.store.find(name, &self.names_for(name))
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.store.list()
    }

    pub fn config(&self, record: &ImageRecord) -> Result<OciImageConfig, ImageError> {
        let data = self.store.blob(&record.id)?;
        OciImageConfig::parse(&data).map_err(|e| ImageError::Damaged {
            image: record.id.clone(),
            what: "config",
            detail: e.to_string(),
        })
    }

    /// The config and overlayfs lower dirs of an image, for creating a container.
    pub fn rootfs(&self, name: &str) -> Result<ImageRootfs, ImageError> {
        let record = self.find(name).ok_or_else(|| ImageError::NotFound {
            image: name.to_string(),
        })?;
        let config = self.config(&record)?;
        let lower_dirs = self.layers.lower_dirs(&record.chain_ids)?;
        Ok(ImageRootfs {
            id: record.id,
            config,
            lower_dirs,
        })
    }

    /// Space used by blobs, records and layers, and the directory holding them. The
    /// kubelet asks every few seconds; each tree is walked at most once per
    /// [`disk::FRESH_FOR`].
    pub fn usage(&self) -> (Usage, PathBuf) {
        self.usage_within(disk::FRESH_FOR)
    }

    /// Marks the store's usage as stale once dropped: a pull or a removal changes what
    /// ImageFsInfo must report at once, whether it succeeds, fails or is cancelled.
    pub(crate) fn usage_changes(&self) -> UsageChanges {
        UsageChanges {
            trees: [
                self.store.root().to_path_buf(),
                self.layers.root().to_path_buf(),
            ],
        }
    }

    /// [`ImageManager::usage`] from walks at most `max_age` old.
    fn usage_within(&self, max_age: Duration) -> (Usage, PathBuf) {
        let mut total = Usage::default();
        for tree in [self.store.root(), self.layers.root()] {
            // A tree that cannot be read holds nothing the node could reclaim.
            let usage = disk::usage_within(tree, max_age).unwrap_or_default();
            total.bytes += usage.bytes;
            total.inodes += usage.inodes;
        }
        let root = self
            .store
            .root()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        (total, root)
    }

    /// Removes a name (a tag of several: only that tag) or a whole image (by id, digest,
    /// or its last tag), then the layers no image uses any more.
    /// `user_of` names a container that uses an image id, if any: such an image keeps
    /// its layers (only a tag of several may go).
    pub async fn remove(
        &self,
        name: &str,
        user_of: impl Fn(&str) -> Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let _gc = self.gc.write().await;
        let _changes = self.usage_changes();
        let record = self.find(name).ok_or_else(|| ImageError::NotFound {
            image: name.to_string(),
        })?;
        let names = self.names_for(name);
        let tag = names.iter().find(|n| record.repo_tags.contains(n));
        let removed = match tag {
            Some(tag) if record.repo_tags.len() > 1 => self.store.untag(&record.id, tag)?,
            _ => {
                if let Some(container) = user_of(&record.id) {
                    return Err(ImageError::InUse {
                        image: name.to_string(),
                        container,
                    });
                }
                self.store.remove(&record.id)?
            }
        };
        if let Some(gone) = &removed {
            for chain in &gone.chain_ids {
                if !self.store.layer_in_use(chain) {
                    self.layers.remove(chain)?;
                }
            }
        }
        Ok(record)
    }

    async fn remove_unused_layers(&self) {
        let _gc = self.gc.write().await;
        for chain in self.layers.list() {
            if !self.store.layer_in_use(&chain)
                && let Err(e) = self.layers.remove(&chain)
            {
                tracing::warn!(layer = %chain, error = %e, "cannot remove unused layer");
            }
        }
    }
}

/// Whether a layer failed because its bytes were wrong (digest, size, diff id), as
/// opposed to a transport or disk problem.
/// See [`ImageManager::usage_changes`].
pub(crate) struct UsageChanges {
    trees: [PathBuf; 2],
}

impl Drop for UsageChanges {
    fn drop(&mut self) {
        for tree in &self.trees {
            disk::forget(tree);
        }
    }
}

pub fn fetch_error_is_integrity(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::DigestMismatch { .. }
            | FetchError::SizeMismatch { .. }
            | FetchError::DiffIdMismatch { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_store_is_not_walked_again_within_its_window() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let images = ImageManager::open(
            root.path(),
            &missing.join("registries.conf"),
            &missing.join("policy.json"),
            &missing,
        )
        .unwrap();
        let (first, _) = images.usage();
        std::fs::write(images.layers.root().join("tmp/data"), vec![1u8; 1 << 20]).unwrap();
        let (second, _) = images.usage();
        assert_eq!(second, first, "ImageFsInfo walked the store again");
        // Once the window has passed (here: no window at all) the store is walked again.
        let (third, _) = images.usage_within(Duration::ZERO);
        assert_eq!(third.inodes, first.inodes + 1, "{third:?}");
        assert!(third.bytes >= first.bytes + (1 << 20), "{third:?}");
        // A pull or a removal makes the next call walk, window or not.
        std::fs::write(images.layers.root().join("tmp/more"), vec![1u8; 1 << 20]).unwrap();
        drop(images.usage_changes());
        let (fourth, _) = images.usage();
        assert_eq!(fourth.inodes, third.inodes + 1, "{fourth:?}");
    }
}
