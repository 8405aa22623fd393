//! The CRI gRPC services. Handlers here are thin: they validate, call a manager, and hand
//! back its errors, which `grpc_errors` maps to gRPC codes. Every RPC passes `edge` (its
//! span; its own task when it changes state). Each CRI area has its own file of handler
//! functions; `runtime.rs` and `images.rs` hold the tonic trait impls that route to them.

mod containers;
pub mod deadline;
mod edge;
mod events;
mod grpc_errors;
mod images;
mod list_stream;
mod pod_metrics;
mod pod_resize;
mod pods;
mod relay;
mod runtime;
mod runtime_config;
mod stats;
mod status;
mod streaming;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use criox_proto::v1::image_service_server::ImageServiceServer;
use criox_proto::v1::runtime_service_server::RuntimeServiceServer;
use tonic::Status;

use crate::config::{Config, EMBEDDED_HANDLER};
use crate::container::manager::{ContainerError, ContainerImage, ContainerManager, ContainerPod};
use crate::container::spec::NodeFacts;
use crate::image::ImageManager;
use crate::metrics::Metrics;
use crate::network::NetworkManager;
use crate::sandbox::{PodState, SandboxManager};
use crate::stats::cpu_rate::CpuRate;

/// Shared state of both services; cheap to clone.
#[derive(Clone)]
pub struct CriServer {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    images: Arc<ImageManager>,
    streaming: Arc<crate::streaming::StreamingServer>,
    containers: Arc<ContainerManager>,
    cpu_rate: Arc<CpuRate>,
    pods: Arc<SandboxManager>,
    network: Arc<NetworkManager>,
}

/// Why the services cannot start. Boxed: the daemon's own error carries it, and the
/// managers' errors are large.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("image service: {0}")]
    Images(Box<crate::image::ImageError>),
    #[error(transparent)]
    Streaming(Box<crate::streaming::StreamingError>),
    #[error("cannot open the container store: {0}")]
    Containers(Box<ContainerError>),
    #[error("cannot open the pod sandboxes: {0}")]
    Pods(Box<crate::sandbox::SandboxError>),
}

impl From<crate::image::ImageError> for StartError {
    fn from(e: crate::image::ImageError) -> Self {
        StartError::Images(Box::new(e))
    }
}

impl From<crate::streaming::StreamingError> for StartError {
    fn from(e: crate::streaming::StreamingError) -> Self {
        StartError::Streaming(Box::new(e))
    }
}

impl From<ContainerError> for StartError {
    fn from(e: ContainerError) -> Self {
        StartError::Containers(Box::new(e))
    }
}

impl From<crate::sandbox::SandboxError> for StartError {
    fn from(e: crate::sandbox::SandboxError) -> Self {
        StartError::Pods(Box::new(e))
    }
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
            (!config.network.cni_config_template.as_os_str().is_empty())
                .then(|| config.network.cni_config_template.clone()),
        ));
        let pods = SandboxManager::open(
            &config.root,
            &config.state,
            network.clone(),
            config.runtime.handlers.keys().cloned().collect(),
            config.runtime.default_handler.clone(),
        )
        .await?;
        let pods = Arc::new(pods);
        let containers = ContainerManager::open(
            &config.root,
            &config.state,
            runtimes(&config),
            NodeFacts::detect(),
        )
        .await?;
        let streaming =
            Arc::new(streaming::start(&config, pods.clone(), containers.clone()).await?);
        count_oom_kills(&containers, metrics.clone());
        let (pod_source, container_source) = (pods.clone(), containers.clone());
        metrics.set_population_source(Box::new(move || crate::metrics::Population {
            pods: pod_source.counts(),
            containers: container_source.counts(),
            monitors: container_source.monitored(),
        }));
        Ok(CriServer {
            config,
            metrics,
            images,
            streaming,
            pods,
            containers,
            cpu_rate: Arc::new(CpuRate::default()),
            network,
        })
    }

    /// What the pod contributes to a new container; the pod must be ready.
    async fn container_pod(&self, pod_id: &str) -> Result<ContainerPod, Status> {
        let pod = self.pods.get(pod_id).await?;
        if pod.state != PodState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let log_directory =
            (!pod.spec.log_directory.is_empty()).then(|| PathBuf::from(&pod.spec.log_directory));
        Ok(ContainerPod {
            context: pods::container_context(&pod),
            log_directory,
        })
    }

    /// The image a new container is made from: its config and unpacked layers.
    fn container_image(&self, image: &str) -> Result<ContainerImage, Status> {
        let rootfs = self.images.rootfs(image)?;
        let record = self
            .images
            .find(image)
            .ok_or_else(|| Status::not_found(format!("image {image:?} not found")))?;
        // The image store keeps the config in the OCI format the spec builder reads.
        let config = serde_json::to_value(&rootfs.config)
            .and_then(serde_json::from_value)
            .map_err(|e| Status::internal(format!("image {image}: config: {e}")))?;
        Ok(ContainerImage {
            name: image.to_string(),
            id: rootfs.id,
            digest_ref: record.repo_digests.first().cloned().unwrap_or_default(),
            config,
            layers: rootfs.lower_dirs,
            volumes: Vec::new(),
        })
    }

    /// The pod's status for a container event.
    async fn pod_status_for_event(
        &self,
        pod_id: &str,
    ) -> Option<criox_proto::v1::PodSandboxStatus> {
        self.pods
            .get(pod_id)
            .await
            .ok()
            .map(|pod| pods::pod_status(&pod))
    }

    pub fn runtime_service(&self) -> RuntimeServiceServer<CriServer> {
        RuntimeServiceServer::new(self.clone())
    }

    pub fn image_service(&self) -> ImageServiceServer<CriServer> {
        ImageServiceServer::new(self.clone())
    }
}

/// Counts OOM kills from the containers' Stopped events, for the metrics.
fn count_oom_kills(containers: &ContainerManager, metrics: Arc<Metrics>) {
    let mut events = containers.events().subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) if event.oom_killed => metrics.oom_killed(),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
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
            let runtime = runtime.with_systemd_cgroup(
                config.runtime.cgroup_manager == crate::config::CgroupManager::Systemd,
            );
            (name.clone(), runtime)
        })
        .collect()
}

/// The answer for an RPC whose capability is not built yet: say which, never pretend.
fn unimplemented(rpc: &str, missing: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented in criox yet: {missing}"))
}
