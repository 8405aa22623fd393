//! Statistics, metrics and container events.

use super::runtime::ContainerEventStream;
use criox_proto::v1::*;
use tonic::Status;

use super::{CriServer, unimplemented};

pub async fn container_stats(
    _server: &CriServer,
    _req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    Err(unimplemented(
        "ContainerStats",
        "statistics, events and metrics are not available",
    ))
}

pub async fn list_container_stats(
    _server: &CriServer,
    _req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    Err(unimplemented(
        "ListContainerStats",
        "statistics, events and metrics are not available",
    ))
}

pub async fn pod_sandbox_stats(
    _server: &CriServer,
    _req: PodSandboxStatsRequest,
) -> Result<PodSandboxStatsResponse, Status> {
    Err(unimplemented(
        "PodSandboxStats",
        "statistics, events and metrics are not available",
    ))
}

pub async fn list_pod_sandbox_stats(
    _server: &CriServer,
    _req: ListPodSandboxStatsRequest,
) -> Result<ListPodSandboxStatsResponse, Status> {
    Err(unimplemented(
        "ListPodSandboxStats",
        "statistics, events and metrics are not available",
    ))
}

pub async fn get_container_events(
    _server: &CriServer,
    _req: GetEventsRequest,
) -> Result<ContainerEventStream, Status> {
    Err(unimplemented(
        "GetContainerEvents",
        "statistics, events and metrics are not available",
    ))
}

pub async fn list_metric_descriptors(
    _server: &CriServer,
    _req: ListMetricDescriptorsRequest,
) -> Result<ListMetricDescriptorsResponse, Status> {
    Err(unimplemented(
        "ListMetricDescriptors",
        "statistics, events and metrics are not available",
    ))
}

pub async fn list_pod_sandbox_metrics(
    _server: &CriServer,
    _req: ListPodSandboxMetricsRequest,
) -> Result<ListPodSandboxMetricsResponse, Status> {
    Err(unimplemented(
        "ListPodSandboxMetrics",
        "statistics, events and metrics are not available",
    ))
}
