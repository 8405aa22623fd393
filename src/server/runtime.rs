//! The RuntimeService trait impl: each RPC gets its span and, when it changes state, its
//! own task (see `edge`), then goes to its area's handler function.

use criox_proto::v1::runtime_service_server::RuntimeService;
use criox_proto::v1::*;
use tonic::{Request, Response, Status};

use super::edge::{self, Subject};
use super::events::ContainerEventStream;
use super::list_stream::{self, Chunks};
use super::{
    CriServer, containers, events, pod_resize, pods, runtime_config, stats, status, streaming,
};

#[tonic::async_trait]
impl RuntimeService for CriServer {
    type GetContainerEventsStream = ContainerEventStream;
    type StreamPodSandboxesStream = Chunks<StreamPodSandboxesResponse>;
    type StreamContainersStream = Chunks<StreamContainersResponse>;
    type StreamContainerStatsStream = Chunks<StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = Chunks<StreamPodSandboxStatsResponse>;
    type StreamPodSandboxMetricsStream = Chunks<StreamPodSandboxMetricsResponse>;

    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("Version", Subject::Node);
        edge::read(span, status::version(self, req)).await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RunPodSandbox", Subject::Node);
        let server = self.clone();
        edge::change(
            span,
            async move { pods::run_pod_sandbox(&server, req).await },
        )
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("StopPodSandbox", Subject::Pod(&req.pod_sandbox_id));
        let server = self.clone();
        edge::change(
            span,
            async move { pods::stop_pod_sandbox(&server, req).await },
        )
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RemovePodSandbox", Subject::Pod(&req.pod_sandbox_id));
        let server = self.clone();
        edge::change(
            span,
            async move { pods::remove_pod_sandbox(&server, req).await },
        )
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("PodSandboxStatus", Subject::Pod(&req.pod_sandbox_id));
        edge::read(span, pods::pod_sandbox_status(self, req)).await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListPodSandbox", Subject::Node);
        edge::read(span, pods::list_pod_sandbox(self, req)).await
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("CreateContainer", Subject::Pod(&req.pod_sandbox_id));
        let server = self.clone();
        edge::change(span, async move {
            containers::create_container(&server, req).await
        })
        .await
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("StartContainer", Subject::Container(&req.container_id));
        let server = self.clone();
        edge::change(span, async move {
            containers::start_container(&server, req).await
        })
        .await
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("StopContainer", Subject::Container(&req.container_id));
        let server = self.clone();
        edge::change(span, async move {
            containers::stop_container(&server, req).await
        })
        .await
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RemoveContainer", Subject::Container(&req.container_id));
        let server = self.clone();
        edge::change(span, async move {
            containers::remove_container(&server, req).await
        })
        .await
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListContainers", Subject::Node);
        edge::read(span, containers::list_containers(self, req)).await
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ContainerStatus", Subject::Container(&req.container_id));
        edge::read(span, containers::container_status(self, req)).await
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span(
            "UpdateContainerResources",
            Subject::Container(&req.container_id),
        );
        let server = self.clone();
        edge::change(span, async move {
            containers::update_container_resources(&server, req).await
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ReopenContainerLog", Subject::Container(&req.container_id));
        let server = self.clone();
        edge::change(span, async move {
            containers::reopen_container_log(&server, req).await
        })
        .await
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ExecSync", Subject::Container(&req.container_id));
        edge::read(span, containers::exec_sync(self, req)).await
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("Exec", Subject::Container(&req.container_id));
        edge::read(span, streaming::exec(self, req)).await
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("Attach", Subject::Container(&req.container_id));
        edge::read(span, streaming::attach(self, req)).await
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("PortForward", Subject::Pod(&req.pod_sandbox_id));
        edge::read(span, streaming::port_forward(self, req)).await
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ContainerStats", Subject::Container(&req.container_id));
        edge::read(span, stats::container_stats(self, req)).await
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListContainerStats", Subject::Node);
        edge::read(span, stats::list_container_stats(self, req)).await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("PodSandboxStats", Subject::Pod(&req.pod_sandbox_id));
        edge::read(span, stats::pod_sandbox_stats(self, req)).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListPodSandboxStats", Subject::Node);
        edge::read(span, stats::list_pod_sandbox_stats(self, req)).await
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("UpdateRuntimeConfig", Subject::Node);
        let server = self.clone();
        edge::change(span, async move {
            runtime_config::update_runtime_config(&server, req).await
        })
        .await
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("Status", Subject::Node);
        edge::read(span, status::status(self, req)).await
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("CheckpointContainer", Subject::Container(&req.container_id));
        edge::read(span, containers::checkpoint_container(self, req)).await
    }

    async fn get_container_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let req = request.into_inner();
        let span = edge::span("GetContainerEvents", Subject::Node);
        edge::read(span, events::get_container_events(self, req)).await
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListMetricDescriptors", Subject::Node);
        edge::read(span, stats::list_metric_descriptors(self, req)).await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("ListPodSandboxMetrics", Subject::Node);
        edge::read(span, stats::list_pod_sandbox_metrics(self, req)).await
    }

