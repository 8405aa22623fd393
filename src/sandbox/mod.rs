//! Pod sandboxes: their namespaces, cgroup, files and network, and their records.
//!
//! A pod has no pause process. Its network, IPC and UTS namespaces are pinned under
//! `<state>/pods/<id>/ns/`; a shared PID namespace gets a small infra process. The record
//! is written before each RPC answers, and a pod whose creation was cut short by a crash
//! is found by its `Creating` phase on the next start and taken apart.

mod cgroup;
mod files;
pub mod infra;
mod namespaces;
mod shm;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use cgroup::{PodCgroup, PodLimits};
pub use namespaces::Pinned;
pub use validate::Invalid;

use crate::ids::{Locks, new_id, now_ns};
use crate::network::{Bandwidth, Dns, NetworkError, NetworkManager, PodAttachment, PortMapping};
use crate::store::{Record, Store, StoreError};

/// Annotation that sets the size of the pod's /dev/shm.
pub const SHM_SIZE_ANNOTATION: &str = "io.criox.shm-size";
const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";
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

/// Filters of ListPodSandbox.
#[derive(Debug, Default)]
pub struct PodFilter {
    pub id: String,
    pub state: Option<PodState>,
    pub labels: BTreeMap<String, String>,
}

impl SandboxManager {
    /// Opens the store, takes apart pods left half-made by a crash, and marks pods whose
    /// namespaces vanished (a reboot) as not ready.
    pub async fn open(
        root: &Path,
        state: &Path,
        network: Arc<NetworkManager>,
        handlers: Vec<String>,
        default_handler: String,
    ) -> Result<SandboxManager, SandboxError> {
        let (store, unreadable) = Store::<Pod>::open(&root.join("pods"), "pod sandbox")?;
        for bad in unreadable {
            tracing::warn!(path = %bad.path.display(), reason = %bad.reason, "discarding an unreadable pod record");
            let _ = std::fs::remove_file(bad.path);
        }
        let manager = SandboxManager {
            state_dir: state.join("pods"),
            store,
            network,
            handlers,
            default_handler,
            locks: Locks::default(),
        };
        let mut known = Vec::new();
        for mut pod in manager.store.list() {
            if pod.phase == Phase::Creating {
                tracing::warn!(pod = %pod.id, "removing a pod whose creation was interrupted");
                manager.teardown(&mut pod).await;
                let _ = cleanup_dir(&pod.paths.dir);
                manager.store.remove(&pod.id)?;
                continue;
            }
            if pod.state == PodState::Ready
                && pod
                    .paths
                    .namespaces
                    .network
                    .as_ref()
                    .is_some_and(|p| !namespaces::is_pinned(p))
            {
                manager
                    .store
                    .update(&pod.id, |p| p.state = PodState::NotReady)?;
            }
            known.push(pod.id.clone());
        }
        // Network attachments and state directories that belong to no record.
        for id in manager.network.cached_ids() {
            if !known.contains(&id) {
                let _ = manager.network.detach(&id, false).await;
            }
        }
        if let Ok(entries) = std::fs::read_dir(&manager.state_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    let _ = cleanup_dir(&entry.path());
                }
            }
        }
        Ok(manager)
    }

    /// The full id of a created pod; pods still being created are not visible.
    fn resolve(&self, id_or_prefix: &str) -> Result<String, SandboxError> {
        let id = self.store.resolve(id_or_prefix).map_err(|e| match e {
            StoreError::Ambiguous(..) => SandboxError::Ambiguous(id_or_prefix.to_string()),
            _ => SandboxError::NotFound(id_or_prefix.to_string()),
        })?;
        match self.store.get(&id) {
            Some(pod) if pod.phase == Phase::Created => Ok(id),
            _ => Err(SandboxError::NotFound(id_or_prefix.to_string())),
        }
    }

    fn save(&self, pod: &Pod, sync: bool) -> Result<(), SandboxError> {
        let apply = |p: &mut Pod| *p = pod.clone();
        if sync {
            self.store.update(&pod.id, apply)?;
        } else {
            self.store.update_unsynced(&pod.id, apply)?;
        }
        Ok(())
    }

    /// A copy of the pod's record: paths, cgroup parent, IPs, state.
    pub async fn get(&self, id_or_prefix: &str) -> Result<Pod, SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        self.store
            .get(&id)
            .ok_or_else(|| SandboxError::NotFound(id_or_prefix.to_string()))
    }

    /// How many made pods are ready and not ready, for metrics.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        let (mut ready, mut not_ready) = (0, 0);
        for pod in self.store.list() {
            match (pod.phase, pod.state) {
                (Phase::Created, PodState::Ready) => ready += 1,
                (Phase::Created, PodState::NotReady) => not_ready += 1,
                _ => {}
            }
        }
        vec![("ready", ready), ("notready", not_ready)]
    }

    pub async fn list(&self, filter: &PodFilter) -> Vec<Pod> {
        let mut pods: Vec<Pod> = if filter.id.is_empty() {
            self.store.list()
        } else {
            match self.resolve(&filter.id) {
                Ok(id) => self.store.get(&id).into_iter().collect(),
                Err(_) => Vec::new(),
            }
        };
        pods.retain(|pod| {
            pod.phase == Phase::Created
                && filter.state.is_none_or(|s| s == pod.state)
                && filter
                    .labels
                    .iter()
                    .all(|(k, v)| pod.spec.labels.get(k) == Some(v))
        });
        pods.sort_by_key(|p| p.created_at);
        pods
    }

    pub async fn run(&self, mut spec: PodSpec) -> Result<String, SandboxError> {
        validate::spec(&spec)?;
        if spec.runtime_handler.is_empty() {
            spec.runtime_handler = self.default_handler.clone();
        }
        if !self.handlers.contains(&spec.runtime_handler) {
            return Err(SandboxError::Invalid(Invalid {
                field: "runtime_handler".to_string(),
                message: format!(
                    "unknown runtime handler {:?}; configured: {}",
                    spec.runtime_handler,
                    self.handlers.join(", ")
                ),
            }));
        }
        let shm_size = match spec.annotations.get(SHM_SIZE_ANNOTATION) {
            Some(text) => shm::parse_size(text).ok_or_else(|| Invalid {
                field: format!("config.annotations[{SHM_SIZE_ANNOTATION}]"),
                message: format!("{text:?} is not a size"),
            })?,
            None => shm::DEFAULT_SIZE,
        };
        let bandwidth = bandwidth(&spec.annotations)?;
        let id = new_id();
        let full_name = spec.full_name();
        let dir = self.state_dir.join(&id);
        let hostname = if spec.network_mode == NamespaceMode::Node {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if spec.hostname.is_empty() {
            default_hostname(&spec.name)
        } else {
            spec.hostname.clone()
        };
        let mut pod = Pod {
            id: id.clone(),
            hostname,
            state: PodState::NotReady,
            phase: Phase::Creating,
            created_at: now_ns(),
            ips: Vec::new(),
            paths: PodPaths {
                hostname: dir.join("hostname"),
                hosts: dir.join("hosts"),
                resolv_conf: dir.join("resolv.conf"),
                shm: if spec.ipc_mode == NamespaceMode::Node {
                    PathBuf::from("/dev/shm")
                } else {
                    dir.join("shm")
                },
                dir,
                ..PodPaths::default()
            },
            cgroup: PodCgroup::default(),
            infra_pid: None,
            full_name,
            spec,
        };
        // The record reserves the name; a live pod's holder is named in the refusal.
        self.store.insert(pod.clone()).map_err(|e| match e {
            StoreError::NameTaken { name, holder, .. } => SandboxError::NameTaken { name, holder },
            other => SandboxError::Store(other),
        })?;
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        match self.build(&mut pod, shm_size, bandwidth.as_ref()).await {
            Ok(()) => {
                pod.phase = Phase::Created;
                pod.state = PodState::Ready;
                if let Err(e) = self.save(&pod, true) {
                    self.abandon(&mut pod).await;
                    return Err(e);
                }
                Ok(id)
            }
            Err(e) => {
                self.abandon(&mut pod).await;
                Err(e)
            }
        }
    }

    /// Undoes a failed run completely: resources, files, record, name.
    async fn abandon(&self, pod: &mut Pod) {
        self.teardown(pod).await;
        if let Err(e) = cleanup_dir(&pod.paths.dir) {
            tracing::warn!(pod = %pod.id, "cleaning up a failed pod: {e}");
        }
        let _ = self.store.remove(&pod.id);
        self.locks.forget(&pod.id);
    }

    async fn build(
        &self,
        pod: &mut Pod,
        shm_size: u64,
        bandwidth: Option<&Bandwidth>,
    ) -> Result<(), SandboxError> {
        let id = pod.id.clone();
        let setup_err = |message: String| SandboxError::Setup {
            id: id.clone(),
            message,
        };
        let started = std::time::Instant::now();
        let spec = pod.spec.clone();
        let dir = pod.paths.dir.clone();
        let hostname = pod.hostname.clone();
        let wanted = namespaces::Wanted {
            network: spec.network_mode != NamespaceMode::Node,
            ipc: spec.ipc_mode != NamespaceMode::Node,
            uts: spec.network_mode != NamespaceMode::Node,
        };
        // Namespaces, files, /dev/shm and the cgroup are blocking kernel work.
        let (pinned, result) = {
            let paths = pod.paths.clone();
            tokio::task::spawn_blocking(move || {
                let mut paths = paths;
                let result = make_local(&mut paths, &dir, wanted, &spec, &hostname, shm_size);
                (paths, result)
            })
            .await
            .map_err(|e| setup_err(format!("setup thread failed: {e}")))?
        };
        pod.paths = pinned;
        result.map_err(&setup_err)?;
        tracing::debug!(pod = %pod.id, elapsed = ?started.elapsed(), "namespaces, files and /dev/shm ready");

        let parent = if pod.spec.cgroup_parent.is_empty() {
            format!("{DEFAULT_CGROUP_PARENT}/{}", pod.id)
        } else {
            pod.spec.cgroup_parent.clone()
        };
        // Recorded before any directory is made, so a crash leaves a trail to clean.
        pod.cgroup.path = parent.clone();
        self.save(pod, false)?;
        pod.cgroup = cgroup::create(&parent, pod.spec.limits.as_ref())
            .map_err(|e| setup_err(e.to_string()))?;
        self.save(pod, false)?;

        if pod.spec.pid_mode == NamespaceMode::Pod {
            let joins: Vec<(&str, PathBuf)> = [
                ("net", pod.paths.namespaces.network.clone()),
                ("ipc", pod.paths.namespaces.ipc.clone()),
                ("uts", pod.paths.namespaces.uts.clone()),
            ]
            .into_iter()
            .filter_map(|(k, p)| p.map(|p| (k, p)))
            .collect();
            let pod_dir = pod.paths.dir.clone();
            let pid = tokio::task::spawn_blocking(move || {
                let refs: Vec<(&str, &Path)> =
                    joins.iter().map(|(k, p)| (*k, p.as_path())).collect();
                infra::spawn(&refs, &pod_dir)
            })
            .await
            .map_err(|e| setup_err(e.to_string()))?
            .map_err(|e| setup_err(e.to_string()))?;
            pod.infra_pid = Some(pid);
            self.save(pod, false)?;
            let pin = pod.paths.dir.join("ns/pid");
            pin_pid_namespace(pid, &pin).map_err(&setup_err)?;
            pod.paths.pid_namespace = Some(pin);
        }
        tracing::debug!(pod = %pod.id, elapsed = ?started.elapsed(), "cgroup and infra process ready");

        if let Some(netns) = pod.paths.namespaces.network.clone() {
            let attachment = PodAttachment {
                id: &pod.id,
                name: &pod.spec.name,
                namespace: &pod.spec.namespace,
                uid: &pod.spec.uid,
                netns: &netns,
                port_mappings: &pod.spec.port_mappings,
                bandwidth,
                dns: pod.spec.dns.as_ref(),
            };
            pod.ips =
                self.network
                    .attach(&attachment)
                    .await
                    .map_err(|source| SandboxError::Network {
                        id: pod.id.clone(),
                        source,
                    })?;
        }
        tracing::debug!(pod = %pod.id, elapsed = ?started.elapsed(), "network attached");
        files::write_hosts(
            &pod.paths.hosts,
            pod.spec.network_mode == NamespaceMode::Node,
            &pod.hostname,
            &pod.ips,
        )
        .map_err(|e| setup_err(format!("write {}: {e}", pod.paths.hosts.display())))?;
        Ok(())
    }

    /// Stops the pod: its infra process, its network attachment (releasing the IP) and
    /// its /dev/shm. Unknown pods and pods already stopped succeed.
    pub async fn stop(&self, id_or_prefix: &str) -> Result<(), SandboxError> {
        let id = match self.resolve(id_or_prefix) {
            Ok(id) => id,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        // Removed while this call waited for the lock.
        let Some(mut pod) = self.store.get(&id) else {
            return Ok(());
        };
        self.stop_locked(&mut pod).await
    }

    async fn stop_locked(&self, pod: &mut Pod) -> Result<(), SandboxError> {
        if let Some(pid) = pod.infra_pid {
            tokio::task::spawn_blocking(move || infra::kill(pid))
                .await
                .ok();
        }
        let netns_alive = pod
            .paths
            .namespaces
            .network
            .as_ref()
            .is_some_and(|p| namespaces::is_pinned(p));
        self.network
            .detach(&pod.id, netns_alive)
            .await
            .map_err(|source| SandboxError::Network {
                id: pod.id.clone(),
                source,
            })?;
        if pod.paths.shm_mounted {
            shm::unmount(&pod.paths.shm).map_err(|e| SandboxError::Setup {
                id: pod.id.clone(),
                message: format!("unmount {}: {e}", pod.paths.shm.display()),
            })?;
            pod.paths.shm_mounted = false;
        }
        if pod.state != PodState::NotReady || pod.infra_pid.is_some() {
            pod.state = PodState::NotReady;
            pod.infra_pid = None;
            self.save(pod, true)?;
        }
        Ok(())
    }

    /// Removes the pod and everything it holds; unknown pods succeed.
    pub async fn remove(&self, id_or_prefix: &str) -> Result<(), SandboxError> {
        let id = match self.resolve(id_or_prefix) {
            Ok(id) => id,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        let Some(mut pod) = self.store.get(&id) else {
            return Ok(());
        };
        self.stop_locked(&mut pod).await?;
        let mut teardown_pod = pod.clone();
        let errors = self.teardown(&mut teardown_pod).await;
        if let Some(message) = errors.into_iter().next() {
            return Err(SandboxError::Setup {
                id: pod.id.clone(),
                message,
            });
        }
        cleanup_dir(&pod.paths.dir).map_err(|message| SandboxError::Setup {
            id: pod.id.clone(),
            message,
        })?;
        self.store.remove(&pod.id)?;
        self.locks.forget(&pod.id);
        Ok(())
    }

    /// Releases everything a pod may hold, tolerating what is already gone; returns the
    /// failures.
    async fn teardown(&self, pod: &mut Pod) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(pid) = pod.infra_pid.take() {
            tokio::task::spawn_blocking(move || infra::kill(pid))
                .await
                .ok();
        }
        let netns_alive = pod
            .paths
            .namespaces
            .network
            .as_ref()
            .is_some_and(|p| namespaces::is_pinned(p));
        if let Err(e) = self.network.detach(&pod.id, netns_alive).await {
            errors.push(format!("network: {e}"));
        }
        let paths = pod.paths.clone();
        let cgroup = pod.cgroup.clone();
        let local = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            if (paths.shm_mounted || paths.shm.starts_with(&paths.dir))
                && let Err(e) = shm::unmount(&paths.shm)
            {
                errors.push(format!("unmount {}: {e}", paths.shm.display()));
            }
            if let Some(pin) = &paths.pid_namespace
                && let Err(e) = namespaces::unpin(pin)
            {
                errors.push(e.to_string());
            }
            if let Err(e) = namespaces::remove(&paths.namespaces) {
                errors.push(e.to_string());
            }
            // A crash may have happened between pinning and recording the pins.
            for kind in ["net", "ipc", "uts", "pid"] {
                let _ = namespaces::unpin(&paths.dir.join("ns").join(kind));
            }
            if let Err(e) = cgroup::remove(&cgroup) {
                errors.push(e.to_string());
            }
            errors
        })
        .await
        .unwrap_or_else(|e| vec![format!("teardown thread failed: {e}")]);
        errors.extend(local);
        errors
    }

    /// Runs CNI CHECK for a ready pod's attachment; Ok when the pod has none.
    pub async fn check_network(&self, pod: &Pod) -> Result<(), String> {
        if pod.state != PodState::Ready {
            return Ok(());
        }
        self.network.check(&pod.id).await.map_err(|e| e.to_string())
    }

    /// Ok while pods can get a network, else why not.
    pub fn network_ready(&self) -> Result<(), String> {
        self.network.ready()
    }
}

