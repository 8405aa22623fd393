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

use std::collections::HashMap;
use std::sync::Arc;

use criox_proto::v1::image_service_server::ImageServiceServer;
use criox_proto::v1::runtime_service_server::RuntimeServiceServer;
use tonic::Status;

use crate::config::{Config, EMBEDDED_HANDLER};
use crate::container::manager::{ContainerError, ContainerImage, ContainerManager, ContainerPod};
use crate::container::spec::NodeFacts;
use crate::metrics::Metrics;
use crate::stats::cpu_rate::CpuRate;

/// Shared state of both services; cheap to clone.
#[derive(Clone)]
pub struct CriServer {
    config: Arc<Config>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
    streaming: Arc<crate::streaming::StreamingServer>,
    containers: Arc<ContainerManager>,
    cpu_rate: Arc<CpuRate>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
    #[error("cannot open the container store: {0}")]
    Containers(#[from] ContainerError),
}

impl CriServer {
    pub async fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<CriServer, StartError> {
        let streaming = Arc::new(streaming::start(&config).await?);
        let containers = ContainerManager::open(
            &config.root,
            &config.state,
            runtimes(&config),
            NodeFacts::detect(),
        )
        .await?;
        let population = containers.clone();
        metrics.set_population_source(Box::new(move || crate::metrics::Population {
            pods: Vec::new(),
            containers: population.counts(),
            monitors: 0,
        }));
        Ok(CriServer {
            config,
            metrics,
            streaming,
            containers,
            cpu_rate: Arc::new(CpuRate::default()),
        })
    }

    /// What the pod contributes to a new container.
    fn container_pod(&self, pod_id: &str) -> Result<ContainerPod, Status> {
        Err(Status::not_found(format!(
            "pod sandbox {pod_id:?} not found"
        )))
    }

    /// The image a new container is made from.
    fn container_image(&self, image: &str) -> Result<ContainerImage, Status> {
        Err(Status::not_found(format!("image {image:?} not found")))
    }

    /// The pod's status for a container event.
    fn pod_status_for_event(&self, _pod_id: &str) -> Option<criox_proto::v1::PodSandboxStatus> {
        None
    }

    pub fn runtime_service(&self) -> RuntimeServiceServer<CriServer> {
        RuntimeServiceServer::new(self.clone())
    }

    pub fn image_service(&self) -> ImageServiceServer<CriServer> {
        ImageServiceServer::new(self.clone())
    }
}

/// One runtime per configured handler, each with its state under `<state>/r/<handler>`
/// (short, because libcontainer keeps a unix socket per container below it).
fn runtimes(config: &Config) -> HashMap<String, criox_runtime::Runtime> {
    config
        .runtime
        .handlers
        .iter()
        .map(|(name, handler)| {
            let root = config.state.join("r").join(name);
            let runtime = match &handler.path {
                Some(path) if name != EMBEDDED_HANDLER => {
                    criox_runtime::Runtime::external(path, root)
                }
                _ => criox_runtime::Runtime::embedded(root),
            };
            (name.clone(), runtime)
        })
        .collect()
}

/// The answer for an RPC whose capability is not built yet: say which, never pretend.
fn unimplemented(rpc: &str, missing: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in criox yet: {missing}"))
}
