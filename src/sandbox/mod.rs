//! Pod sandboxes: their namespaces, cgroup, files and network, and their records.
//!
//! A pod has no pause process. Its network, IPC and UTS namespaces are pinned under
//! `<state>/pods/<id>/ns/`; a shared PID namespace gets a small infra process. The record
//! is written before each RPC answers, and a pod whose creation was cut short by a crash
//! is found by its `Creating` phase on the next start and taken apart. The pod cgroup under
//! the cgroupfs driver is made by `cgroup_driver::cgroupfs`.

mod files;
pub mod infra;
mod list;
mod namespaces;
mod recover;
mod remove;
mod resize;
mod run;
mod shm;
mod status;
mod stop;
mod teardown;
pub mod userns;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::cgroup_driver::cgroupfs::{PodCgroup, PodLimits};
pub use list::PodFilter;
pub use namespaces::Pinned;
pub use validate::Invalid;

use crate::ids::Locks;
use crate::network::{Dns, NetworkError, NetworkManager, PortMapping};
use crate::store::{Record, Store, StoreError};

pub use criox_formats::cri_fields::pod::SHM_SIZE_ANNOTATION;
use criox_formats::cri_fields::pod::{EGRESS_BANDWIDTH, INGRESS_BANDWIDTH};
/// The cgroup parent of pods that name none.
const DEFAULT_CGROUP_PARENT: &str = "/criox-pods";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid pod config: {0}")]
    Invalid(#[from] Invalid),
    #[error("pod name {name} is held by pod {holder}")]
    NameTaken { name: String, holder: String },
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox id prefix {0:?} matches more than one pod")]
    Ambiguous(String),
    #[error("pod sandbox store: {0}")]
    Store(#[from] StoreError),
    #[error("pod {id}: {message}")]
    Setup { id: String, message: String },
    #[error("pod {id}: network: {source}")]
    Network { id: String, source: NetworkError },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NamespaceMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

/// What the kubelet asked for, in the project's own terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<Dns>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub network_mode: NamespaceMode,
    pub pid_mode: NamespaceMode,
    pub ipc_mode: NamespaceMode,
    pub runtime_handler: String,
    pub limits: Option<PodLimits>,
    /// `linux.security_context.privileged`: privileged containers need it.
    #[serde(default)]
    pub privileged: bool,
    /// The pod's own user namespace (`userns_options` mode POD); `None`: the host's.
    #[serde(default)]
    pub userns: Option<userns::UserNs>,
}

impl PodSpec {
    /// The name a live pod holds exclusively.
    pub fn full_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Resources are being made; a record found in this phase at start is a crash's leftover.
    Creating,
    Created,
}

/// Where a pod's shared pieces are, for its containers to join or mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodPaths {
    pub dir: PathBuf,
    /// Pinned net/ipc/uts namespaces; `None` for each the pod shares with the host.
    pub namespaces: Pinned,
    /// The pinned shared PID namespace (PID mode POD).
    pub pid_namespace: Option<PathBuf>,
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's /dev/shm: its own tmpfs, or /dev/shm with the host IPC namespace.
    pub shm: PathBuf,
    pub shm_mounted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub id: String,
    pub spec: PodSpec,
    pub hostname: String,
    pub state: PodState,
    pub phase: Phase,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub ips: Vec<IpAddr>,
    pub paths: PodPaths,
    pub cgroup: PodCgroup,
    pub infra_pid: Option<i32>,
    /// name_namespace_uid_attempt, held exclusively while the pod exists.
    pub full_name: String,
}

impl Pod {
    /// The cgroup the pod's containers go under.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup.path
    }
}

impl Record for Pod {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> Option<&str> {
        Some(&self.full_name)
    }
}

pub struct SandboxManager {
    state_dir: PathBuf,
    store: Store<Pod>,
    network: Arc<NetworkManager>,
    handlers: Vec<String>,
    default_handler: String,
    /// One lock per pod, held through each operation on it.
    locks: Locks,
}

impl SandboxManager {
    /// The full id of a created pod; pods still being created are not visible.
    pub(super) fn resolve(&self, id_or_prefix: &str) -> Result<String, SandboxError> {
        let id = self.store.resolve(id_or_prefix).map_err(|e| match e {
            StoreError::Ambiguous(..) => SandboxError::Ambiguous(id_or_prefix.to_string()),
            _ => SandboxError::NotFound(id_or_prefix.to_string()),
        })?;
        match self.store.get(&id) {
            Some(pod) if pod.phase == Phase::Created => Ok(id),
            _ => Err(SandboxError::NotFound(id_or_prefix.to_string())),
        }
    }

    /// The pod `id_or_prefix` names, read under its lock, which the returned guard holds;
    /// `None` for an unknown pod, including one removed while this waited for the lock.
    pub(super) async fn lock_pod(
        &self,
        id_or_prefix: &str,
    ) -> Result<Option<(Pod, tokio::sync::OwnedMutexGuard<()>)>, SandboxError> {
        let id = match self.resolve(id_or_prefix) {
            Ok(id) => id,
            Err(SandboxError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let guard = self.locks.of(&id).lock_owned().await;
        Ok(self.store.get(&id).map(|pod| (pod, guard)))
    }

    pub(super) fn save(&self, pod: &Pod, sync: bool) -> Result<(), SandboxError> {
        let apply = |p: &mut Pod| *p = pod.clone();
        if sync {
            self.store.update(&pod.id, apply)?;
        } else {
            self.store.update_unsynced(&pod.id, apply)?;
        }
        Ok(())
    }

    /// The last CNI CHECK outcome of a ready pod's attachment (see network::checked); Ok
    /// when the pod has none.
    pub async fn check_network(&self, pod: &Pod) -> Result<(), String> {
        if pod.state != PodState::Ready || pod.paths.namespaces.network.is_none() {
            return Ok(());
        }
        self.network.last_check(&pod.id)
    }

    /// Ok while pods can get a network, else why not.
    pub fn network_ready(&self) -> Result<(), String> {
        self.network.ready()
    }
}
