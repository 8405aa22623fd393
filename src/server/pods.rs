//! Pod sandbox RPCs.

use criox_proto::v1::*;
use tonic::Status;

use super::{CriServer, unimplemented};

pub async fn run_pod_sandbox(
    _server: &CriServer,
    _req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Status> {
    Err(unimplemented(
        "RunPodSandbox",
        "pod sandboxes (namespaces, CNI networking) are not available",
    ))
}

pub async fn stop_pod_sandbox(
    _server: &CriServer,
    _req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    Err(unimplemented(
        "StopPodSandbox",
        "pod sandboxes (namespaces, CNI networking) are not available",
    ))
}

pub async fn remove_pod_sandbox(
    _server: &CriServer,
    _req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    Err(unimplemented(
        "RemovePodSandbox",
        "pod sandboxes (namespaces, CNI networking) are not available",
    ))
}

pub async fn pod_sandbox_status(
    _server: &CriServer,
    _req: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    Err(unimplemented(
        "PodSandboxStatus",
        "pod sandboxes (namespaces, CNI networking) are not available",
    ))
}

pub async fn list_pod_sandbox(
    _server: &CriServer,
    _req: ListPodSandboxRequest,
) -> Result<ListPodSandboxResponse, Status> {
    Err(unimplemented(
        "ListPodSandbox",
        "pod sandboxes (namespaces, CNI networking) are not available",
    ))
}
