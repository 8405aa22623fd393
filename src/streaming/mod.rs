//! The streaming server behind Exec, Attach and PortForward: the RPC validates a request
//! and stores it under a single-use token; the client then connects to the returned URL and
//! speaks the kubelet's protocols (SPDY/3.1 or WebSocket) to run the session.

mod cache;
mod dial;
mod http;
mod portforward;
mod remotecommand;
pub mod runtime;
mod sink;
mod spdy;
mod tasks;
mod tls;
mod tunnel;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use cache::Request;
use cache::{CacheError, TOKEN_TTL, TokenCache};
pub use runtime::{RuntimeError, StreamingRuntime};

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("cannot listen for streaming on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("streaming TLS: cannot use {path}: {message}")]
    Tls {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

pub struct StreamingServer {
    base_url: String,
    shared: Arc<http::Shared>,
    task: JoinHandle<()>,
}

impl StreamingServer {
    /// Binds `address:port` (port 0 picks a free one) and serves in the background.
    pub async fn start(
        address: &str,
        port: u16,
        runtime: Arc<dyn StreamingRuntime>,
    ) -> Result<StreamingServer, StreamingError> {
        Self::start_with_ttl(address, port, runtime, TOKEN_TTL).await
    }

    /// As [`StreamingServer::start`], serving HTTPS with the PEM certificate chain and key
    /// in `cert` and `key`.
    pub async fn start_tls(
        address: &str,
        port: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        runtime: Arc<dyn StreamingRuntime>,
    ) -> Result<StreamingServer, StreamingError> {
        let acceptor = TlsAcceptor::from(tls::server_config(cert, key)?);
        Self::serve(address, port, Some(acceptor), runtime, TOKEN_TTL).await
    }

    /// As [`StreamingServer::start`], with URLs that expire after `ttl`.
    pub async fn start_with_ttl(
        address: &str,
        port: u16,
        runtime: Arc<dyn StreamingRuntime>,
        ttl: std::time::Duration,
    ) -> Result<StreamingServer, StreamingError> {
        Self::serve(address, port, None, runtime, ttl).await
    }

    async fn serve(
        address: &str,
        port: u16,
        tls: Option<TlsAcceptor>,
        runtime: Arc<dyn StreamingRuntime>,
        ttl: std::time::Duration,
    ) -> Result<StreamingServer, StreamingError> {
        let host = address.trim_start_matches('[').trim_end_matches(']');
        let listener =
            TcpListener::bind((host, port))
                .await
                .map_err(|source| StreamingError::Listen {
                    address: format!("{address}:{port}"),
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StreamingError::Listen {
                address: format!("{address}:{port}"),
                source,
            })?;
        let shared = Arc::new(http::Shared {
            cache: TokenCache::new(ttl),
            runtime,
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(http::accept_loop(listener, tls, shared.clone()));
        let base_url = match local_addr {
            SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        };
        tracing::info!("streaming server listening on {base_url}");
        Ok(StreamingServer {
            base_url,
            shared,
            task,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Validates `request`, stores it, and returns the URL the client connects to.
    pub async fn url_for(&self, request: Request) -> Result<String, StreamingError> {
        validate(&request)?;
        match &request {
            Request::Exec { container_id, .. } | Request::Attach { container_id, .. } => {
                self.shared.runtime.check_container(container_id).await?
            }
            Request::PortForward { pod_id, .. } => self.shared.runtime.check_pod(pod_id).await?,
        }
        let kind = request.kind();
        let token = self.shared.cache.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn validate(request: &Request) -> Result<(), StreamingError> {
    let invalid = |m: &str| Err(StreamingError::Invalid(m.to_string()));
    match request {
        Request::Exec {
            container_id,
            stdin,
            stdout,
            stderr,
            tty,
            ..
        }
        | Request::Attach {
            container_id,
            stdin,
            stdout,
            stderr,
            tty,
        } => {
            if container_id.is_empty() {
                return invalid("container_id is required");
            }
            if let Request::Exec { cmd, .. } = request
                && cmd.first().is_none_or(|c| c.is_empty())
            {
                return invalid("cmd is required");
            }
            streams(*stdin, *stdout, *stderr, *tty)
        }
        Request::PortForward { pod_id, .. } => {
            if pod_id.is_empty() {
                return invalid("pod_sandbox_id is required");
            }
            Ok(())
        }
    }
}

fn streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), StreamingError> {
    if !stdin && !stdout && !stderr {
        return Err(StreamingError::Invalid(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(StreamingError::Invalid(
            "tty and stderr cannot both be true".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_choices_are_checked() {
        assert!(streams(false, false, false, false).is_err());
        assert!(streams(false, true, true, true).is_err());
        assert!(streams(true, true, false, true).is_ok());
        let exec = Request::Exec {
            container_id: "c".into(),
            cmd: vec![],
            stdin: false,
            stdout: true,
            stderr: false,
            tty: false,
        };
        assert!(validate(&exec).is_err());
    }
}
