//! Container lifecycle RPCs, ExecSync and checkpointing.

use std::collections::HashMap;
use std::time::Duration;

use criox_proto::v1::*;
use tonic::Status;

use super::grpc_errors::in_field;
use super::{CriServer, unimplemented};
use crate::container::image_volume::ImageVolume;
use crate::container::manager::ContainerError;
use crate::container::record::{ContainerRecord, Filter, State};
use crate::store::StoreError;

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

pub async fn create_container(
    server: &CriServer,
    req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    let pod_id = required("pod_sandbox_id", &req.pod_sandbox_id)?;
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("config is required"))?;
    let image_name = config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .unwrap_or_default();
    required("config.image.image", image_name)?;
    let phase = crate::timeline::phase("pod_and_image");
    let pod = server.container_pod(pod_id).await?;
    let mut image = server.container_image(image_name)?;
    image.volumes = image_volumes(server, &config)?;
    drop(phase);
    let container_id = server.containers.create(&pod, image, config).await?;
    super::edge::record_container(&container_id);
    Ok(CreateContainerResponse { container_id })
}

/// The images of the config's image volume mounts, which must be pulled and read-only.
fn image_volumes(server: &CriServer, config: &ContainerConfig) -> Result<Vec<ImageVolume>, Status> {
    let mut volumes = Vec::new();
    for (index, mount) in config.mounts.iter().enumerate() {
        let Some(spec) = mount.image.as_ref().filter(|i| !i.image.is_empty()) else {
            continue;
        };
        if !mount.readonly {
            return Err(Status::invalid_argument(format!(
                "mounts[{index}].readonly: an image volume is mounted read-only and must say so"
            )));
        }
        let image = server
            .container_image(&spec.image)
            .map_err(|status| in_field(&format!("mounts[{index}].image"), status))?;
        volumes.push(ImageVolume {
            index,
            image_id: image.id,
            layers: image.layers,
        });
    }
    Ok(volumes)
}

pub async fn start_container(
    server: &CriServer,
    req: StartContainerRequest,
) -> Result<StartContainerResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    server.containers.start(id).await?;
    Ok(StartContainerResponse {})
}

