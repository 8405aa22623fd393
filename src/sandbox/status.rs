//! What a pod is now: its record, and the counts metrics report.

use super::{Phase, Pod, PodState, SandboxError, SandboxManager};

impl SandboxManager {
    /// A copy of the pod's record: paths, cgroup parent, IPs, state.
    pub async fn get(&self, id_or_prefix: &str) -> Result<Pod, SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        self.store
            .get(&id)
            .ok_or_else(|| SandboxError::NotFound(id_or_prefix.to_string()))
    }

    /// How many made pods are ready and not ready, for metrics.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        let (mut ready, mut not_ready) = (0, 0);
        for pod in self.store.list() {
            match (pod.phase, pod.state) {
                (Phase::Created, PodState::Ready) => ready += 1,
                (Phase::Created, PodState::NotReady) => not_ready += 1,
                _ => {}
            }
        }
        vec![("ready", ready), ("notready", not_ready)]
    }
}
