//! RunPodSandbox: namespaces, files, /dev/shm, cgroup, infra process and network, each
//! recorded as it is made so that a failure or a crash can take the pod apart again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use criox_formats::cri_fields::pod as pod_fields;

use super::teardown::{Depth, cleanup_dir};
use super::{
    DEFAULT_CGROUP_PARENT, EGRESS_BANDWIDTH, INGRESS_BANDWIDTH, Invalid, NamespaceMode, Phase, Pod,
    PodCgroup, PodPaths, PodSpec, PodState, SHM_SIZE_ANNOTATION, SandboxError, SandboxManager,
    files, infra, namespaces, shm, validate,
};
use crate::cgroup_driver::cgroupfs;
use crate::ids::{new_id, now_ns};
use crate::network::{Bandwidth, PodAttachment};
use crate::store::StoreError;

impl SandboxManager {
    pub async fn run(&self, mut spec: PodSpec) -> Result<String, SandboxError> {
        let phase = crate::timeline::phase("validate");
        validate::spec(&spec)?;
        if spec.runtime_handler.is_empty() {
            spec.runtime_handler = self.default_handler.clone();
        }
        if !self.handlers.contains(&spec.runtime_handler) {
            return Err(SandboxError::Invalid(Invalid {
                field: "runtime_handler".to_string(),
                message: format!(
                    "unknown runtime handler {:?}; configured: {}",
                    spec.runtime_handler,
                    self.handlers.join(", ")
                ),
            }));
        }
        let shm_size = match spec.annotations.get(SHM_SIZE_ANNOTATION) {
            Some(text) => pod_fields::shm_size(text).map_err(Invalid::from)?,
            None => shm::DEFAULT_SIZE,
        };
        let bandwidth = bandwidth(&spec.annotations)?;
        drop(phase);
        let id = new_id();
        let full_name = spec.full_name();
        let dir = self.state_dir.join(&id);
        let hostname = if spec.network_mode == NamespaceMode::Node {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if spec.hostname.is_empty() {
            default_hostname(&spec.name)
        } else {
            spec.hostname.clone()
        };
        let mut pod = Pod {
            id: id.clone(),
            hostname,
            state: PodState::NotReady,
            phase: Phase::Creating,
            created_at: now_ns(),
            ips: Vec::new(),
            paths: PodPaths {
                hostname: dir.join("hostname"),
                hosts: dir.join("hosts"),
                resolv_conf: dir.join("resolv.conf"),
                shm: if spec.ipc_mode == NamespaceMode::Node {
                    PathBuf::from("/dev/shm")
                } else {
                    dir.join("shm")
                },
                dir,
                ..PodPaths::default()
            },
            cgroup: PodCgroup::default(),
            infra_pid: None,
            full_name,
            spec,
        };
        // The record reserves the name; a live pod's holder is named in the refusal.
        let phase = crate::timeline::phase("record");
        self.store.insert(pod.clone()).map_err(|e| match e {
            StoreError::NameTaken { name, holder, .. } => SandboxError::NameTaken { name, holder },
            other => SandboxError::Store(other),
        })?;
        drop(phase);
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        match self.build(&mut pod, shm_size, bandwidth.as_ref()).await {
            Ok(()) => {
                pod.phase = Phase::Created;
                pod.state = PodState::Ready;
                let _phase = crate::timeline::phase("record_ready");
                // The CNI cache entry is flushed on another thread while this one flushes
                // the record: side by side, the disk syncs cost about one.
                let network = std::sync::Arc::clone(&self.network);
                let flush_id = id.clone();
                let flush = tokio::task::spawn_blocking(move || network.flush(&flush_id));
                let saved = self.save(&pod, true);
                let flushed = match flush.await {
                    Ok(result) => result.map_err(|source| SandboxError::Network {
                        id: id.clone(),
                        source,
                    }),
                    Err(e) => Err(SandboxError::Setup {
                        id: id.clone(),
                        message: format!("flush thread failed: {e}"),
                    }),
                };
                if let Err(e) = saved.and(flushed) {
                    self.abandon(&mut pod).await;
                    return Err(e);
                }
                Ok(id)
            }
            Err(e) => {
                self.abandon(&mut pod).await;
                Err(e)
            }
        }
    }

    /// Undoes a failed run completely: resources, files, record, name.
    async fn abandon(&self, pod: &mut Pod) {
        self.teardown(pod, Depth::Everything).await;
        if let Err(e) = cleanup_dir(&pod.paths.dir) {
            tracing::warn!(pod = %pod.id, "cleaning up a failed pod: {e}");
        }
        let _ = self.store.remove(&pod.id);
        self.locks.forget(&pod.id);
    }

    async fn build(
        &self,
        pod: &mut Pod,
        shm_size: u64,
        bandwidth: Option<&Bandwidth>,
    ) -> Result<(), SandboxError> {
        let id = pod.id.clone();
        let setup_err = |message: String| SandboxError::Setup {
            id: id.clone(),
            message,
        };
        let started = std::time::Instant::now();
        let spec = pod.spec.clone();
        let dir = pod.paths.dir.clone();
        let hostname = pod.hostname.clone();
        let wanted = namespaces::Wanted {
            network: spec.network_mode != NamespaceMode::Node,
            ipc: spec.ipc_mode != NamespaceMode::Node,
            uts: spec.network_mode != NamespaceMode::Node,
        };
        // Namespaces, files, /dev/shm and the cgroup are blocking kernel work.
        let (pinned, result) = {
            let paths = pod.paths.clone();
            let rpc = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _rpc = rpc.enter();
                let mut paths = paths;
                let result = make_local(&mut paths, &dir, wanted, &spec, &hostname, shm_size);
                (paths, result)
            })
            .await
            .map_err(|e| setup_err(format!("setup thread failed: {e}")))?
        };
        pod.paths = pinned;
        result.map_err(&setup_err)?;
        tracing::debug!(pod = %pod.id, elapsed = ?started.elapsed(), "namespaces, files and /dev/shm ready");