pub async fn stop_container(
    server: &CriServer,
    req: StopContainerRequest,
) -> Result<StopContainerResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    if req.timeout < 0 {
        return Err(Status::invalid_argument("timeout must not be negative"));
    }
    // Stopping is idempotent: a container that is gone is as stopped as it gets, and
    // the kubelet retries a stop after the container was removed.
    match server
        .containers
        .stop(id, Duration::from_secs(req.timeout as u64))
        .await
    {
        Ok(()) | Err(ContainerError::Store(StoreError::NotFound(..))) => {
            Ok(StopContainerResponse {})
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_container(
    server: &CriServer,
    req: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    server.containers.remove(id).await?;
    server.cpu_rate.forget(id);
    Ok(RemoveContainerResponse {})
}

fn state_of(record: &ContainerRecord) -> ContainerState {
    match record.state {
        State::Creating | State::Created => ContainerState::ContainerCreated,
        State::Running => ContainerState::ContainerRunning,
        State::Exited => ContainerState::ContainerExited,
    }
}

fn filter_state(value: i32) -> Option<State> {
    match ContainerState::try_from(value).ok()? {
        ContainerState::ContainerCreated => Some(State::Created),
        ContainerState::ContainerRunning => Some(State::Running),
        ContainerState::ContainerExited => Some(State::Exited),
        // No container is ever reported unknown; such a filter matches nothing.
        ContainerState::ContainerUnknown => Some(State::Creating),
    }
}

fn metadata(record: &ContainerRecord) -> ContainerMetadata {
    ContainerMetadata {
        name: record.name.clone(),
        attempt: record.attempt,
    }
}

fn image_spec(record: &ContainerRecord) -> ImageSpec {
    ImageSpec {
        image: record.image.clone(),
        annotations: HashMap::new(),
        user_specified_image: record.image.clone(),
        runtime_handler: String::new(),
        image_ref: String::new(),
    }
}

pub fn to_container(record: &ContainerRecord) -> Container {
    Container {
        id: record.id.clone(),
        pod_sandbox_id: record.pod_id.clone(),
        metadata: Some(metadata(record)),
        image: Some(image_spec(record)),
        image_ref: record.image_ref.clone(),
        state: state_of(record) as i32,
        created_at: record.created_at,
        labels: record.labels.clone(),
        annotations: record.annotations.clone(),
        image_id: record.image_id.clone(),
    }
}

pub fn to_status(record: &ContainerRecord) -> ContainerStatus {
    let (exit_code, finished_at, reason, message) = match &record.exit {
        Some(exit) => (
            exit.code,
            exit.finished_at,
            exit.reason().to_string(),
            if exit.unknown {
                "the container's monitor was lost before it saw the end: the exit code is unknown"
                    .to_string()
            } else {
                String::new()
            },
        ),
        // Still running, but nobody logs its output or will see its exit code.
        None if record.monitor_lost => (
            0,
            0,
            "MonitorLost".to_string(),
            "the container's monitor is gone: its output is no longer logged, attach is \
             unavailable, and its exit code will be unknown"
                .to_string(),
        ),
        None => (0, 0, String::new(), String::new()),
    };
    ContainerStatus {
        id: record.id.clone(),
        metadata: Some(metadata(record)),
        state: state_of(record) as i32,
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at,
        exit_code,
        image: Some(image_spec(record)),
        image_ref: record.image_ref.clone(),
        reason,
        message,
        labels: record.labels.clone(),
        annotations: record.annotations.clone(),
        mounts: record
            .mounts
            .iter()
            .map(|m| Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                image: (!m.image_id.is_empty()).then(|| ImageSpec {
                    image: m.image.clone(),
                    image_ref: m.image_id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        log_path: record
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: record.resources.as_ref().map(|r| ContainerResources {
            linux: Some(r.to_cri()),
            ..Default::default()
        }),
        image_id: record.image_id.clone(),
        user: record.user.as_ref().map(|u| ContainerUser {
            linux: Some(LinuxContainerUser {
                uid: u.uid.into(),
                gid: u.gid.into(),
                supplemental_groups: u.groups.iter().map(|&g| g.into()).collect(),
            }),
        }),
        stop_signal: crate::container::spec::stop_signal::to_cri(record.stop_signal) as i32,
    }
}

pub async fn list_containers(
    server: &CriServer,
    req: ListContainersRequest,
) -> Result<ListContainersResponse, Status> {
    let filter = match req.filter {
        Some(f) => Filter {
            id: (!f.id.is_empty()).then_some(f.id),
            pod_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
            state: f.state.and_then(|s| filter_state(s.state)),
            labels: f.label_selector,
        },
        None => Filter::default(),
    };
    let containers = server
        .containers
        .list(&filter)
        .iter()
        .map(to_container)
        .collect();
    Ok(ListContainersResponse { containers })
}

pub async fn container_status(
    server: &CriServer,
    req: ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    let record = server.containers.get(id)?;
    let mut info = HashMap::new();
    if req.verbose {
        let spec = server.containers.spec(&record.id).ok();
        let userns = match server.pods.get(&record.pod_id).await {
            Ok(pod) => super::pods::userns_info(&pod),
            Err(_) => serde_json::Value::Null,
        };
        let verbose = serde_json::json!({
            "userNamespace": userns,
            "pid": record.pid,
            "monitorPid": record.monitor_pid,
            "runtimeHandler": record.handler,
            "cgroup": record.cgroup,
            "runtimeSpec": spec,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    Ok(ContainerStatusResponse {
        status: Some(to_status(&record)),
        info,
    })
}

pub async fn update_container_resources(
    server: &CriServer,
    req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    let linux = req
        .linux
        .ok_or_else(|| Status::invalid_argument("linux is required"))?;
    server.containers.update_cri_resources(id, &linux).await?;
    Ok(UpdateContainerResourcesResponse {})
}

pub async fn reopen_container_log(
    server: &CriServer,
    req: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    server.containers.reopen_log(id).await?;
    Ok(ReopenContainerLogResponse {})
}

pub async fn exec_sync(
    server: &CriServer,
    req: ExecSyncRequest,
) -> Result<ExecSyncResponse, Status> {
    let id = required("container_id", &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument("cmd is required"));
    }
    if req.timeout < 0 {
        return Err(Status::invalid_argument("timeout must not be negative"));
    }
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
    let output = server.containers.exec_sync(id, &req.cmd, timeout).await?;
    Ok(ExecSyncResponse {
        stdout: output.stdout,
        stderr: output.stderr,
        exit_code: output.exit_code,
    })
}

pub async fn checkpoint_container(
    _server: &CriServer,
    _req: CheckpointContainerRequest,
) -> Result<CheckpointContainerResponse, Status> {
    Err(unimplemented("CheckpointContainer", NO_CHECKPOINTS))
}

/// Why pods cannot be checkpointed: the same reason as for single containers.
const NO_CHECKPOINTS: &str = "checkpointing needs CRIU, which this node lacks";

pub async fn checkpoint_pod(
    _server: &CriServer,
    _req: CheckpointPodRequest,
) -> Result<CheckpointPodResponse, Status> {
    Err(unimplemented("CheckpointPod", NO_CHECKPOINTS))
}

pub async fn restore_pod(
    _server: &CriServer,
    _req: RestorePodRequest,
) -> Result<RestorePodResponse, Status> {
    Err(unimplemented(
        "RestorePod",
        "no checkpoint can exist to restore: checkpointing needs CRIU, which this node lacks",
    ))
}
