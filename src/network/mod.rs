//! The CNI runtime side: which network configuration applies, attaching a pod's pinned
//! network namespace to it (ADD), checking (CHECK) and detaching (DEL).
//!
//! Each successful ADD is cached under the root with the exact configuration and
//! arguments it used, so a DEL after a daemon restart, or after the configuration file
//! changed, releases what the ADD took.

mod cache;
mod checked;
mod conf;
mod exec;
mod pod_cidr;
mod result;
pub mod template;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use cache::CachedAttachment;
pub use conf::{ConfError, NetworkList};
pub use exec::ExecError;
pub use pod_cidr::PodCidrOutcome;

/// The interface name inside the pod, as Kubernetes expects.
pub const POD_IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network is not ready: {0}")]
    NotReady(#[from] ConfError),
    #[error("{0}")]
    Plugin(#[from] ExecError),
    #[error("CNI configuration template {path}: {message}")]
    Template { path: PathBuf, message: String },
    #[error("cannot {action} network cache {path}: {source}")]
    Cache {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What the CNI plugins are told about one pod.
#[derive(Debug, Clone)]
pub struct PodAttachment<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub netns: &'a Path,
    pub port_mappings: &'a [PortMapping],
    pub bandwidth: Option<&'a Bandwidth>,
    pub dns: Option<&'a Dns>,
}

pub struct NetworkManager {
    config_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout: Duration,
    /// A conflist template rendered into `config_dir` once the pod CIDR is known.
    template: Option<PathBuf>,
    /// The pod CIDRs the kubelet last handed over.
    pod_cidrs: std::sync::Mutex<Vec<template::Cidr>>,
    /// The last CHECK outcome of each attached pod, for verbose status.
    checks: checked::Checks,
}

impl NetworkManager {
    pub fn new(
        config_dir: &Path,
        plugin_dirs: &[PathBuf],
        cache_dir: &Path,
        timeout: Duration,
        template: Option<PathBuf>,
    ) -> NetworkManager {
        NetworkManager {
            config_dir: config_dir.to_path_buf(),
            plugin_dirs: plugin_dirs.to_vec(),
            cache_dir: cache_dir.to_path_buf(),
            timeout,
            template,
            pod_cidrs: std::sync::Mutex::new(Vec::new()),
            checks: checked::Checks::default(),
        }
    }

    /// The configuration a pod would get now. Read afresh each time, so a file added,
    /// changed or removed takes effect without a restart.
    pub fn current(&self) -> Result<NetworkList, ConfError> {
        conf::load_dir(&self.config_dir)
    }

    /// Ok when pods can be attached: a valid configuration whose plugins all exist.
    pub fn ready(&self) -> Result<(), String> {
        let list = self.current().map_err(|e| e.to_string())?;
        for plugin in &list.plugins {
            exec::find_plugin(NetworkList::plugin_type(plugin), &self.plugin_dirs)
                .map_err(|e| format!("{e} (configuration {})", list.source.display()))?;
        }
        Ok(())
    }

    /// Runs ADD through the whole list and returns the pod's IPs. On failure the plugins
    /// that ran are undone with DEL, so nothing is left allocated. The cached result is
    /// not flushed to disk: the caller does that with [`NetworkManager::flush`] before it
    /// answers, beside its own record's flush, so that the two disk flushes overlap.
    pub async fn attach(&self, pod: &PodAttachment<'_>) -> Result<Vec<IpAddr>, NetworkError> {
        let phase = crate::timeline::phase("cni_conf_load");
        let list = self.current()?;
        drop(phase);
        let cached = CachedAttachment {
            list,
            cni_args: cni_args(pod),
            runtime_config: runtime_config(pod),
            ifname: POD_IFNAME.to_string(),
            netns: pod.netns.to_path_buf(),
            result: Value::Null,
        };
        // Written before ADD: a crash in the middle still leaves what DEL needs.
        let phase = crate::timeline::phase("cni_cache_write");
        cache::write(&self.cache_dir, pod.id, &cached, false)?;
        drop(phase);
        match self.add_all(pod.id, &cached).await {
            Ok(result) => {
                let ips = result::pod_ips(&result, POD_IFNAME);
                let cached = CachedAttachment { result, ..cached };
                let _phase = crate::timeline::phase("cni_cache_write_result");
                cache::write(&self.cache_dir, pod.id, &cached, false)?;
                self.checks.record(pod.id, Ok(()));
                Ok(ips)
            }
            Err(e) => {
                if let Err(del) = self.del_all(pod.id, &cached, true).await {
                    tracing::warn!(pod = pod.id, "undoing a failed CNI ADD: {del}");
                }
                let _ = cache::remove(&self.cache_dir, pod.id);
                Err(e)
            }
        }
    }

    /// Flushes the pod's cached ADD to disk: the IPAM allocations it releases outlive a
    /// power loss.
    pub fn flush(&self, id: &str) -> Result<(), NetworkError> {
        cache::flush(&self.cache_dir, id)
    }

    /// DEL with the configuration the ADD used; without a cached ADD there is nothing to
    /// release. `netns_alive` false passes an empty CNI_NETNS, as the spec allows.
    pub async fn detach(&self, id: &str, netns_alive: bool) -> Result<(), NetworkError> {
        self.checks.forget(id);
        let Some(cached) = cache::read(&self.cache_dir, id)? else {
            return Ok(());
        };
        self.del_all(id, &cached, netns_alive).await?;
        cache::remove(&self.cache_dir, id)
    }

    /// CHECK with the cached result; pods attached before a restart can be verified.
    pub async fn check(&self, id: &str) -> Result<(), NetworkError> {
        let Some(cached) = cache::read(&self.cache_dir, id)? else {
            return Ok(());
        };
        let netns = cached.netns.to_string_lossy().into_owned();
        let inv = self.invocation(id, &netns, &cached);
        for plugin in &cached.list.plugins {
            let config = plugin_config(&cached, plugin, Some(&cached.result));
            exec::run(
                exec::Command::Check,
                NetworkList::plugin_type(plugin),
                &config,
                &inv,
            )
            .await?;
        }
        Ok(())
    }

    /// Cached attachments of pods, for finding those that no longer exist.
    pub fn cached_ids(&self) -> Vec<String> {
        cache::ids(&self.cache_dir)
    }

    fn invocation<'a>(
        &'a self,
        id: &'a str,
        netns: &'a str,
        cached: &'a CachedAttachment,
    ) -> exec::Invocation<'a> {
        exec::Invocation {
            container_id: id,
            netns,
            ifname: &cached.ifname,
            cni_args: &cached.cni_args,
            plugin_dirs: &self.plugin_dirs,
            timeout: self.timeout,
        }
    }

    async fn add_all(&self, id: &str, cached: &CachedAttachment) -> Result<Value, NetworkError> {
        let netns = cached.netns.to_string_lossy().into_owned();
        let inv = self.invocation(id, &netns, cached);
        let mut prev: Option<Value> = None;
        for plugin in &cached.list.plugins {
            let config = plugin_config(cached, plugin, prev.as_ref());
            let result = exec::run(
                exec::Command::Add,
                NetworkList::plugin_type(plugin),
                &config,
                &inv,
            )
            .await?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL in reverse order; every plugin is called even when one fails, and the first
    /// failure is reported.
    async fn del_all(
        &self,
        id: &str,
        cached: &CachedAttachment,
        netns_alive: bool,
    ) -> Result<(), NetworkError> {
        let netns = if netns_alive {
            cached.netns.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let inv = self.invocation(id, &netns, cached);
        let prev = (!cached.result.is_null()).then_some(&cached.result);
        let mut first_error = None;
        for plugin in cached.list.plugins.iter().rev() {
            let config = plugin_config(cached, plugin, prev);
            if let Err(e) = exec::run(
                exec::Command::Del,
                NetworkList::plugin_type(plugin),
                &config,
                &inv,
            )
            .await
            {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn cni_args(pod: &PodAttachment<'_>) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.id, pod.uid
    )
}

/// Capability arguments of the pod; each plugin receives those it declares.
fn runtime_config(pod: &PodAttachment<'_>) -> Value {
    let mut rc = Map::new();
    let ports: Vec<Value> = pod
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let mut m = serde_json::json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.to_lowercase(),
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        rc.insert("portMappings".to_string(), Value::Array(ports));
    }
    if let Some(bw) = pod.bandwidth {
        rc.insert(
            "bandwidth".to_string(),
            serde_json::json!({
                "ingressRate": bw.ingress_rate, "ingressBurst": bw.ingress_burst,
                "egressRate": bw.egress_rate, "egressBurst": bw.egress_burst,
            }),
        );
    }
    if let Some(dns) = pod.dns {
        rc.insert(
            "dns".to_string(),
            serde_json::json!({
                "servers": dns.servers, "searches": dns.searches, "options": dns.options,
            }),
        );
    }
    Value::Object(rc)
}

/// One plugin's stdin: its own configuration plus the list's name and version, the
/// previous result, and the runtime config filtered by its capabilities.
fn plugin_config(cached: &CachedAttachment, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut config = plugin.as_object().cloned().unwrap_or_default();
    config.insert("name".to_string(), Value::String(cached.list.name.clone()));
    config.insert(
        "cniVersion".to_string(),
        Value::String(cached.list.cni_version.clone()),
    );
    if let Some(prev) = prev {
        config.insert("prevResult".to_string(), prev.clone());
    }
    let mut rc = Map::new();
    if let (Some(caps), Some(all)) = (
        plugin.get("capabilities").and_then(Value::as_object),
        cached.runtime_config.as_object(),
    ) {
        for (key, value) in all {
            if caps.get(key).and_then(Value::as_bool) == Some(true) {
                rc.insert(key.clone(), value.clone());
            }
        }
    }
    config.remove("capabilities");
    if !rc.is_empty() {
        config.insert("runtimeConfig".to_string(), Value::Object(rc));
    }
    Value::Object(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_only_the_capabilities_they_declare() {
        let ports = [PortMapping {
            protocol: "TCP".into(),
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        }];
        let dns = Dns {
            servers: vec!["10.0.0.10".into()],
            ..Dns::default()
        };
        let pod = PodAttachment {
            id: "p1",
            name: "web",
            namespace: "default",
            uid: "u1",
            netns: Path::new("/run/x/net"),
            port_mappings: &ports,
            bandwidth: None,
            dns: Some(&dns),
        };
        let cached = CachedAttachment {
            list: NetworkList {
                name: "net1".into(),
                cni_version: "1.0.0".into(),
                plugins: vec![],
                source: PathBuf::new(),
            },
            cni_args: cni_args(&pod),
            runtime_config: runtime_config(&pod),
            ifname: POD_IFNAME.into(),
            netns: pod.netns.to_path_buf(),
            result: Value::Null,
        };
        assert!(cached.cni_args.contains("K8S_POD_INFRA_CONTAINER_ID=p1"));
        let portmap = serde_json::json!({"type":"portmap","capabilities":{"portMappings":true}});
        let c = plugin_config(&cached, &portmap, Some(&serde_json::json!({"ips":[]})));
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["protocol"], "tcp");
        assert!(c["runtimeConfig"].get("dns").is_none());
        assert!(c.get("capabilities").is_none());
        assert_eq!(
            (c["name"].as_str(), c["cniVersion"].as_str()),
            (Some("net1"), Some("1.0.0"))
        );
        assert!(c.get("prevResult").is_some());
        let bridge = serde_json::json!({"type":"bridge"});
        let c = plugin_config(&cached, &bridge, None);
        assert!(c.get("runtimeConfig").is_none() && c.get("prevResult").is_none());
    }
}
