//! What a pod is now: its record, and the counts metrics report.

use super::{NamespaceMode, Phase, Pod, PodState, SandboxError, SandboxManager, infra};

impl SandboxManager {
    /// A copy of the pod's record: paths, cgroup parent, IPs, state.
    pub async fn get(&self, id_or_prefix: &str) -> Result<Pod, SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        self.store
            .get(&id)
            .map(|pod| self.refreshed(pod))
            .ok_or_else(|| SandboxError::NotFound(id_or_prefix.to_string()))
    }

    /// The pod as it is now: a ready pod whose infra process has ended is not ready any
    /// more, as a pod whose pause process exits, and its record says so from then on.
    pub(super) fn refreshed(&self, mut pod: Pod) -> Pod {
        if pod.state == PodState::Ready && infra_ended(&pod) {
            tracing::warn!(pod = %pod.id, "the pod's infra process ended; the pod is not ready");
            pod.state = PodState::NotReady;
            if let Err(e) = self.store.update(&pod.id, |p| p.state = PodState::NotReady) {
                tracing::warn!(pod = %pod.id, "recording that the pod is not ready: {e}");
            }
        }
        pod
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

/// True when the pod's shared PID namespace has lost its PID 1: the kernel has killed
/// every process in it, and no container can join it any more.
pub(super) fn infra_ended(pod: &Pod) -> bool {
    pod.spec.pid_mode == NamespaceMode::Pod
        && pod.phase == Phase::Created
        && pod.infra_pid.is_some_and(|pid| !infra::is_running(pid))
}
