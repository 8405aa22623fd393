//! The container manager: CRI container lifecycle over the OCI runtime.
//!
//! Each container has a bundle under `<root>/containers/<id>` (config.json, the overlay
//! root filesystem and its writable layer) and a monitor state directory under
//! `<state>/c/<id>`. The record in the store is written before each RPC answers;
//! the monitor's exit record is the truth about how a container ended, also for exits that
//! happened while the daemon was down.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criox_proto::v1;
use criox_runtime::oci_spec::runtime::{LinuxResources, Process, Spec};
use criox_runtime::{ExitRecord, LaunchRequest, Runtime, RuntimeError};
use oci_spec::image::ImageConfiguration;

use super::events::{ContainerEvent, EventKind, Events};
use super::exit_watch;
use super::image_volume::{self, ImageVolume, ImageVolumeError};
use super::record::{ContainerRecord, Exit, Filter, MountRecord, ProcessUser, State, full_name};
use super::spec::{ContainerSpecInput, NodeFacts, PodSpecContext, SpecError, build_container_spec};
use crate::storage::rootfs::{Rootfs, RootfsError};
use crate::store::{Store, StoreError};

/// ExecSync output beyond this is cut, as the kubelet's own limit does.
pub const EXEC_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;
/// Exit code recorded when a container's end could not be observed.
const UNKNOWN_EXIT_CODE: i32 = 255;

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

