//! The seam between the streaming server and whatever runs processes: the daemon
//! implements [`StreamingRuntime`] with its containers; tests implement it with host
//! processes. The server owns the wire protocols; the runtime only sees byte channels.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A terminal size as the clients send it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client's side of a remote command. Each field is present when the request asked for
/// it. Output senders are bounded: awaiting `send` is the client's back-pressure.
/// Dropping a sender ends that stream for the client.
pub struct ProcessIo {
    /// Ends (yields None) when the client closes its stdin.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Always None with a terminal: the terminal merges both outputs.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Resize events; only with a terminal.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub tty: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("pod sandbox {0} not found")]
    PodNotFound(String),
    #[error("pod sandbox {0} is not ready")]
    PodNotReady(String),
    /// A container that exists but has stopped.
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("{0}")]
    Failed(String),
}

/// What the daemon provides to the streaming server.
///
/// The futures returned by `exec` and `attach` are dropped when the client goes away
/// mid-session; an implementation must then stop the exec'd process (and release the
/// attach) rather than leave it running unattended.
pub trait StreamingRuntime: Send + Sync + 'static {
    /// Checked when Exec/Attach is requested: the container exists and is running.
    fn check_container<'a>(
        &'a self,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Checked when PortForward is requested: the pod sandbox exists and is ready.
    fn check_pod<'a>(&'a self, pod_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Runs `cmd` in the container with `io` (a pty when `io.tty`), resolving to its exit
    /// code (128 + signal for a process killed by a signal).
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        cmd: Vec<String>,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<i32, RuntimeError>>;

    /// Joins the container's main process streams until it exits or the client leaves.
    fn attach<'a>(
        &'a self,
        container_id: &'a str,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The network namespace to dial forwarded ports in; None means the daemon's own.
    fn port_forward_netns<'a>(
        &'a self,
        pod_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, RuntimeError>>;
}