/// Namespaces, hostname/hosts/resolv.conf files and /dev/shm; runs on a blocking thread.
fn make_local(
    paths: &mut PodPaths,
    dir: &Path,
    wanted: namespaces::Wanted,
    spec: &PodSpec,
    hostname: &str,
    shm_size: u64,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    paths.namespaces = namespaces::create(
        &dir.join("ns"),
        wanted,
        &namespaces::Setup {
            hostname,
            sysctls: &spec.sysctls,
        },
    )
    .map_err(|e| e.to_string())?;
    files::write_hostname(&paths.hostname, hostname)
        .map_err(|e| format!("write {}: {e}", paths.hostname.display()))?;
    files::write_resolv_conf(&paths.resolv_conf, spec.dns.as_ref())
        .map_err(|e| format!("write {}: {e}", paths.resolv_conf.display()))?;
    if spec.ipc_mode != NamespaceMode::Node {
        shm::mount(&paths.shm, shm_size)
            .map_err(|e| format!("mount /dev/shm at {}: {e}", paths.shm.display()))?;
        paths.shm_mounted = true;
    }
    Ok(())
}

fn pin_pid_namespace(pid: i32, pin: &Path) -> Result<(), String> {
    std::fs::File::create(pin).map_err(|e| format!("create {}: {e}", pin.display()))?;
    nix::mount::mount(
        Some(format!("/proc/{pid}/ns/pid").as_str()),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("pin PID namespace of {pid} at {}: {e}", pin.display()))
}