fn invalid(field: &str, reason: impl Into<String>) -> ContainerError {
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
    store: Store<ContainerRecord>,
    events: Events,
    runtimes: HashMap<String, Runtime>,
    bundles: PathBuf,
    states: PathBuf,
    node: NodeFacts,
    /// Handlers that apply recursive read-only mounts.
    recursive_read_only: std::collections::HashSet<String>,
    /// One lock per container, so that stop, remove and start of one id do not interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
            locks: Mutex::new(HashMap::new()),
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

    fn runtime(&self, handler: &str) -> Result<&Runtime, ContainerError> {
        self.runtimes
            .get(handler)
            .ok_or_else(|| ContainerError::UnknownHandler(handler.to_string()))
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }

    fn state_dir(&self, id: &str) -> PathBuf {
        self.states.join(id)
    }

    /// The container's upper directory, where its writes land.
    pub fn writable_layer(&self, id: &str) -> PathBuf {
        Rootfs::new(&self.bundle_dir(id)).upper
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn forget_lock(&self, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The full id for an id or unique prefix.
    pub fn resolve(&self, id: &str) -> Result<String, ContainerError> {
        Ok(self.store.resolve(id)?)
    }

    pub fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let id = self.resolve(id)?;
        self.store
            .get(&id)
            .ok_or(ContainerError::Store(StoreError::NotFound(id, "container")))
    }

    pub fn list(&self, filter: &Filter) -> Vec<ContainerRecord> {
        let mut containers: Vec<_> = self
            .store
            .list()
            .into_iter()
            .filter(|c| filter.matches(c))
            .collect();
        containers.sort_by_key(|c| c.created_at);
        containers
    }

    fn emit(&self, record: &ContainerRecord, kind: EventKind) {
        self.events.emit(ContainerEvent {
            container_id: record.id.clone(),
            pod_id: record.pod_id.clone(),
            kind,
            at_ns: now_ns(),
            oom_killed: kind == EventKind::Stopped
                && record.exit.as_ref().is_some_and(|e| e.oom_killed),
        });
    }

    /// CreateContainer: mounts the root filesystem, writes the bundle and has a monitor
    /// create the container. On any failure nothing of it is left.
    pub async fn create(
        self: &Arc<Self>,
        pod: &ContainerPod,
        image: ContainerImage,
        config: v1::ContainerConfig,
    ) -> Result<String, ContainerError> {
        let metadata = config
            .metadata
            .as_ref()
            .ok_or_else(|| invalid("metadata", "is required"))?;
        if metadata.name.is_empty() {
            return Err(invalid("metadata.name", "is required"));
        }
        let log_path = log_path(pod.log_directory.as_deref(), &config.log_path)?;
        let handler = pod.context.runtime_handler.clone();
        self.runtime(&handler)?;
        let pod_ctx = &pod.context;
        let id = new_id();
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod_ctx.id.clone(),
            name: metadata.name.clone(),
            attempt: metadata.attempt,
            full_name: full_name(
                &metadata.name,
                metadata.attempt,
                &pod_ctx.name,
                &pod_ctx.namespace,
                &pod_ctx.uid,
            ),
            image: image.name.clone(),
            image_id: image.id.clone(),
            image_ref: image.digest_ref.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: mount_records(&config, &image.volumes),
            log_path: log_path.clone(),
            handler,
            cgroup: String::new(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            stop_signal: libc::SIGTERM,
            state: State::Creating,
            created_at: now_ns(),
            started_at: 0,
            pid: 0,
            monitor_pid: 0,
            exit: None,
            resources: config
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref())
                .map(super::record::Resources::from_cri),
            user: None,
        };
        // The record comes first: a crash from here on leaves something start-up cleans.
        // It is not flushed to disk: after a power loss, which ends the container anyway,
        // start-up removes a bundle whose record was lost.
        self.store.insert(record).map_err(|e| match e {
            StoreError::NameTaken { name, holder, .. } => ContainerError::Invalid {
                field: "metadata.name".to_string(),
                reason: format!("container name {name:?} is in use by container {holder}"),
            },
            other => other.into(),
        })?;

        let this = self.clone();
        let pod_ctx = pod.context.clone();
        let task_id = id.clone();
        let made = tokio::task::spawn_blocking(move || {
            this.make(&task_id, &pod_ctx, &image, &config, log_path)
        })
        .await
        .map_err(|e| ContainerError::Internal {
            id: id.clone(),
            message: format!("create task failed: {e}"),
        })
        .and_then(|r| r);
        match made {
            Ok(made) => {
                // What follows describes processes that a power loss ends anyway.
                let record = self.store.update_unsynced(&id, |r| {
                    r.state = State::Created;
                    r.pid = made.pid;
                    r.monitor_pid = made.monitor_pid;
                    r.stop_signal = made.stop_signal;
                    r.cgroup = made.cgroup.clone();
                    r.user = Some(made.user.clone());
                })?;
                self.emit(&record, EventKind::Created);
                self.watch_exit(&id, made.monitor_pid);
                Ok(id)
            }
            Err(e) => {
                let this = self.clone();
                let cleanup_id = id.clone();
                let _ = tokio::task::spawn_blocking(move || this.discard(&cleanup_id)).await;
                let _ = self.store.remove(&id);
                Err(e)
            }
        }
    }

    /// The blocking part of create: root filesystem, spec, bundle, monitor.
    fn make(
        &self,
        id: &str,
        pod: &PodSpecContext,
        image: &ContainerImage,
        config: &v1::ContainerConfig,
        log_path: Option<PathBuf>,
    ) -> Result<Made, ContainerError> {
        let bundle = self.bundle_dir(id);
        if let Some(path) = &log_path
            && let Some(dir) = path.parent()
        {
            std::fs::create_dir_all(dir).map_err(|source| ContainerError::Write {
                id: id.to_string(),
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::create_dir_all(&self.states).map_err(|source| ContainerError::Write {
            id: id.to_string(),
            path: self.states.clone(),
            source,
        })?;
        let handler = self.store.get(id).map(|r| r.handler).unwrap_or_default();
        // The monitor starts up while the root filesystem and the spec are made; it
        // creates nothing until `create` below, and leaves if this returns early.
        let pending = self.runtime(&handler)?.prepare_launch(&LaunchRequest {
            id: id.to_string(),
            bundle: bundle.clone(),
            state_dir: self.state_dir(id),
            log_path,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            terminal: config.tty,
        })?;
        let rootfs = Rootfs::new(&bundle);
        rootfs.mount(&image.layers)?;
        // Image volumes become read-only binds of the image trees mounted in the bundle.
        let mut config = config.clone();
        for volume in &image.volumes {
            let mount = &mut config.mounts[volume.index];
            let source = image_volume::mount_volume(&bundle, volume, &mount.image_sub_path)?;
            mount.host_path = source.display().to_string();
            mount.image = None;
            mount.image_sub_path.clear();
            mount.readonly = true;
        }
        let config = &config;
        let mut node = self.node.clone();
        node.recursive_read_only = self.recursive_read_only.contains(&handler);
        let built = build_container_spec(
            &ContainerSpecInput {
                id,
                rootfs: &rootfs.target,
                config,
                image: &image.config,
                image_name: &image.name,
                pod,
                target_pid_namespace: None,
            },
            &node,
        )?;
        if let Some(cwd) = built.spec.process().as_ref().map(|p| p.cwd()) {
            super::rootfs_path::create_dir_in_root(&rootfs.target, cwd).map_err(|source| {
                ContainerError::Write {
                    id: id.to_string(),
                    path: rootfs.target.join(cwd.strip_prefix("/").unwrap_or(cwd)),
                    source,
                }
            })?;
        }
        for requirement in &built.propagation {
            super::propagation::ensure(requirement)
                .map_err(|e| invalid("mounts", e.to_string()))?;
        }
        let cgroup = built
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let config_path = bundle.join("config.json");
        let json =
            serde_json::to_vec_pretty(&built.spec).map_err(|e| ContainerError::Internal {
                id: id.to_string(),
                message: format!("cannot encode the OCI spec: {e}"),
            })?;
        // Read by the runtime now and by status later; a power loss ends the container with it.
        crate::store::write_atomic_unsynced(&config_path, &json).map_err(|e| {
            ContainerError::Internal {
                id: id.to_string(),
                message: e.to_string(),
            }
        })?;
        let user = built
            .spec
            .process()
            .as_ref()
            .map(|p| p.user())
            .map(|u| ProcessUser {
                uid: u.uid(),
                gid: u.gid(),
                groups: u.additional_gids().clone().unwrap_or_default(),
            })
            .unwrap_or_default();
        let launched = pending.create()?;
        Ok(Made {
            pid: launched.pid,
            monitor_pid: launched.monitor_pid,
            stop_signal: built.stop_signal,
            cgroup,
            user,
        })
    }

    /// Removes every trace of a container that failed to be made or is being removed:
    /// the runtime's container, the monitor state, the mount and the bundle.
    fn discard(&self, id: &str) {
        self.delete_from_runtime(id);
        self.remove_bundle(id);
    }

    /// `discard` for a container whose processes have ended: nothing of it runs from the
    /// root filesystem any more, so the bundle goes while the runtime deletes its part.
    fn discard_stopped(&self, id: &str) {
        std::thread::scope(|scope| {
            scope.spawn(|| self.remove_bundle(id));
            self.delete_from_runtime(id);
        });
    }

    /// The runtime's container (its cgroup and state) and the monitor's state directory.
    fn delete_from_runtime(&self, id: &str) {
        let handler = self.store.get(id).map(|r| r.handler).unwrap_or_default();
        let state_dir = self.state_dir(id);
        if let Ok(runtime) = self.runtime(&handler)
            && let Err(e) = runtime.delete(id, &state_dir, true)
            && !matches!(e, RuntimeError::NotFound { .. })
        {
            tracing::warn!(container = id, error = %e, "runtime delete failed");
        }
        let _ = std::fs::remove_dir_all(&state_dir);
    }

    /// The root filesystem mount and the bundle with the writable layer.
    fn remove_bundle(&self, id: &str) {
        let bundle = self.bundle_dir(id);
        if let Err(e) = image_volume::unmount_all(&bundle) {
            tracing::warn!(container = id, error = %e, "cannot unmount image volumes");
            return;
        }
        if let Err(e) = Rootfs::new(&bundle).unmount() {
            tracing::warn!(container = id, error = %e, "cannot unmount root filesystem");
            return;
        }
        let _ = std::fs::remove_dir_all(&bundle);
    }

    /// Follows the monitor in the background and records the exit when it comes.
    fn watch_exit(self: &Arc<Self>, id: &str, monitor_pid: i32) {
        let this = Arc::downgrade(self);
        let id = id.to_string();
        tokio::spawn(async move {
            exit_watch::process_exit(monitor_pid).await;
            if let Some(this) = this.upgrade() {
                this.record_exit(&id);
            }
        });
    }

    /// Moves a container to Exited from its monitor's exit record (or as unknown when the
    /// monitor is gone without one). Does nothing for a container already exited.
    fn record_exit(&self, id: &str) -> Option<ContainerRecord> {
        let record = self.store.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return None;
        }
        let exit = match ExitRecord::read(&self.state_dir(id)) {
            Ok(Some(exit)) => Exit {
                code: exit.exit_code,
                finished_at: exit.finished_at_unix_nanos,
                oom_killed: exit.oom_killed,
                unknown: false,
            },
            _ if criox_runtime::monitor_client::monitor_pid(&self.state_dir(id)).is_some() => {
                return None;
            }
            _ => Exit {
                code: UNKNOWN_EXIT_CODE,
                finished_at: now_ns(),
                oom_killed: false,
                unknown: true,
            },
        };
        let updated = self
            .store
            .update(id, |r| {
                r.state = State::Exited;
                r.exit = Some(exit);
                r.pid = 0;
            })
            .ok()?;
        self.emit(&updated, EventKind::Stopped);
        Some(updated)
    }

    /// Brings the records in line with reality after a daemon start.
    async fn recover(self: &Arc<Self>) {
        for record in self.store.list() {
            match record.state {
                State::Creating => {
                    tracing::info!(container = %record.id, "removing a container a crash left half-made");
                    let this = self.clone();
                    let id = record.id.clone();
                    let _ = tokio::task::spawn_blocking(move || this.discard(&id)).await;
                    let _ = self.store.remove(&record.id);
                }
                State::Created | State::Running => {
                    let state_dir = self.state_dir(&record.id);
                    match criox_runtime::monitor_client::monitor_pid(&state_dir) {
                        Some(pid) => self.watch_exit(&record.id, pid),
                        None => {
                            self.record_exit(&record.id);
                        }
                    }
                }
                State::Exited => {}
            }
        }
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.sweep_orphan_bundles()).await;
    }

    /// Removes bundles that no record names. The record of a container being created is
    /// written without a flush to disk, so a power loss can take it away and leave its
    /// bundle; nothing runs from such a bundle any more. One whose root filesystem is
    /// still mounted is left alone: something other than a lost record holds it.
    fn sweep_orphan_bundles(&self) {
        let Ok(entries) = std::fs::read_dir(&self.bundles) else {
            return;
        };
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else {
                continue;
            };
            if self.store.get(id).is_some() {
                continue;
            }
            let bundle = entry.path();
            if Rootfs::new(&bundle).is_mounted(&mountinfo) {
                tracing::warn!(bundle = %bundle.display(), "a bundle without a record has its root filesystem mounted; leaving it");
                continue;
            }
            tracing::info!(bundle = %bundle.display(), "removing a bundle without a record");
            if let Err(e) = std::fs::remove_dir_all(&bundle) {
                tracing::warn!(bundle = %bundle.display(), error = %e, "cannot remove bundle");
            }
        }
    }

    /// StartContainer.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let id = self.resolve(id)?;
        let lock = self.lock(&id);
        let _guard = lock.lock().await;
        let record = self.get(&id)?;
        if record.state != State::Created {
            return Err(ContainerError::FailedPrecondition {
                id,
                message: format!("cannot start a container that is {}", record.state.as_str()),
            });
        }
        let runtime = self.runtime(&record.handler)?.clone();
        let start_id = id.clone();
        // Taken before the start: a short process can finish before start returns.
        let started_at = now_ns();
        tokio::task::spawn_blocking(move || runtime.start(&start_id))
            .await
            .map_err(|e| ContainerError::Internal {
                id: id.clone(),
                message: format!("start task failed: {e}"),
            })??;
        let updated = self.store.update_unsynced(&id, |r| {
            // The process may have ended already; the exit watcher records that.
            if r.state == State::Created {
                r.state = State::Running;
            }
            r.started_at = started_at;
        })?;
        self.emit(&updated, EventKind::Started);
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout`. Stopping a container
    /// that is not running succeeds.
    pub async fn stop(self: &Arc<Self>, id: &str, timeout: Duration) -> Result<(), ContainerError> {
        let id = self.resolve(id)?;
        let lock = self.lock(&id);
        let _guard = lock.lock().await;
        self.stop_locked(&id, timeout).await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
    ) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Ok(());
        }
        let runtime = self.runtime(&record.handler)?.clone();
        let monitor_pid = record.monitor_pid;
        if !timeout.is_zero() {
            let signal = record.stop_signal;
            let rt = runtime.clone();
            let kill_id = id.to_string();
            let sent = tokio::task::spawn_blocking(move || rt.kill(&kill_id, signal, false)).await;
            if let Ok(Err(e)) = sent {
                tracing::debug!(container = id, error = %e, "stop signal not delivered");
            }
            if tokio::time::timeout(timeout, exit_watch::process_exit(monitor_pid))
                .await
                .is_ok()
            {
                self.record_exit(id);
                return Ok(());
            }
        }
        let kill_id = id.to_string();
        let sent =
            tokio::task::spawn_blocking(move || runtime.kill(&kill_id, libc::SIGKILL, true)).await;
        if let Ok(Err(e)) = sent {
            tracing::debug!(container = id, error = %e, "SIGKILL not delivered");
        }
        // The kernel ends a SIGKILLed container promptly; the bound only guards against a
        // stuck monitor.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            exit_watch::process_exit(monitor_pid),
        )
        .await;
        self.record_exit(id);
        Ok(())
    }

    /// RemoveContainer: stops it if needed and removes every trace. Unknown ids succeed.
    pub async fn remove(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let id = match self.resolve(id) {
            Ok(id) => id,
            Err(ContainerError::Store(StoreError::NotFound(..))) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.lock(&id);
        let _guard = lock.lock().await;
        let Some(record) = self.store.get(&id) else {
            return Ok(());
        };
        self.stop_locked(&id, Duration::ZERO).await?;
        let this = self.clone();
        let discard_id = id.clone();
        tokio::task::spawn_blocking(move || this.discard_stopped(&discard_id))
            .await
            .map_err(|e| ContainerError::Internal {
                id: id.clone(),
                message: format!("remove task failed: {e}"),
            })?;
        self.store.remove(&id)?;
        self.forget_lock(&id);
        self.emit(&record, EventKind::Deleted);
        Ok(())
    }

    /// Removes every container of a pod (RemovePodSandbox).
    pub async fn remove_pod_containers(
        self: &Arc<Self>,
        pod_id: &str,
    ) -> Result<(), ContainerError> {
        for record in self.store.list() {
            if record.pod_id == pod_id {
                self.remove(&record.id).await?;
            }
        }
        Ok(())
    }

    /// Stops every container of a pod (StopPodSandbox).
    pub async fn stop_pod_containers(self: &Arc<Self>, pod_id: &str) -> Result<(), ContainerError> {
        for record in self.store.list() {
            if record.pod_id == pod_id {
                self.stop(&record.id, Duration::ZERO).await?;
            }
        }
        Ok(())
    }

    /// The container's OCI spec as written in its bundle.
    pub fn spec(&self, id: &str) -> Result<Spec, ContainerError> {
        let path = self.bundle_dir(id).join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| ContainerError::Internal {
            id: id.to_string(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Internal {
            id: id.to_string(),
            message: format!("{} is not an OCI spec: {e}", path.display()),
        })
    }

    pub fn running_record(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.get(id)?;
        if record.state != State::Running {
            return Err(ContainerError::FailedPrecondition {
                id: record.id,
                message: format!("container is {}, not running", record.state.as_str()),
            });
        }
        Ok(record)
    }

    /// The process an exec runs: the container's own user, environment, working directory
    /// and capabilities, with `cmd` as arguments.
    pub fn exec_process(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<Process, ContainerError> {
        if cmd.is_empty() {
            return Err(invalid("cmd", "is empty"));
        }
        let spec = self.spec(id)?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(tty));
        process.set_console_size(None);
        Ok(process)
    }

    /// ExecSync: runs `cmd` in the running container and returns its exit code and output.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<criox_runtime::ExecOutput, ContainerError> {
        let record = self.running_record(id)?;
        let process = self.exec_process(&record.id, cmd, false)?;
        let runtime = self.runtime(&record.handler)?.clone();
        let exec_id = record.id.clone();
        let output = tokio::task::spawn_blocking(move || {
            runtime.exec_sync(&exec_id, &process, timeout, EXEC_OUTPUT_LIMIT)
        })
        .await
        .map_err(|e| ContainerError::Internal {
            id: record.id.clone(),
            message: format!("exec task failed: {e}"),
        })??;
        if output.timed_out {
            return Err(ContainerError::ExecTimeout {
                id: record.id,
                timeout: timeout.unwrap_or_default(),
            });
        }
        Ok(output)
    }

    /// ReopenContainerLog: the monitor reopens the log file after rotation.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.running_record(id)?;
        let state_dir = self.state_dir(&record.id);
        let reopen_id = record.id.clone();
        tokio::task::spawn_blocking(move || {
            criox_runtime::monitor_client::reopen_log(&reopen_id, &state_dir)
        })
        .await
        .map_err(|e| ContainerError::Internal {
            id: record.id.clone(),
            message: format!("reopen task failed: {e}"),
        })??;
        Ok(())
    }

    /// UpdateContainerResources with the CRI's resources.
    pub async fn update_cri_resources(
        &self,
        id: &str,
        resources: &v1::LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        let support = super::resources::CgroupSupport {
            unified: self.node.cgroup_v2,
            swap: self.node.swap_accounting,
        };
        let mut built = super::resources::build(Some(resources), support)?;
        if !self.node.hugetlb {
            // As at create: the kubelet names every page size, the node cannot limit any.
            built.set_hugepage_limits(None);
        }
        self.update_resources(id, built).await?;
        self.store
            .update(id, |r| {
                r.resources = Some(match &r.resources {
                    Some(old) => old.updated(resources),
                    None => super::record::Resources::from_cri(resources),
                })
            })
            .map_err(|e| ContainerError::Internal {
                id: id.to_string(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// UpdateContainerResources on a created or running container.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: LinuxResources,
    ) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Err(ContainerError::FailedPrecondition {
                id: record.id,
                message: format!(
                    "cannot update a container that is {}",
                    record.state.as_str()
                ),
            });
        }
        let runtime = self.runtime(&record.handler)?.clone();
        let update_id = record.id.clone();
        tokio::task::spawn_blocking(move || runtime.update(&update_id, &resources))
            .await
            .map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: format!("update task failed: {e}"),
            })??;
        Ok(())
    }

    /// The monitor state directory, for attach and resize.
    pub fn monitor_dir(&self, id: &str) -> PathBuf {
        self.state_dir(id)
    }

    /// The runtime of a container, for streaming exec.
    pub fn runtime_of(&self, record: &ContainerRecord) -> Result<Runtime, ContainerError> {
        Ok(self.runtime(&record.handler)?.clone())
    }

    /// Containers that have a live monitor (created or running), for metrics.
    pub fn monitored(&self) -> i64 {
        self.store
            .list()
            .iter()
            .filter(|r| matches!(r.state, State::Created | State::Running))
            .count() as i64
    }

    /// Counts by state, for metrics.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for record in self.store.list() {
            *counts.entry(record.state.as_str()).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}

struct Made {
    pid: i32,
    monitor_pid: i32,
    stop_signal: i32,
    cgroup: String,
    user: ProcessUser,
}

fn mount_records(config: &v1::ContainerConfig, volumes: &[ImageVolume]) -> Vec<MountRecord> {
    config
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let volume = volumes.iter().find(|v| v.index == i);
            MountRecord {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                image: volume
                    .and(m.image.as_ref())
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                image_id: volume.map(|v| v.image_id.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The CRI log file: the pod's log directory joined with the container's relative log
/// path, which must stay inside it.
fn log_path(directory: Option<&Path>, relative: &str) -> Result<Option<PathBuf>, ContainerError> {
    if relative.is_empty() {
        return Ok(None);
    }
    let relative = Path::new(relative);
    if relative.is_absolute() {
        return Err(invalid(
            "log_path",
            "must be relative to the pod's log directory",
        ));
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid("log_path", "must not contain '..'"));
    }
    match directory {
        Some(dir) => Ok(Some(dir.join(relative))),
        None => Err(invalid(
            "log_path",
            "is set but the pod has no log_directory",
        )),
    }
}

/// A new container id: 32 random bytes as hex, like other CRI runtimes.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if getrandom(&mut bytes).is_err() {
        // The clock and pid still make a unique id where the random source fails.
        let seed = now_ns() as u128 ^ (u128::from(std::process::id()) << 64);
        bytes[..16].copy_from_slice(&seed.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_inside_the_pod_log_directory() {
        let dir = Path::new("/var/log/pods/p");
        assert_eq!(
            log_path(Some(dir), "app/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/p/app/0.log"))
        );
        assert_eq!(log_path(Some(dir), "").unwrap(), None);
        for bad in ["../x.log", "app/../../x.log", "/etc/passwd"] {
            let err = log_path(Some(dir), bad).unwrap_err().to_string();
            assert!(err.starts_with("log_path:"), "{bad}: {err}");
        }
        assert!(log_path(None, "a.log").is_err());
    }

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
