//! UpdatePodSandboxResources: in-place resize of a pod's cgroup (KEP-1287), reported back
//! in the pod's verbose status (`config.limits`) and statistics (memory available).

use criox_proto::v1::{UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse};
use tonic::Status;

use super::CriServer;
use super::pods::pod_limits;

pub async fn update_pod_sandbox_resources(
    server: &CriServer,
    req: UpdatePodSandboxResourcesRequest,
) -> Result<UpdatePodSandboxResourcesResponse, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Status::invalid_argument("pod_sandbox_id is required"));
    }
    let Some(limits) = pod_limits(req.resources.as_ref(), req.overhead.as_ref()) else {
        return Err(Status::invalid_argument(
            "resources or overhead is required: there is nothing to update",
        ));
    };
    for (field, value) in [
        ("resources.memory_limit_in_bytes", limits.memory_limit),
        ("resources.cpu_shares", limits.cpu_shares),
        ("resources.cpu_quota", limits.cpu_quota),
        ("resources.cpu_period", limits.cpu_period),
    ] {
        if value < 0 {
            return Err(Status::invalid_argument(format!(
                "{field}: {value} is negative"
            )));
        }
    }
    server.pods.resize(&req.pod_sandbox_id, limits).await?;
    Ok(UpdatePodSandboxResourcesResponse {})
}