        // The cgroup and the infra process are made while the CNI plugins run: ADD needs
        // only the pinned network namespace, and neither side touches what the other makes.
        // The network goes first in the join: its plugin is started before the cgroup's
        // synchronous work holds this task, instead of after it.
        let netns = pod.paths.namespaces.network.clone();
        let spec = pod.spec.clone();
        let network = async {
            let Some(netns) = netns else {
                return Ok(Vec::new());
            };
            let attachment = PodAttachment {
                id: &id,
                name: &spec.name,
                namespace: &spec.namespace,
                uid: &spec.uid,
                netns: &netns,
                port_mappings: &spec.port_mappings,
                bandwidth,
                dns: spec.dns.as_ref(),
            };
            crate::timeline::timed("network", self.network.attach(&attachment))
                .await
                .map_err(|source| SandboxError::Network {
                    id: id.clone(),
                    source,
                })
        };
        let (ips, local) = tokio::join!(network, self.cgroup_and_infra(pod));
        // On either failure the caller's teardown releases what the other side made.
        local?;
        pod.ips = ips?;
        tracing::debug!(pod = %pod.id, elapsed = ?started.elapsed(), "cgroup, infra process and network ready");

        let _phase = crate::timeline::phase("hosts_file");
        files::write_hosts(
            &pod.paths.hosts,
            pod.spec.network_mode == NamespaceMode::Node,
            &pod.hostname,
            &pod.ips,
        )
        .map_err(|e| setup_err(format!("write {}: {e}", pod.paths.hosts.display())))?;
        Ok(())
    }

    /// The pod's cgroup and, with a shared PID namespace, its infra process.
    async fn cgroup_and_infra(&self, pod: &mut Pod) -> Result<(), SandboxError> {
        let id = pod.id.clone();
        let setup_err = |message: String| SandboxError::Setup {
            id: id.clone(),
            message,
        };
        let parent = if pod.spec.cgroup_parent.is_empty() {
            format!("{DEFAULT_CGROUP_PARENT}/{}", pod.id)
        } else {
            pod.spec.cgroup_parent.clone()
        };
        let systemd = crate::cgroup_driver::is_systemd();
        let phase = crate::timeline::phase("cgroup");
        if systemd {
            // systemd owns the tree: the pod's cgroup is its slice, started if nobody had.
            let limits = pod
                .spec
                .limits
                .as_ref()
                .map(|l| (l.memory_limit, l.cpu_shares, l.cpu_quota, l.cpu_period));
            pod.cgroup.path = crate::cgroup_driver::pod_slice(
                &pod.paths.dir,
                &pod.id,
                &pod.spec.cgroup_parent,
                limits,
            )
            .await
            .map_err(&setup_err)?;
            self.save(pod, false)?;
        } else {
            // Recorded before any directory is made, so a crash leaves a trail to clean.
            pod.cgroup.path = parent.clone();
            self.save(pod, false)?;
            pod.cgroup = cgroupfs::create(&parent, pod.spec.limits.as_ref())
                .map_err(|e| setup_err(e.to_string()))?;
            self.save(pod, false)?;
        }

        drop(phase);
        if pod.spec.pid_mode == NamespaceMode::Pod {
            let _phase = crate::timeline::phase("infra");
            // The user namespace first: the others belong to it.
            let joins: Vec<(&str, PathBuf)> = [
                ("user", pod.paths.namespaces.user.clone()),
                ("net", pod.paths.namespaces.network.clone()),
                ("ipc", pod.paths.namespaces.ipc.clone()),
                ("uts", pod.paths.namespaces.uts.clone()),
            ]
            .into_iter()
            .filter_map(|(k, p)| p.map(|p| (k, p)))
            .collect();
            let pod_dir = pod.paths.dir.clone();
            let cgroup = pod.cgroup.clone();
            let pid = tokio::task::spawn_blocking(move || {
                let refs: Vec<(&str, &Path)> =
                    joins.iter().map(|(k, p)| (*k, p.as_path())).collect();
                let procs = if systemd {
                    Vec::new()
                } else {
                    cgroupfs::infra_procs(&cgroup).map_err(|e| e.to_string())?
                };
                infra::spawn(&refs, &pod_dir, &procs).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| setup_err(e.to_string()))?
            .map_err(&setup_err)?;
            pod.infra_pid = Some(pid);
            self.save(pod, false)?;
            if systemd {
                crate::cgroup_driver::pod_infra_scope(&pod.id, &pod.cgroup.path, pid as u32)
                    .await
                    .map_err(&setup_err)?;
            }
            let pin = pod.paths.dir.join("ns/pid");
            namespaces::pin_pid_namespace(pid, &pin).map_err(&setup_err)?;
            pod.paths.pid_namespace = Some(pin);
        }
        Ok(())
    }
}

