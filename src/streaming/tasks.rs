//! The two tasks behind a served connection: a reader that routes what the peer sends and
//! a writer that owns the socket's write half. SPDY and WebSocket connections both run so.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a closing connection may take to write what was queued before its close.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// Stops both tasks when dropped.
pub struct ConnectionTasks {
    /// Turns true when the reader ends: the peer closed the connection or broke the protocol.
    closed: watch::Receiver<bool>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl ConnectionTasks {
    pub fn new(
        closed: watch::Receiver<bool>,
        reader: JoinHandle<()>,
        writer: JoinHandle<()>,
    ) -> ConnectionTasks {
        ConnectionTasks {
            closed,
            reader,
            writer: Some(writer),
        }
    }

    /// Resolves when the reader has ended.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// Waits for the writer to end on its own after the close was queued; a peer that
    /// stops reading cannot hold the session past [`FLUSH_LIMIT`].
    pub async fn flush(&mut self) {
        if let Some(writer) = self.writer.take() {
            let abort = writer.abort_handle();
            if tokio::time::timeout(FLUSH_LIMIT, writer).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for ConnectionTasks {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}
