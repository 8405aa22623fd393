//! Container lifecycle RPCs, ExecSync and checkpointing.

use criox_proto::v1::*;
use tonic::Status;

use super::{CriServer, unimplemented};

pub async fn create_container(
    _server: &CriServer,
    _req: CreateContainerRequest,
) -> Result<CreateContainerResponse, Status> {
    Err(unimplemented(
        "CreateContainer",
        "containers are not available",
    ))
}

pub async fn start_container(
    _server: &CriServer,
    _req: StartContainerRequest,
) -> Result<StartContainerResponse, Status> {
    Err(unimplemented(
        "StartContainer",
        "containers are not available",
    ))
}

pub async fn stop_container(
    _server: &CriServer,
    _req: StopContainerRequest,
) -> Result<StopContainerResponse, Status> {
    Err(unimplemented(
        "StopContainer",
        "containers are not available",
    ))
}

pub async fn remove_container(
    _server: &CriServer,
    _req: RemoveContainerRequest,
) -> Result<RemoveContainerResponse, Status> {
    Err(unimplemented(
        "RemoveContainer",
        "containers are not available",
    ))
}

pub async fn list_containers(
    _server: &CriServer,
    _req: ListContainersRequest,
) -> Result<ListContainersResponse, Status> {
    Err(unimplemented(
        "ListContainers",
        "containers are not available",
    ))
}

pub async fn container_status(
    _server: &CriServer,
    _req: ContainerStatusRequest,
) -> Result<ContainerStatusResponse, Status> {
    Err(unimplemented(
        "ContainerStatus",
        "containers are not available",
    ))
}

pub async fn update_container_resources(
    _server: &CriServer,
    _req: UpdateContainerResourcesRequest,
) -> Result<UpdateContainerResourcesResponse, Status> {
    Err(unimplemented(
        "UpdateContainerResources",
        "containers are not available",
    ))
}

pub async fn reopen_container_log(
    _server: &CriServer,
    _req: ReopenContainerLogRequest,
) -> Result<ReopenContainerLogResponse, Status> {
    Err(unimplemented(
        "ReopenContainerLog",
        "containers are not available",
    ))
}

pub async fn exec_sync(
    _server: &CriServer,
    _req: ExecSyncRequest,
) -> Result<ExecSyncResponse, Status> {
    Err(unimplemented("ExecSync", "containers are not available"))
}

pub async fn checkpoint_container(
    _server: &CriServer,
    _req: CheckpointContainerRequest,
) -> Result<CheckpointContainerResponse, Status> {
    Err(unimplemented(
        "CheckpointContainer",
        "checkpointing needs CRIU, which this node lacks",
    ))
}
