//! StopPodSandbox: the pod keeps its record, namespaces and cgroup, and gives up its
//! processes, its IP and its /dev/shm.

use super::teardown::Depth;
use super::{Pod, PodState, SandboxError, SandboxManager};

impl SandboxManager {
    /// Stops the pod: its infra process, its network attachment (releasing the IP) and
    /// its /dev/shm. Unknown pods and pods already stopped succeed.
    pub async fn stop(&self, id_or_prefix: &str) -> Result<(), SandboxError> {
        let Some((mut pod, _guard)) = self.lock_pod(id_or_prefix).await? else {
            return Ok(());
        };
        self.stop_locked(&mut pod).await
    }

    /// Stops a pod whose lock the caller holds; the record says not ready afterwards.
    pub(super) async fn stop_locked(&self, pod: &mut Pod) -> Result<(), SandboxError> {
        let changed = pod.state != PodState::NotReady || pod.infra_pid.is_some();
        let failures = self.teardown(pod, Depth::Stop).await;
        if let Some(message) = failures.into_iter().next() {
            return Err(SandboxError::Setup {
                id: pod.id.clone(),
                message,
            });
        }
        if changed {
            pod.state = PodState::NotReady;
            let _phase = crate::timeline::phase("record");
            // Not flushed: a power loss ends the pod's processes and network as well, and
            // the start-up after it finds the pod not ready whatever its record says.
            self.save(pod, false)?;
        }
        Ok(())
    }
}
