//! The configuration's file model: every table and key, with its default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: metadata store, image blobs, layers, container bundles.
    pub root: PathBuf,
    /// Volatile data: the socket, pinned namespaces, runtime state, monitor sockets.
    pub state: PathBuf,
    /// The gRPC socket; empty means `<state>/criox.sock`.
    pub listen: PathBuf,
    /// tracing filter: error, warn, info, debug, trace, or a full directive.
    pub log_level: String,
    pub image: ImageConfig,
    pub network: NetworkConfig,
    pub streaming: StreamingConfig,
    pub runtime: RuntimeConfig,
    pub metrics: MetricsConfig,
}

/// The `[image]` table: where pulls find registries, trust policy and certificates. An
/// image's own config blob is `image::OciImageConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    pub registries_config: PathBuf,
    pub signature_policy: PathBuf,
    /// Extra CA certificates per registry: `<dir>/<host[:port]>/*.crt`.
    pub certs_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub cni_config_dir: PathBuf,
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// Seconds a CNI plugin may run before it is killed and the call fails.
    pub cni_plugin_timeout: u64,
    /// A conflist template rendered into `cni_config_dir` when the kubelet sends the
    /// node's pod CIDR; empty for none.
    pub cni_config_template: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    pub address: String,
    pub port: u16,
    /// PEM certificate chain; with `tls_key_file`, the server speaks HTTPS.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            address: "127.0.0.1".to_string(),
            port: 9537,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupManager {
    Cgroupfs,
    Systemd,
}

impl CgroupManager {
    /// systemd owns the cgroup tree only where it runs as the init system.
    pub fn detect() -> Self {
        if Path::new("/run/systemd/system").is_dir() {
            CgroupManager::Systemd
        } else {
            CgroupManager::Cgroupfs
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CgroupManager::Cgroupfs => "cgroupfs",
            CgroupManager::Systemd => "systemd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub default_handler: String,
    pub cgroup_manager: CgroupManager,
    pub handlers: BTreeMap<String, HandlerConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlerConfig {
    /// A runc-compatible binary; absent for the embedded handler.
    pub path: Option<PathBuf>,
}