/// Unmounts anything left below `dir` and deletes it.
fn cleanup_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))
}

fn bandwidth(annotations: &BTreeMap<String, String>) -> Result<Option<Bandwidth>, Invalid> {
    let parse = |key: &str| -> Result<u64, Invalid> {
        match annotations.get(key) {
            None => Ok(0),
            Some(text) => parse_quantity(text).ok_or_else(|| Invalid {
                field: format!("config.annotations[{key}]"),
                message: format!("{text:?} is not a bandwidth such as 10M"),
            }),
        }
    };
    let ingress = parse(INGRESS_BANDWIDTH)?;
    let egress = parse(EGRESS_BANDWIDTH)?;
    if ingress == 0 && egress == 0 {
        return Ok(None);
    }
    // The bandwidth plugin takes bits per second and bursts in bits; Kubernetes uses
    // an effectively unlimited burst.
    let burst = |rate: u64| if rate > 0 { u64::from(u32::MAX) } else { 0 };
    Ok(Some(Bandwidth {
        ingress_rate: ingress,
        ingress_burst: burst(ingress),
        egress_rate: egress,
        egress_burst: burst(egress),
    }))
}

/// A Kubernetes quantity in decimal units (`10M`, `1G`, `500k`, `1000`).
fn parse_quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A hostname made from the pod name when the kubelet gives none.
fn default_hostname(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "localhost".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_annotations_become_bits_per_second() {
        let mut annotations = BTreeMap::new();
        assert_eq!(bandwidth(&annotations).unwrap(), None);
        annotations.insert(INGRESS_BANDWIDTH.to_string(), "10M".to_string());
        let bw = bandwidth(&annotations).unwrap().unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (10_000_000, 0));
        annotations.insert(EGRESS_BANDWIDTH.to_string(), "fast".to_string());
        assert!(bandwidth(&annotations).is_err());
    }

    #[test]
    fn hostnames_are_made_from_pod_names() {
        assert_eq!(default_hostname("web_0.x"), "web-0-x");
    }
}
