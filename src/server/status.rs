//! Version and Status: the runtime describing itself and whether it can work.

use std::collections::HashMap;

use criox_proto::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse, VersionRequest, VersionResponse,
};
use tonic::Status;

use super::CriServer;
use crate::config::Config;

pub const RUNTIME_NAME: &str = "criox";
pub const RUNTIME_API_VERSION: &str = "v1";
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

pub async fn version(_server: &CriServer, _req: VersionRequest) -> Result<VersionResponse, Status> {
    Ok(VersionResponse {
        // The kubelet reads `version` as the CRI's own API version.
        version: "0.1.0".to_string(),
        runtime_name: RUNTIME_NAME.to_string(),
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        runtime_api_version: RUNTIME_API_VERSION.to_string(),
    })
}

pub async fn status(server: &CriServer, req: StatusRequest) -> Result<StatusResponse, Status> {
    let config = &server.config;
    let conditions = vec![runtime_condition(config), network_condition(server)];
    let mut info = HashMap::new();
    if req.verbose {
        let config_json = serde_json::to_string(config.as_ref())
            .map_err(|e| Status::internal(format!("cannot encode the configuration: {e}")))?;
        info.insert("config".to_string(), config_json);
        // As the RuntimeConfig RPC's linux.cgroup_driver, for a client that reads only this.
        info.insert(
            "cgroupDriver".to_string(),
            config.runtime.cgroup_manager.as_str().to_string(),
        );
        let cidrs: Vec<String> = server
            .network
            .pod_cidrs()
            .iter()
            .map(|c| c.to_string())
            .collect();
        info.insert(
            "podCIDRs".to_string(),
            serde_json::Value::from(cidrs).to_string(),
        );
    }
    Ok(StatusResponse {
        status: Some(RuntimeStatus { conditions }),
        info,
        runtime_handlers: runtime_handlers(server),
        // Strict and Merge are both applied, and ContainerStatus reports the user;
        // `Mount.mount_options` from the bind allowlist are applied on every handler.
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: true,
            mount_options: true,
            ..Default::default()
        }),
    })
}

/// Each configured handler and what it supports; the empty name stands for the default
/// handler, as pods that name none get it.
fn runtime_handlers(server: &CriServer) -> Vec<RuntimeHandler> {
    let runtime = &server.config.runtime;
    let handler = |name: &str, config_name: &str| RuntimeHandler {
        name: name.to_string(),
        features: Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: server.containers.supports_recursive_read_only(config_name),
            user_namespaces: crate::container::idmapped::user_namespaces_supported(),
        }),
    };
    std::iter::once(handler("", &runtime.default_handler))
        .chain(runtime.handlers.keys().map(|name| handler(name, name)))
        .collect()
}

fn condition(kind: &str, result: Result<(), (String, String)>) -> RuntimeCondition {
    match result {
        Ok(()) => RuntimeCondition {
            r#type: kind.to_string(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Err((reason, message)) => RuntimeCondition {
            r#type: kind.to_string(),
            status: false,
            reason,
            message,
        },
    }
}

/// The runtime can work when its state directory is there and writable.
fn runtime_condition(config: &Config) -> RuntimeCondition {
    let probe = config.state.join(".ready-probe");
    let result = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    condition(
        RUNTIME_READY,
        result.map_err(|e| {
            (
                "StateDirectoryUnwritable".to_string(),
                format!("cannot write in {}: {e}", config.state.display()),
            )
        }),
    )
}

/// The network is ready once the CNI directory holds a valid configuration whose
/// plugins exist; it is read on each call, so a configuration added later counts.
fn network_condition(server: &CriServer) -> RuntimeCondition {
    let result = server
        .pods
        .network_ready()
        .map_err(|message| ("NetworkPluginNotReady".to_string(), message));
    condition(NETWORK_READY, result)
}
