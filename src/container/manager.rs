//! The container manager: CRI container lifecycle over the OCI runtime.
//!
//! Each container has a bundle under `<root>/containers/<id>` (config.json, the overlay
//! root filesystem and its writable layer) and a monitor state directory under
//! `<state>/c/<id>`. The record in the store is written before each RPC answers;
//! the monitor's exit record is the truth about how a container ended, also for exits that
//! happened while the daemon was down.
//!
//! Each CRI verb lives in a file of its own beside this one (`create`, `start`, `stop`,
//! `remove`, `exec`, `update`, `log`, `status`, `exit`, `recover`); this file holds what
//! they share.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criox_runtime::{Runtime, RuntimeError};
use oci_spec::image::ImageConfiguration;

use super::events::{ContainerEvent, EventKind, Events};
use super::image_volume::{ImageVolume, ImageVolumeError};
use super::record::ContainerRecord;
use super::spec::{NodeFacts, PodSpecContext, SpecError};
use crate::ids::Locks;
use crate::storage::rootfs::{Rootfs, RootfsError};
use crate::store::{Store, StoreError};

// Also named through this module by the server and the exec streams.
pub use crate::ids::{new_id, now_ns};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("container {id}: {message}")]
    FailedPrecondition { id: String, message: String },
    #[error("container {id}: exec did not finish within {timeout:?}")]
    ExecTimeout { id: String, timeout: Duration },
    #[error("runtime handler {0:?} is not configured")]
    UnknownHandler(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    ImageVolume(#[from] ImageVolumeError),
    #[error("container {id}: cannot write {path}: {source}")]
    Write {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    Internal { id: String, message: String },
}

pub(super) fn invalid(field: &str, reason: impl Into<String>) -> ContainerError {
    ContainerError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The image a container is made from, as the image service resolved it.
#[derive(Debug, Clone)]
pub struct ContainerImage {
    /// The reference as the request named it.
    pub name: String,
    /// The image id (config digest).
    pub id: String,
    /// A digest reference for ContainerStatus.image_ref.
    pub digest_ref: String,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, topmost first (overlayfs `lowerdir=` order).
    pub layers: Vec<PathBuf>,
    /// The images of the config's image volume mounts.
    pub volumes: Vec<ImageVolume>,
}

/// What the pod contributes to a new container.
#[derive(Debug, Clone)]
pub struct ContainerPod {
    pub context: PodSpecContext,
    /// The pod's log directory (absolute), if the kubelet gave one.
    pub log_directory: Option<PathBuf>,
}

pub struct ContainerManager {
    pub(super) store: Store<ContainerRecord>,
    pub(super) events: Events,
    pub(super) runtimes: HashMap<String, Runtime>,
    pub(super) bundles: PathBuf,
    pub(super) states: PathBuf,
    pub(super) node: NodeFacts,
    /// Handlers that apply recursive read-only mounts.
    pub(super) recursive_read_only: std::collections::HashSet<String>,
    /// One lock per container, so that stop, remove and start of one id do not interleave.
    pub(super) locks: Locks,
}

impl ContainerManager {
    /// Opens the store under `root` and learns what happened to every container while the
    /// daemon was away; half-made containers are removed.
    pub async fn open(
        root: &Path,
        state: &Path,
        runtimes: HashMap<String, Runtime>,
        node: NodeFacts,
    ) -> Result<Arc<ContainerManager>, ContainerError> {
        let (store, unreadable) = Store::open(&root.join("store/containers"), "container")?;
        for file in unreadable {
            tracing::warn!(path = %file.path.display(), reason = %file.reason, "skipping unreadable container record");
        }
        let recursive_read_only = runtimes
            .iter()
            .filter(|(_, runtime)| super::handler_features::supports_recursive_read_only(runtime))
            .map(|(name, _)| name.clone())
            .collect();
        let manager = Arc::new(ContainerManager {
            recursive_read_only,
            store,
            events: Events::default(),
            runtimes,
            bundles: root.join("containers"),
            // Short names: monitor and runtime sockets live below, and a unix socket path
            // must fit in 108 bytes with a 64-character id in it.
            states: state.join("c"),
            node,
            locks: Locks::default(),
        });
        manager.recover().await;
        Ok(manager)
    }

    /// Whether the handler applies recursive read-only mounts.
    pub fn supports_recursive_read_only(&self, handler: &str) -> bool {
        self.recursive_read_only.contains(handler)
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub(super) fn runtime(&self, handler: &str) -> Result<&Runtime, ContainerError> {
        self.runtimes
            .get(handler)
            .ok_or_else(|| ContainerError::UnknownHandler(handler.to_string()))
    }

    pub(super) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    pub(super) fn state_dir(&self, id: &str) -> PathBuf {
        self.states.join(id)
    }

    /// The container's upper directory, where its writes land.
    pub fn writable_layer(&self, id: &str) -> PathBuf {
        Rootfs::new(&self.bundle_dir(id)).upper
    }

    pub(super) fn emit(&self, record: &ContainerRecord, kind: EventKind) {
        self.events.emit(ContainerEvent {
            container_id: record.id.clone(),
            pod_id: record.pod_id.clone(),
            kind,
            at_ns: now_ns(),
            oom_killed: kind == EventKind::Stopped
                && record.exit.as_ref().is_some_and(|e| e.oom_killed),
        });
    }

    /// The monitor state directory, for attach and resize.
    pub fn monitor_dir(&self, id: &str) -> PathBuf {
        self.state_dir(id)
    }

    /// The runtime of a container, for streaming exec.
    pub fn runtime_of(&self, record: &ContainerRecord) -> Result<Runtime, ContainerError> {
        Ok(self.runtime(&record.handler)?.clone())
    }
}