    async fn runtime_config(
        &self,
        request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RuntimeConfig", Subject::Node);
        edge::read(span, runtime_config::runtime_config(self, req)).await
    }

    async fn stream_pod_sandboxes(
        &self,
        request: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let filter = request.into_inner().filter;
        let span = edge::span("StreamPodSandboxes", Subject::Node);
        edge::read(span, async {
            let list = pods::list_pod_sandbox(self, ListPodSandboxRequest { filter }).await?;
            Ok(list_stream::chunks(list.items, |pod_sandboxes| {
                StreamPodSandboxesResponse { pod_sandboxes }
            }))
        })
        .await
    }

    async fn stream_containers(
        &self,
        request: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let filter = request.into_inner().filter;
        let span = edge::span("StreamContainers", Subject::Node);
        edge::read(span, async {
            let list = containers::list_containers(self, ListContainersRequest { filter }).await?;
            Ok(list_stream::chunks(list.containers, |containers| {
                StreamContainersResponse { containers }
            }))
        })
        .await
    }

    async fn stream_container_stats(
        &self,
        request: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let span = edge::span("StreamContainerStats", Subject::Node);
        edge::read(span, async {
            let list =
                stats::list_container_stats(self, ListContainerStatsRequest { filter }).await?;
            Ok(list_stream::chunks(list.stats, |container_stats| {
                StreamContainerStatsResponse { container_stats }
            }))
        })
        .await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let span = edge::span("StreamPodSandboxStats", Subject::Node);
        edge::read(span, async {
            let list =
                stats::list_pod_sandbox_stats(self, ListPodSandboxStatsRequest { filter }).await?;
            Ok(list_stream::chunks(list.stats, |pod_sandbox_stats| {
                StreamPodSandboxStatsResponse { pod_sandbox_stats }
            }))
        })
        .await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let span = edge::span("StreamPodSandboxMetrics", Subject::Node);
        edge::read(span, async {
            let list =
                stats::list_pod_sandbox_metrics(self, ListPodSandboxMetricsRequest {}).await?;
            Ok(list_stream::chunks(
                list.pod_metrics,
                |pod_sandbox_metrics| StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                },
            ))
        })
        .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span(
            "UpdatePodSandboxResources",
            Subject::Pod(&req.pod_sandbox_id),
        );
        let server = self.clone();
        edge::change(span, async move {
            pod_resize::update_pod_sandbox_resources(&server, req).await
        })
        .await
    }

    async fn checkpoint_pod(
        &self,
        request: Request<CheckpointPodRequest>,
    ) -> Result<Response<CheckpointPodResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("CheckpointPod", Subject::Pod(&req.pod_sandbox_id));
        edge::read(span, containers::checkpoint_pod(self, req)).await
    }

    async fn restore_pod(
        &self,
        request: Request<RestorePodRequest>,
    ) -> Result<Response<RestorePodResponse>, Status> {
        let req = request.into_inner();
        let span = edge::span("RestorePod", Subject::Node);
        edge::read(span, containers::restore_pod(self, req)).await
    }
}
