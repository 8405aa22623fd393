//! GetContainerEvents: the stream of container lifecycle events the kubelet's evented
//! PLEG follows, each with the pod's and its containers' statuses at that moment.

use std::pin::Pin;

use criox_proto::v1::*;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::CriServer;
use super::containers::to_status;
use crate::container::events::{ContainerEvent, EventKind};
use crate::container::record::Filter;

/// The response stream of GetContainerEvents, as the generated RuntimeService names it.
pub type ContainerEventStream =
    Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

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
