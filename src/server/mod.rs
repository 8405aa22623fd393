//! The CRI gRPC services. Handlers here are thin: they validate, call a manager, and map
//! the manager's errors to gRPC codes. Each CRI area has its own file of handler
//! functions; `runtime.rs` and `images.rs` hold the tonic trait impls that route to them.

mod containers;
mod images;
mod pods;
mod runtime;
mod stats;
mod status;
mod streaming;

use std::sync::Arc;

use criox_proto::v1::image_service_server::ImageServiceServer;
use criox_proto::v1::runtime_service_server::RuntimeServiceServer;
use tonic::Status;

use crate::config::Config;
use crate::metrics::Metrics;

/// Shared state of both services; cheap to clone.
#[derive(Clone)]
pub struct CriServer {
    config: Arc<Config>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
    streaming: Arc<crate::streaming::StreamingServer>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
}

impl CriServer {
    pub async fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<CriServer, StartError> {
        let streaming = Arc::new(streaming::start(&config).await?);
        Ok(CriServer {
            config,
            metrics,
            streaming,
        })
    }

    pub fn runtime_service(&self) -> RuntimeServiceServer<CriServer> {
        RuntimeServiceServer::new(self.clone())
    }

    pub fn image_service(&self) -> ImageServiceServer<CriServer> {
        ImageServiceServer::new(self.clone())
    }
}

/// The answer for an RPC whose capability is not built yet: say which, never pretend.
fn unimplemented(rpc: &str, missing: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in criox yet: {missing}"))
}
