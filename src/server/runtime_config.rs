//! RuntimeConfig and UpdateRuntimeConfig: the runtime's configuration as the kubelet
//! reads it (the cgroup driver) and sets it (the node's pod CIDR).

use criox_proto::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
    UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse,
};
use tonic::Status;

use super::CriServer;
use super::grpc_errors::task_failed;
use crate::config::CgroupManager;
use crate::network::PodCidrOutcome;
use crate::network::template::parse_pod_cidrs;

pub async fn runtime_config(
    server: &CriServer,
    _req: RuntimeConfigRequest,
) -> Result<RuntimeConfigResponse, Status> {
    let cgroup_driver = match server.config.runtime.cgroup_manager {
        CgroupManager::Systemd => CgroupDriver::Systemd,
        CgroupManager::Cgroupfs => CgroupDriver::Cgroupfs,
    };
    Ok(RuntimeConfigResponse {
        linux: Some(LinuxRuntimeConfiguration {
            cgroup_driver: cgroup_driver as i32,
        }),
    })
}

/// The kubelet hands over the node's pod CIDR; see `network::pod_cidr` for what follows.
pub async fn update_runtime_config(
    server: &CriServer,
    req: UpdateRuntimeConfigRequest,
) -> Result<UpdateRuntimeConfigResponse, Status> {
    let text = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(UpdateRuntimeConfigResponse {});
    }
    let cidrs = parse_pod_cidrs(&text).map_err(|part| {
        Status::invalid_argument(format!(
            "runtime_config.network_config.pod_cidr: {part:?} is not a CIDR"
        ))
    })?;
    let network = server.network.clone();
    let outcome = tokio::task::spawn_blocking(move || network.set_pod_cidrs(cidrs))
        .await
        .map_err(|e| task_failed("pod CIDR", e))?
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    match outcome {
        PodCidrOutcome::Remembered => {
            tracing::info!(pod_cidr = %text, "pod CIDR received; no CNI configuration template is set")
        }
        PodCidrOutcome::AlreadyReady => tracing::info!(
            pod_cidr = %text,
            "pod CIDR received; a CNI configuration is already in place, the template is not used"
        ),
        PodCidrOutcome::Rendered(path) => tracing::info!(
            pod_cidr = %text,
            path = %path.display(),
            "CNI configuration written from the template"
        ),
    }
    Ok(UpdateRuntimeConfigResponse {})
}