/// Namespaces, hostname/hosts/resolv.conf files and /dev/shm; runs on a blocking thread.
fn make_local(
    paths: &mut PodPaths,
    dir: &Path,
    wanted: namespaces::Wanted,
    spec: &PodSpec,
    hostname: &str,
    shm_size: u64,
) -> Result<(), String> {
    let phase = crate::timeline::phase("namespaces");
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if let Some(u) = &spec.userns {
        // The runtime opens the pinned namespaces from inside the pod's user namespace.
        for owned in [dir.to_path_buf(), dir.join("ns")] {
            crate::storage::idmap::make_owned_dir(&owned, u.uids.host_id, u.gids.host_id)
                .map_err(|e| format!("create {}: {e}", owned.display()))?;
        }
    }
    paths.namespaces = namespaces::create(
        &dir.join("ns"),
        wanted,
        &namespaces::Setup {
            hostname,
            sysctls: &spec.sysctls,
            userns: spec.userns.as_ref(),
        },
    )
    .map_err(|e| e.to_string())?;
    drop(phase);
    let phase = crate::timeline::phase("files");
    files::write_hostname(&paths.hostname, hostname)
        .map_err(|e| format!("write {}: {e}", paths.hostname.display()))?;
    files::write_resolv_conf(&paths.resolv_conf, spec.dns.as_ref())
        .map_err(|e| format!("write {}: {e}", paths.resolv_conf.display()))?;
    drop(phase);
    let _phase = crate::timeline::phase("shm");
    if spec.ipc_mode != NamespaceMode::Node {
        shm::mount(&paths.shm, shm_size)
            .map_err(|e| format!("mount /dev/shm at {}: {e}", paths.shm.display()))?;
        paths.shm_mounted = true;
    }
    Ok(())
}

fn bandwidth(annotations: &BTreeMap<String, String>) -> Result<Option<Bandwidth>, Invalid> {
    let parse = |key: &str| -> Result<u64, Invalid> {
        match annotations.get(key) {
            None => Ok(0),
            Some(text) => Ok(pod_fields::bandwidth(key, text)?),
        }
    };
    let ingress = parse(INGRESS_BANDWIDTH)?;
    let egress = parse(EGRESS_BANDWIDTH)?;
    if ingress == 0 && egress == 0 {
        return Ok(None);
    }
    // The bandwidth plugin takes bits per second and bursts in bits; Kubernetes uses
    // an effectively unlimited burst.
    let burst = |rate: u64| if rate > 0 { u64::from(u32::MAX) } else { 0 };
    Ok(Some(Bandwidth {
        ingress_rate: ingress,
        ingress_burst: burst(ingress),
        egress_rate: egress,
        egress_burst: burst(egress),
    }))
}

/// A hostname made from the pod name when the kubelet gives none.
fn default_hostname(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "localhost".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_annotations_become_bits_per_second() {
        let mut annotations = BTreeMap::new();
        assert_eq!(bandwidth(&annotations).unwrap(), None);
        annotations.insert(INGRESS_BANDWIDTH.to_string(), "10M".to_string());
        let bw = bandwidth(&annotations).unwrap().unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (10_000_000, 0));
        annotations.insert(EGRESS_BANDWIDTH.to_string(), "1.5Mi".to_string());
        let bw = bandwidth(&annotations).unwrap().unwrap();
        assert_eq!(bw.egress_rate, 3 << 19);
        annotations.insert(EGRESS_BANDWIDTH.to_string(), "fast".to_string());
        assert!(bandwidth(&annotations).is_err());
    }

    #[test]
    fn hostnames_are_made_from_pod_names() {
        assert_eq!(default_hostname("web_0.x"), "web-0-x");
    }
}
