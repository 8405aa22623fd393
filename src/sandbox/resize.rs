//! UpdatePodSandboxResources (in-place pod resize): the pod cgroup takes the new limits and
//! the pod's record remembers them, or, on any failure, the cgroup keeps its old limits.

use super::{Invalid, SandboxError, SandboxManager};
use crate::cgroup_driver::cgroupfs::{self, PodLimits};
use crate::stats::cgroup::Hierarchy;

impl SandboxManager {
    /// Sets the pod cgroup's limits to `wanted` (a zero field keeps the pod's current
    /// value) and records them. A memory limit below what the pod uses now is refused
    /// before anything changes: the kernel would reclaim or OOM-kill to meet it.
    pub async fn resize(&self, id_or_prefix: &str, wanted: PodLimits) -> Result<(), SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        let mut pod = self
            .store
            .get(&id)
            .ok_or_else(|| SandboxError::NotFound(id_or_prefix.to_string()))?;
        let old = pod.spec.limits.clone().unwrap_or_default();
        let keep = |new: i64, old: i64| if new > 0 { new } else { old };
        let limits = PodLimits {
            memory_limit: keep(wanted.memory_limit, old.memory_limit),
            cpu_shares: keep(wanted.cpu_shares, old.cpu_shares),
            cpu_quota: keep(wanted.cpu_quota, old.cpu_quota),
            cpu_period: keep(wanted.cpu_period, old.cpu_period),
        };
        let path = pod.cgroup.path.clone();
        if path.is_empty() {
            return Err(SandboxError::Setup {
                id,
                message: "the pod has no cgroup to resize".to_string(),
            });
        }
        if limits.memory_limit > 0
            && let Some(used) = working_set(&path)
            && used > limits.memory_limit as u64
        {
            return Err(SandboxError::Invalid(Invalid {
                field: "resources.memory_limit_in_bytes".to_string(),
                message: format!(
                    "{} is below the pod's current memory use of {used} bytes (cgroup {path})",
                    limits.memory_limit
                ),
            }));
        }
        let setup_err = |message: String| SandboxError::Setup {
            id: id.clone(),
            message,
        };
        if crate::cgroup_driver::is_systemd() {
            crate::cgroup_driver::resize_pod_slice(&path, &limits)
                .await
                .map_err(setup_err)?;
        } else {
            let target = limits.clone();
            tokio::task::spawn_blocking(move || cgroupfs::resize(&path, &target))
                .await
                .map_err(|e| setup_err(e.to_string()))?
                .map_err(|e| setup_err(e.to_string()))?;
        }
        pod.spec.limits = Some(limits);
        self.save(&pod, true)
    }
}

/// The pod's working set (usage minus inactive page cache), as the kubelet counts it.
fn working_set(path: &str) -> Option<u64> {
    Hierarchy::host()
        .read(std::path::Path::new(path))
        .ok()
        .map(|s| s.memory.working_set_bytes)
}
