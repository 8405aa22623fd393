//! What every RPC goes through on its way to a handler: a span that names the RPC and the
//! pod, container or image it concerns, and, for a call that changes state, a task of its
//! own. A caller that gives up (its deadline passes, it resets the stream, it goes away)
//! drops only the wait for the answer: a half-run RunPodSandbox or CreateContainer would
//! otherwise hold the name, namespaces, an IP and a cgroup until a restart.

use std::future::Future;

use tonic::{Response, Status};
use tracing::Instrument;
use tracing::field::Empty;

/// What an RPC is about, as far as its request says.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Node,
    Pod(&'a str),
    Container(&'a str),
    Image(&'a str),
}

/// The span of one RPC. A handler that learns an id only as it goes (CreateContainer,
/// RunPodSandbox) records it with `record_container` / `record_pod`.
pub fn span(rpc: &'static str, subject: Subject<'_>) -> tracing::Span {
    let span = tracing::info_span!("rpc", rpc, pod = Empty, container = Empty, image = Empty);
    match subject {
        Subject::Node => {}
        Subject::Pod(id) => {
            span.record("pod", id);
        }
        Subject::Container(id) => {
            span.record("container", id);
        }
        Subject::Image(name) => {
            span.record("image", name);
        }
    }
    span
}

/// Names the pod on the current RPC's span once it is known.
pub fn record_pod(id: &str) {
    tracing::Span::current().record("pod", id);
}

/// Names the container on the current RPC's span once it is known.
pub fn record_container(id: &str) {
    tracing::Span::current().record("container", id);
}

/// A call that only reads: if the caller goes away, so does the work.
pub async fn read<T>(
    span: tracing::Span,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let answer = crate::timeline::timed("total", work)
        .instrument(span.clone())
        .await;
    if let Err(status) = &answer {
        span.in_scope(|| tracing::debug!(code = ?status.code(), "{}", status.message()));
    }
    answer.map(Response::new)
}

/// A call that changes state runs to its end — done, or undone by its own error path —
/// on a task of its own, whatever the caller does meanwhile.
pub async fn change<T: Send + 'static>(
    span: tracing::Span,
    work: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<Response<T>, Status> {
    let task = tokio::spawn(crate::timeline::timed("total", work).instrument(span.clone()));
    let answer = task
        .await
        .unwrap_or_else(|e| Err(super::grpc_errors::task_failed("the call", e)));
    if let Err(status) = &answer {
        span.in_scope(|| tracing::warn!(code = ?status.code(), "refused: {}", status.message()));
    }
    answer.map(Response::new)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    /// Work that outlasts its caller's patience, then reports that it ran to its end.
    async fn slow_work(done: oneshot::Sender<()>) -> Result<(), Status> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = done.send(());
        Ok(())
    }

    /// A caller whose deadline passes long before the work ends.
    async fn give_up_on<T>(call: impl Future<Output = T>) {
        assert!(
            tokio::time::timeout(Duration::from_millis(5), call)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_change_outlives_a_caller_that_gives_up() {
        let (done, finished) = oneshot::channel();
        give_up_on(change(span("Test", Subject::Pod("p1")), slow_work(done))).await;
        tokio::time::timeout(Duration::from_secs(10), finished)
            .await
            .expect("the work did not end")
            .expect("the work was dropped");
    }

    #[tokio::test]
    async fn a_read_ends_with_its_caller() {
        let (done, mut finished) = oneshot::channel();
        give_up_on(read(span("Test", Subject::Node), slow_work(done))).await;
        // The work went with the caller's future, before it could report its end.
        assert_eq!(
            finished.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
    }

    #[tokio::test]
    async fn a_panicking_change_answers_internal() {
        let answer: Result<Response<()>, Status> =
            change(span("Test", Subject::Node), async { panic!("boom") }).await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Internal);
    }
}
