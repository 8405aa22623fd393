//! CreateContainer: the record, the root filesystem, the OCI spec and the bundle, and a
//! monitor that creates the container from them. On any failure nothing of it is left.

use std::path::PathBuf;
use std::sync::Arc;

use criox_proto::v1;
use criox_runtime::{LaunchRequest, MonitorCgroup};

use super::events::EventKind;
use super::image_volume::{self, ImageVolume};
use super::log::log_path;
use super::manager::{ContainerError, ContainerImage, ContainerManager, ContainerPod, invalid};
use super::record::{ContainerRecord, MountRecord, ProcessUser, State, full_name};
use super::spec::{ContainerSpecInput, PodSpecContext, build_container_spec};
use crate::ids::{new_id, now_ns};
use crate::storage::rootfs::{Rootfs, UsernsRoot};
use crate::store::StoreError;

impl ContainerManager {
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
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            stop_signal: libc::SIGTERM,
            state: State::Creating,
            created_at: now_ns(),
            resources: config
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref())
                .map(super::record::Resources::from_cri),
            // Nothing has run yet: no cgroup, process, exit or user.
            ..Default::default()
        };
        // The record comes first: a crash from here on leaves something start-up cleans.
        // It is not flushed to disk: after a power loss, which ends the container anyway,
        // start-up removes a bundle whose record was lost.
        let phase = crate::timeline::phase("record");
        self.store.insert(record).map_err(|e| match e {
            StoreError::NameTaken { name, holder, .. } => ContainerError::Invalid {
                field: "metadata.name".to_string(),
                reason: format!("container name {name:?} is in use by container {holder}"),
            },
            other => other.into(),
        })?;

        drop(phase);
        let this = self.clone();
        let pod_ctx = pod.context.clone();
        let task_id = id.clone();
        let rpc = tracing::Span::current();
        let made = tokio::task::spawn_blocking(move || {
            let _rpc = rpc.enter();
            this.make(&task_id, &pod_ctx, &image, &config, log_path)
        })
        .await
        .map_err(|e| ContainerError::Internal {
            id: id.clone(),
            message: format!("create task failed: {e}"),
        })
        .and_then(|r| r);
        // Under the systemd driver the created (not yet started) init process goes into its
        // scope, which carries the container's resources as properties, unless the runtime
        // made the scope itself (runc with --systemd-cgroup).
        let made = match made {
            Ok(made) if crate::cgroup_driver::is_systemd() && !made.runtime_scope => {
                crate::cgroup_driver::container_scope(
                    &id,
                    &made.cgroup,
                    made.pid as u32,
                    made.resources.as_ref(),
                )
                .await
                .map(|()| made)
                .map_err(|message| ContainerError::Internal {
                    id: id.clone(),
                    message: format!("cannot place the container in its systemd scope: {message}"),
                })
            }
            other => other,
        };
        // Its own scope for the monitor, away from the daemon's cgroup (cgroupfs monitors
        // joined theirs when they started). A monitor left in the daemon's cgroup still
        // serves its container, until the daemon's cgroup is killed: a warning, not a failure.
        if let Ok(made) = &made
            && crate::cgroup_driver::is_systemd()
            && made.monitor_pid > 0
            && let Err(e) = crate::cgroup_driver::monitor::scope(&id, made.monitor_pid).await
        {
            tracing::warn!(container = %id, error = %e, "the monitor stays in the daemon's cgroup");
        }
        match made {
            Ok(made) => {
                let _phase = crate::timeline::phase("record_created");
                // What follows describes processes that a power loss ends anyway.
                let record = self.store.update_unsynced(&id, |r| {
                    r.state = State::Created;
                    r.pid = made.pid;
                    r.pid_start_time = made.pid_start_time;
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
        let phase = crate::timeline::phase("dirs");
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
        drop(phase);
        let phase = crate::timeline::phase("monitor_spawn");
        // The monitor starts up while the root filesystem and the spec are made; it
        // creates nothing until `create` below, and leaves if this returns early.
        let pending = self.runtime(&handler)?.prepare_launch_in(
            &LaunchRequest {
                id: id.to_string(),
                bundle: bundle.clone(),
                state_dir: self.state_dir(id),
                log_path,
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                terminal: config.tty,
            },
            &monitor_cgroup(id),
        )?;
        drop(phase);
        let phase = crate::timeline::phase("rootfs_mount");
        if let Some(u) = &pod.userns {
            crate::storage::idmap::make_owned_dir(&bundle, u.uids.host_id, u.gids.host_id)
                .map_err(|source| ContainerError::Write {
                    id: id.to_string(),
                    path: bundle.clone(),
                    source,
                })?;
        }
        let rootfs = Rootfs::new(&bundle);
        let userns_root = pod.userns.as_ref().map(|u| UsernsRoot {
            userns: &u.path,
            uid: u.uids.host_id,
            gid: u.gids.host_id,
        });
        rootfs.mount(&image.layers, userns_root)?;
        drop(phase);
        let phase = crate::timeline::phase("spec_build");
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
        super::idmapped::map_volumes(id, &bundle, &mut config, pod)?;
        let config = &config;
        let mut node = self.node.clone();
        node.recursive_read_only = self.recursive_read_only.contains(&handler);
        node.runtime_systemd_cgroup = self.runtime(&handler)?.systemd_cgroup();
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
            let owner = userns_root.map(|r| (r.uid, r.gid));
            super::rootfs_path::create_dir_in_root(&rootfs.target, cwd, owner).map_err(
                |source| ContainerError::Write {
                    id: id.to_string(),
                    path: rootfs.target.join(cwd.strip_prefix("/").unwrap_or(cwd)),
                    source,
                },
            )?;
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
            .map(|p| crate::cgroup_driver::cgroup_dir(&p.display().to_string()))
            .unwrap_or_default();
        drop(phase);
        let phase = crate::timeline::phase("spec_write");
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
        let resources = built
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone());
        drop(phase);
        let phase = crate::timeline::phase("backend_create");
        let launched = pending.create()?;
        drop(phase);
        Ok(Made {
            pid: launched.pid,
            pid_start_time: launched.init.map(|p| p.start_time),
            monitor_pid: launched.monitor_pid,
            stop_signal: built.stop_signal,
            cgroup,
            runtime_scope: node.runtime_systemd_cgroup,
            user,
            resources,
        })
    }
}

/// Under the cgroupfs driver: the directories of the monitor's own cgroup, which it lives
/// in from before it forks anything. Where cgroups cannot be made (a read-only cgroup filesystem),
/// the monitor stays in the daemon's cgroup, as before monitor cgroups.
fn monitor_cgroup(id: &str) -> MonitorCgroup {
    if crate::cgroup_driver::is_systemd() {
        return MonitorCgroup::default();
    }
    crate::cgroup_driver::monitor::make(id).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the monitor stays in the daemon's cgroup");
        MonitorCgroup::default()
    })
}

struct Made {
    pid: i32,
    pid_start_time: Option<u64>,
    monitor_pid: i32,
    stop_signal: i32,
    /// The container's cgroup directory (the scope's path under systemd).
    cgroup: String,
    /// The runtime made the container's systemd scope itself.
    runtime_scope: bool,
    user: ProcessUser,
    resources: Option<oci_spec::runtime::LinuxResources>,
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
