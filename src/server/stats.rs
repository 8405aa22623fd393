//! Statistics, metrics and container events.

use std::path::Path;
use std::time::Instant;

use criox_proto::v1::*;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::containers::{container_error, to_status};
use super::runtime::ContainerEventStream;
use super::{CriServer, unimplemented};
use crate::container::events::{ContainerEvent, EventKind};
use crate::container::manager::now_ns;
use crate::container::record::{ContainerRecord, Filter, State};
use crate::stats::cgroup::Hierarchy;
use crate::stats::disk;

/// One container's figures. A container whose cgroup is gone (it just exited) gets its
/// attributes and writable layer without CPU and memory.
fn container_stats_of(server: &CriServer, record: &ContainerRecord) -> ContainerStats {
    let now = Instant::now();
    let timestamp = now_ns();
    let (cpu, memory) = match Hierarchy::host().read(Path::new(&record.cgroup)) {
        Ok(stats) if !record.cgroup.is_empty() => {
            let rate = server.cpu_rate.sample(&record.id, now, stats.cpu_usage_ns);
            let m = &stats.memory;
            (
                Some(CpuUsage {
                    timestamp,
                    usage_core_nano_seconds: Some(UInt64Value {
                        value: stats.cpu_usage_ns,
                    }),
                    usage_nano_cores: rate.map(|value| UInt64Value { value }),
                }),
                Some(MemoryUsage {
                    timestamp,
                    working_set_bytes: Some(UInt64Value {
                        value: m.working_set_bytes,
                    }),
                    available_bytes: m.available_bytes().map(|value| UInt64Value { value }),
                    usage_bytes: Some(UInt64Value {
                        value: m.usage_bytes,
                    }),
                    rss_bytes: Some(UInt64Value { value: m.rss_bytes }),
                    page_faults: Some(UInt64Value {
                        value: m.page_faults,
                    }),
                    major_page_faults: Some(UInt64Value {
                        value: m.major_page_faults,
                    }),
                }),
            )
        }
        Ok(_) => (None, None),
        Err(e) => {
            if !e.is_gone() {
                tracing::warn!(container = %record.id, error = %e, "cannot read cgroup statistics");
            }
            (None, None)
        }
    };
    let upper = server.containers.writable_layer(&record.id);
    let writable_layer = disk::usage(&upper).ok().map(|usage| FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: upper.display().to_string(),
        }),
        used_bytes: Some(UInt64Value { value: usage.bytes }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes,
        }),
    });
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: record.id.clone(),
            metadata: Some(ContainerMetadata {
                name: record.name.clone(),
                attempt: record.attempt,
            }),
            labels: record.labels.clone(),
            annotations: record.annotations.clone(),
        }),
        cpu,
        memory,
        writable_layer,
        swap: None,
    }
}

pub async fn container_stats(
    server: &CriServer,
    req: ContainerStatsRequest,
) -> Result<ContainerStatsResponse, Status> {
    let record = server
        .containers
        .get(&req.container_id)
        .map_err(container_error)?;
    let server = server.clone();
    let stats = tokio::task::spawn_blocking(move || container_stats_of(&server, &record))
        .await
        .map_err(|e| Status::internal(format!("statistics task failed: {e}")))?;
    Ok(ContainerStatsResponse { stats: Some(stats) })
}

pub async fn list_container_stats(
    server: &CriServer,
    req: ListContainerStatsRequest,
) -> Result<ListContainerStatsResponse, Status> {
    let filter = match req.filter {
        Some(f) => Filter {
            id: (!f.id.is_empty()).then_some(f.id),
            pod_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
            state: None,
            labels: f.label_selector,
        },
        None => Filter::default(),
    };
    let records: Vec<ContainerRecord> = server
        .containers
        .list(&filter)
        .into_iter()
        .filter(|r| r.state == State::Running || r.state == State::Created)
        .collect();
    let server = server.clone();
    let stats = tokio::task::spawn_blocking(move || {
        records
            .iter()
            .map(|r| container_stats_of(&server, r))
            .collect()
    })
    .await
    .map_err(|e| Status::internal(format!("statistics task failed: {e}")))?;
    Ok(ListContainerStatsResponse { stats })
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
    server: &CriServer,
    _req: GetEventsRequest,
) -> Result<ContainerEventStream, Status> {
    let server = server.clone();
    let mut events = server.containers.events().subscribe();
    // A task per subscriber turns events into responses; it ends when the subscriber
    // goes away (the send fails) or the daemon stops (the channel closes).
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a container event subscriber fell behind");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let response = event_response(&server, &event).await;
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

async fn event_response(server: &CriServer, event: &ContainerEvent) -> ContainerEventResponse {
    let kind = match event.kind {
        EventKind::Created => ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => ContainerEventType::ContainerDeletedEvent,
    };
    let pod_filter = Filter {
        pod_id: Some(event.pod_id.clone()),
        ..Default::default()
    };
    ContainerEventResponse {
        container_id: event.container_id.clone(),
        container_event_type: kind as i32,
        created_at: event.at_ns,
        pod_sandbox_status: server.pod_status_for_event(&event.pod_id).await,
        containers_statuses: server
            .containers
            .list(&pod_filter)
            .iter()
            .map(to_status)
            .collect(),
    }
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
