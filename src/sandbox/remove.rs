//! RemovePodSandbox: everything the pod holds, then its files and its record.

use super::teardown::{Depth, cleanup_dir};
use super::{PodState, SandboxError, SandboxManager};

impl SandboxManager {
    /// Removes the pod and everything it holds; unknown pods succeed.
    pub async fn remove(&self, id_or_prefix: &str) -> Result<(), SandboxError> {
        let Some((mut pod, _guard)) = self.lock_pod(id_or_prefix).await? else {
            return Ok(());
        };
        let errors = self.teardown(&mut pod, Depth::Everything).await;
        if let Some(message) = errors.into_iter().next() {
            // What is left is retried by the next removal; until then the pod is stopped.
            pod.state = PodState::NotReady;
            self.save(&pod, true)?;
            return Err(SandboxError::Setup {
                id: pod.id.clone(),
                message,
            });
        }
        let phase = crate::timeline::phase("pod_dir");
        cleanup_dir(&pod.paths.dir).map_err(|message| SandboxError::Setup {
            id: pod.id.clone(),
            message,
        })?;
        drop(phase);
        let _phase = crate::timeline::phase("record");
        self.store.remove(&pod.id)?;
        self.locks.forget(&pod.id);
        Ok(())
    }
}
