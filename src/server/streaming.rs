//! Exec, Attach and PortForward: validate, store the request on the streaming server, and
//! answer with the URL the client connects to; and the daemon's side of the streaming
//! server, which runs those sessions against containers and pods.

use std::path::PathBuf;
use std::sync::Arc;

use criox_proto::v1::*;
use tonic::Status;

use super::{CriServer, relay};

/// How long a terminal exec waits for the client's first size before it starts the
/// process without one.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);
use crate::config::Config;
use crate::container::manager::{ContainerError, ContainerManager};
use crate::container::record::{ContainerRecord, State};
use crate::sandbox::{Pod, PodState, SandboxError, SandboxManager};
use crate::store::StoreError;
use crate::streaming::runtime::{BoxFuture, ProcessIo};
use crate::streaming::{Request, RuntimeError, StreamingError, StreamingRuntime, StreamingServer};

/// Starts the streaming server on the configured address for the daemon's pods and
/// containers.
pub async fn start(
    config: &Config,
    pods: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
) -> Result<StreamingServer, StreamingError> {
    let runtime = Arc::new(DaemonContainers { pods, containers });
    let streaming = &config.streaming;
    if streaming.tls_cert_file.as_os_str().is_empty() {
        StreamingServer::start(&streaming.address, streaming.port, runtime).await
    } else {
        StreamingServer::start_tls(
            &streaming.address,
            streaming.port,
            &streaming.tls_cert_file,
            &streaming.tls_key_file,
            runtime,
        )
        .await
    }
}

/// The daemon's side of the streaming seam: exec through the container's runtime, attach
/// through its monitor, port forwarding into the pod's pinned network namespace.
struct DaemonContainers {
    pods: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
}

impl DaemonContainers {
    fn running(&self, container_id: &str) -> Result<ContainerRecord, RuntimeError> {
        let record = self.containers.get(container_id).map_err(|e| match e {
            ContainerError::Store(StoreError::NotFound(..)) => {
                RuntimeError::NotFound(container_id.to_string())
            }
            other => RuntimeError::Failed(other.to_string()),
        })?;
        if record.state != State::Running {
            return Err(RuntimeError::NotRunning(record.id));
        }
        Ok(record)
    }

    async fn ready_pod(&self, pod_id: &str) -> Result<Pod, RuntimeError> {
        let pod = self.pods.get(pod_id).await.map_err(|e| match e {
            SandboxError::NotFound(_) | SandboxError::Ambiguous(_) => {
                RuntimeError::PodNotFound(pod_id.to_string())
            }
            other => RuntimeError::Failed(other.to_string()),
        })?;
        if pod.state != PodState::Ready {
            return Err(RuntimeError::PodNotReady(pod.id));
        }
        Ok(pod)
    }
}

impl StreamingRuntime for DaemonContainers {
    fn check_container<'a>(
        &'a self,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.running(container_id).map(|_| ()) })
    }

    fn check_pod<'a>(&'a self, pod_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.ready_pod(pod_id).await.map(|_| ()) })
    }

    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        cmd: Vec<String>,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<i32, RuntimeError>> {
        Box::pin(async move {
            let record = self.running(container_id)?;
            let mut io = io;
            // Clients send the terminal's size first thing; taking it before the process
            // starts lets the process see it from its first instruction on.
            let size = match io.resize.as_mut() {
                Some(rx) if io.tty => tokio::time::timeout(FIRST_SIZE_WAIT, rx.recv())
                    .await
                    .ok()
                    .flatten()
                    .map(|s| (s.height, s.width)),
                _ => None,
            };
            let exec = self
                .containers
                .spawn_exec(&record.id, &cmd, io.tty, size)
                .await
                .map_err(|e| RuntimeError::Failed(e.to_string()))?;
            relay::exec(exec, io).await
        })
    }

    fn attach<'a>(
        &'a self,
        container_id: &'a str,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let record = self.running(container_id)?;
            let dir = self.containers.monitor_dir(&record.id);
            let stdin = io.stdin.is_some() && record.stdin;
            let id = record.id.clone();
            let stream =
                tokio::task::spawn_blocking(move || criox_runtime::attach(&id, &dir, stdin))
                    .await
                    .map_err(|e| RuntimeError::Failed(e.to_string()))?
                    .map_err(|e| RuntimeError::Failed(e.to_string()))?;
            relay::attach(stream, io).await
        })
    }

    fn port_forward_netns<'a>(
        &'a self,
        pod_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, RuntimeError>> {
        Box::pin(async move {
            let pod = self.ready_pod(pod_id).await?;
            Ok(pod.paths.namespaces.network)
        })
    }
}

pub async fn exec(server: &CriServer, req: ExecRequest) -> Result<ExecResponse, Status> {
    let url = server
        .streaming
        .url_for(Request::Exec {
            container_id: req.container_id,
            cmd: req.cmd,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            tty: req.tty,
        })
        .await?;
    Ok(ExecResponse { url })
}

pub async fn attach(server: &CriServer, req: AttachRequest) -> Result<AttachResponse, Status> {
    let url = server
        .streaming
        .url_for(Request::Attach {
            container_id: req.container_id,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            tty: req.tty,
        })
        .await?;
    Ok(AttachResponse { url })
}

pub async fn port_forward(
    server: &CriServer,
    req: PortForwardRequest,
) -> Result<PortForwardResponse, Status> {
    let mut ports = Vec::with_capacity(req.port.len());
    for port in req.port {
        match u16::try_from(port) {
            Ok(p) if p > 0 => ports.push(p),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "port {port} is out of range"
                )));
            }
        }
    }
    let url = server
        .streaming
        .url_for(Request::PortForward {
            pod_id: req.pod_sandbox_id,
            ports,
        })
        .await?;
    Ok(PortForwardResponse { url })
}
