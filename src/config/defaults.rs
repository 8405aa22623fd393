//! What a key is when no file sets it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::EMBEDDED_HANDLER;
use super::model::*;

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/criox"),
            state: PathBuf::from("/run/criox"),
            listen: PathBuf::new(),
            log_level: "info".to_string(),
            image: ImageConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
            runtime: RuntimeConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            registries_config: PathBuf::from("/etc/containers/registries.conf"),
            signature_policy: PathBuf::from("/etc/containers/policy.json"),
            certs_dir: PathBuf::from("/etc/containers/certs.d"),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            cni_config_dir: PathBuf::from("/etc/cni/net.d"),
            cni_plugin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cni_plugin_timeout: 60,
            cni_config_template: PathBuf::new(),
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".to_string(),
            port: 0,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(EMBEDDED_HANDLER.to_string(), HandlerConfig::default());
        RuntimeConfig {
            default_handler: EMBEDDED_HANDLER.to_string(),
            cgroup_manager: CgroupManager::detect(),
            handlers,
        }
    }
}
