//! UpdatePodSandboxResources (in-place pod resize): the pod cgroup takes the new limits and
//! the pod's record remembers them, or, on any failure, the cgroup keeps its old limits.

use std::path::PathBuf;

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
            tokio::task::spawn_blocking(move || write_all(&path, &target))
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

/// Writes `limits` in every hierarchy of the pod cgroup; on a failure, puts back what each
/// file written so far held, so the pod keeps its old limits.
fn write_all(path: &str, limits: &PodLimits) -> Result<(), cgroupfs::CgroupError> {
    let layout = cgroupfs::detect();
    let relative = path.trim_start_matches('/');
    let mut plan: Vec<(PathBuf, &'static str, String)> = Vec::new();
    for hierarchy in cgroupfs::hierarchies(layout) {
        let dir = hierarchy.join(relative);
        for (file, value) in cgroupfs::limit_files(&hierarchy, layout, limits) {
            plan.push((dir.clone(), file, value));
        }
    }
    // Memory first: a CPU value the kernel refuses then shows that the undo works.
    plan.sort_by_key(|(_, file, _)| !file.starts_with("memory"));
    let mut undo: Vec<(PathBuf, String)> = Vec::new();
    for (dir, file, value) in plan {
        let target = dir.join(file);
        // Every limit file reads back in a form it accepts ("max 100000", "-1", a number).
        let before = std::fs::read_to_string(&target).map(|s| s.trim().to_string());
        let written = before
            .and_then(|before| std::fs::write(&target, &value).map(|()| before))
            .map_err(|source| cgroupfs::CgroupError::Limit {
                path: dir.clone(),
                file,
                source,
            });
        match written {
            Ok(before) => undo.push((target, before)),
            Err(e) => {
                for (target, before) in undo.iter().rev() {
                    let _ = std::fs::write(target, before);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup_driver::cgroupfs::Layout;

    #[test]
    fn limits_are_written_and_a_failure_puts_the_old_ones_back() {
        crate::test_support::assert_root();
        let name = format!("/criox-resize-{}/pod", std::process::id());
        let start = PodLimits {
            memory_limit: 64 << 20,
            cpu_shares: 512,
            ..PodLimits::default()
        };
        let pod = cgroupfs::create(&name, Some(&start)).unwrap();
        struct Remove(cgroupfs::PodCgroup);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = cgroupfs::remove(&self.0);
            }
        }
        let pod = Remove(pod);
        let layout = cgroupfs::detect();
        let memory_file = cgroupfs::hierarchies(layout).into_iter().find_map(|h| {
            let file = if layout == Layout::Unified {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            let f = h.join(name.trim_start_matches('/')).join(file);
            (layout == Layout::Unified || h.ends_with("memory")).then_some(f)
        });
        let memory_file = memory_file.expect("a memory hierarchy");
        let read = || {
            std::fs::read_to_string(&memory_file)
                .unwrap()
                .trim()
                .to_string()
        };

        let bigger = PodLimits {
            memory_limit: 128 << 20,
            ..start.clone()
        };
        write_all(&pod.0.path, &bigger).unwrap();
        assert_eq!(read(), (128u64 << 20).to_string());

        // A CPU share the kernel refuses comes after the memory limit: the memory limit
        // must be back at 128 MiB afterwards.
        let refused = PodLimits {
            memory_limit: 96 << 20,
            cpu_shares: 512,
            cpu_quota: 1,
            cpu_period: 100_000,
        };
        assert!(write_all(&pod.0.path, &refused).is_err());
        assert_eq!(read(), (128u64 << 20).to_string());
    }
}
