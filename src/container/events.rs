//! Container lifecycle events for GetContainerEvents (the kubelet's evented PLEG).
//!
//! A broadcast channel: every subscriber has its own bounded queue, so a slow subscriber
//! loses its oldest events (and is told how many) instead of holding up the others or the
//! RPC that emitted the event.

use tokio::sync::broadcast;

/// Events kept for a subscriber that has not read them yet.
const QUEUE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub pod_id: String,
    pub kind: EventKind,
    /// When it happened, in nanoseconds since the epoch.
    pub at_ns: i64,
    /// A Stopped event of a container the kernel killed for lack of memory.
    pub oom_killed: bool,
}

#[derive(Clone)]
pub struct Events {
    sender: broadcast::Sender<ContainerEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(QUEUE).0,
        }
    }
}

impl Events {
    pub fn emit(&self, event: ContainerEvent) {
        // No subscriber is not an error: nobody asked.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> ContainerEvent {
        ContainerEvent {
            container_id: format!("c{n}"),
            pod_id: "p".to_string(),
            kind: EventKind::Created,
            at_ns: n as i64,
            oom_killed: false,
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event_in_order() {
        let events = Events::default();
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        for n in 0..3 {
            events.emit(event(n));
        }
        for n in 0..3 {
            assert_eq!(a.recv().await.unwrap(), event(n));
            assert_eq!(b.recv().await.unwrap(), event(n));
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_blocking_the_sender_or_others() {
        let events = Events::default();
        let mut slow = events.subscribe();
        let mut fast = events.subscribe();
        for n in 0..QUEUE + 10 {
            events.emit(event(n));
            assert_eq!(fast.recv().await.unwrap(), event(n));
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(missed)) => assert_eq!(missed, 10),
            other => panic!("expected a lag report, got {other:?}"),
        }
        assert_eq!(slow.recv().await.unwrap(), event(10));
    }
}
