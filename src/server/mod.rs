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
use crate::image::ImageManager;
use crate::metrics::Metrics;
use crate::network::NetworkManager;
use crate::sandbox::SandboxManager;

/// Shared state of both services; cheap to clone.
#[derive(Clone)]
pub struct CriServer {
    config: Arc<Config>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
    images: Arc<ImageManager>,
    streaming: Arc<crate::streaming::StreamingServer>,
    pods: Arc<SandboxManager>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("image service: {0}")]
    Images(#[from] crate::image::ImageError),
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
    #[error("cannot open the pod sandboxes: {0}")]
    Pods(#[from] crate::sandbox::SandboxError),
}

impl CriServer {
    pub async fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<CriServer, StartError> {
        let images = Arc::new(ImageManager::open(
            &config.root,
            &config.image.registries_config,
            &config.image.signature_policy,
            &config.image.certs_dir,
        )?);
        let network = Arc::new(NetworkManager::new(
            &config.network.cni_config_dir,
            &config.network.cni_plugin_dirs,
            &config.root.join("network"),
            std::time::Duration::from_secs(config.network.cni_plugin_timeout.max(1)),
        ));
        let pods = SandboxManager::open(
            &config.root,
            &config.state,
            network,
            config.runtime.handlers.keys().cloned().collect(),
            config.runtime.default_handler.clone(),
        )
        .await?;
        let pods = Arc::new(pods);
        let streaming = Arc::new(streaming::start(&config, pods.clone()).await?);
        Ok(CriServer {
            config,
            metrics,
            images,
            streaming,
            pods,
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
