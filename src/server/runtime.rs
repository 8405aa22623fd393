//! The RuntimeService trait impl: each RPC is routed to its area's handler function.

use std::pin::Pin;

use criox_proto::v1::runtime_service_server::RuntimeService;
use criox_proto::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{CriServer, containers, pods, stats, status, streaming};

pub type ContainerEventStream =
    Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for CriServer {
    type GetContainerEventsStream = ContainerEventStream;

    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        status::version(self, request.into_inner())
            .instrument(tracing::info_span!("Version"))
            .await
            .map(Response::new)
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        pods::run_pod_sandbox(self, request.into_inner())
            .instrument(tracing::info_span!("RunPodSandbox"))
            .await
            .map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        pods::stop_pod_sandbox(self, request.into_inner())
            .instrument(tracing::info_span!("StopPodSandbox"))
            .await
            .map(Response::new)
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        pods::remove_pod_sandbox(self, request.into_inner())
            .instrument(tracing::info_span!("RemovePodSandbox"))
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        pods::pod_sandbox_status(self, request.into_inner())
            .instrument(tracing::info_span!("PodSandboxStatus"))
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        pods::list_pod_sandbox(self, request.into_inner())
            .instrument(tracing::info_span!("ListPodSandbox"))
            .await
            .map(Response::new)
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        containers::create_container(self, request.into_inner())
            .instrument(tracing::info_span!("CreateContainer"))
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        containers::start_container(self, request.into_inner())
            .instrument(tracing::info_span!("StartContainer"))
            .await
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        containers::stop_container(self, request.into_inner())
            .instrument(tracing::info_span!("StopContainer"))
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        containers::remove_container(self, request.into_inner())
            .instrument(tracing::info_span!("RemoveContainer"))
            .await
            .map(Response::new)
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        containers::list_containers(self, request.into_inner())
            .instrument(tracing::info_span!("ListContainers"))
            .await
            .map(Response::new)
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        containers::container_status(self, request.into_inner())
            .instrument(tracing::info_span!("ContainerStatus"))
            .await
            .map(Response::new)
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        containers::update_container_resources(self, request.into_inner())
            .instrument(tracing::info_span!("UpdateContainerResources"))
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        containers::reopen_container_log(self, request.into_inner())
            .instrument(tracing::info_span!("ReopenContainerLog"))
            .await
            .map(Response::new)
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        containers::exec_sync(self, request.into_inner())
            .instrument(tracing::info_span!("ExecSync"))
            .await
            .map(Response::new)
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        streaming::exec(self, request.into_inner())
            .instrument(tracing::info_span!("Exec"))
            .await
            .map(Response::new)
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        streaming::attach(self, request.into_inner())
            .instrument(tracing::info_span!("Attach"))
            .await
            .map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        streaming::port_forward(self, request.into_inner())
            .instrument(tracing::info_span!("PortForward"))
            .await
            .map(Response::new)
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        stats::container_stats(self, request.into_inner())
            .instrument(tracing::info_span!("ContainerStats"))
            .await
            .map(Response::new)
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        stats::list_container_stats(self, request.into_inner())
            .instrument(tracing::info_span!("ListContainerStats"))
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        stats::pod_sandbox_stats(self, request.into_inner())
            .instrument(tracing::info_span!("PodSandboxStats"))
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        stats::list_pod_sandbox_stats(self, request.into_inner())
            .instrument(tracing::info_span!("ListPodSandboxStats"))
            .await
            .map(Response::new)
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        status::update_runtime_config(self, request.into_inner())
            .instrument(tracing::info_span!("UpdateRuntimeConfig"))
            .await
            .map(Response::new)
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        status::status(self, request.into_inner())
            .instrument(tracing::info_span!("Status"))
            .await
            .map(Response::new)
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        containers::checkpoint_container(self, request.into_inner())
            .instrument(tracing::info_span!("CheckpointContainer"))
            .await
            .map(Response::new)
    }

    async fn get_container_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        stats::get_container_events(self, request.into_inner())
            .instrument(tracing::info_span!("GetContainerEvents"))
            .await
            .map(Response::new)
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        stats::list_metric_descriptors(self, request.into_inner())
            .instrument(tracing::info_span!("ListMetricDescriptors"))
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        stats::list_pod_sandbox_metrics(self, request.into_inner())
            .instrument(tracing::info_span!("ListPodSandboxMetrics"))
            .await
            .map(Response::new)
    }

    async fn runtime_config(
        &self,
        request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        status::runtime_config(self, request.into_inner())
            .instrument(tracing::info_span!("RuntimeConfig"))
            .await
            .map(Response::new)
    }
}
