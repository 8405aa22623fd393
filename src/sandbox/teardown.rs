//! Taking a pod apart: the one path that stop, remove, a failed run and recovery share.

use std::path::Path;

use super::{Pod, PodCgroup, PodPaths, SandboxManager, infra, namespaces, shm};
use crate::cgroup_driver::cgroupfs;

/// How far a teardown goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Depth {
    /// What a stopped pod must give up: its processes, its IP and its /dev/shm.
    Stop,
    /// Everything, so that the pod can be forgotten: also its namespace pins and cgroup.
    Everything,
}

impl SandboxManager {
    /// Releases what the pod holds down to `depth`, tolerating what is already gone, and
    /// clears from `pod` what was released; returns the failures.
    pub(super) async fn teardown(&self, pod: &mut Pod, depth: Depth) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(pid) = pod.infra_pid.take() {
            let _phase = crate::timeline::phase("infra_kill");
            tokio::task::spawn_blocking(move || infra::kill(pid))
                .await
                .ok();
        }
        let netns_alive = pod
            .paths
            .namespaces
            .network
            .as_ref()
            .is_some_and(|p| namespaces::is_pinned(p));
        let detach = self.network.detach(&pod.id, netns_alive);
        if let Err(e) = crate::timeline::timed("network", detach).await {
            errors.push(format!("network: {e}"));
        }
        // The slice and infra scope criox started go before the pod's directory (which
        // records the slice) does.
        if depth == Depth::Everything
            && crate::cgroup_driver::is_systemd()
            && let Err(e) = crate::cgroup_driver::pod_teardown(&pod.paths.dir, &pod.id).await
        {
            errors.push(format!("systemd: {e}"));
        }
        let paths = pod.paths.clone();
        let cgroup = pod.cgroup.clone();
        let _phase = crate::timeline::phase(match depth {
            Depth::Stop => "shm",
            Depth::Everything => "shm_namespaces_cgroup",
        });
        let (shm_released, local) = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            // A crash may have come between mounting /dev/shm and recording it.
            let leftover = depth == Depth::Everything && paths.shm.starts_with(&paths.dir);
            let mut shm_released = true;
            if (paths.shm_mounted || leftover)
                && let Err(e) = shm::unmount(&paths.shm)
            {
                shm_released = false;
                errors.push(format!("unmount {}: {e}", paths.shm.display()));
            }
            if depth == Depth::Everything {
                errors.extend(release_pins_and_cgroup(&paths, &cgroup));
            }
            (shm_released, errors)
        })
        .await
        .unwrap_or_else(|e| (false, vec![format!("teardown thread failed: {e}")]));
        if shm_released {
            pod.paths.shm_mounted = false;
        }
        errors.extend(local);
        errors
    }
}

/// The pinned namespaces and the cgroup; runs on a blocking thread.
fn release_pins_and_cgroup(paths: &PodPaths, cgroup: &PodCgroup) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(pin) = &paths.pid_namespace
        && let Err(e) = namespaces::unpin(pin)
    {
        errors.push(e.to_string());
    }
    if let Err(e) = namespaces::remove(&paths.namespaces) {
        errors.push(e.to_string());
    }
    // A crash may have happened between pinning and recording the pins.
    for kind in ["net", "ipc", "uts", "pid", "user"] {
        let _ = namespaces::unpin(&paths.dir.join("ns").join(kind));
    }
    if let Err(e) = cgroupfs::remove(cgroup) {
        errors.push(e.to_string());
    }
    errors
}

/// Unmounts anything left below `dir` and deletes it.
pub(super) fn cleanup_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = criox_runtime::mountinfo::current();
    for point in criox_runtime::mountinfo::points_below(&mounts, dir) {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("remove {}: {e}", dir.display()))
}
