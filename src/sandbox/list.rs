//! ListPodSandbox: made pods, filtered and in creation order.

use std::collections::BTreeMap;

use super::{Phase, Pod, PodState, SandboxManager};

/// Filters of ListPodSandbox.
#[derive(Debug, Default)]
pub struct PodFilter {
    pub id: String,
    pub state: Option<PodState>,
    pub labels: BTreeMap<String, String>,
}

impl SandboxManager {
    pub async fn list(&self, filter: &PodFilter) -> Vec<Pod> {
        let pods: Vec<Pod> = if filter.id.is_empty() {
            self.store.list()
        } else {
            match self.resolve(&filter.id) {
                Ok(id) => self.store.get(&id).into_iter().collect(),
                Err(_) => Vec::new(),
            }
        };
        let mut pods: Vec<Pod> = pods.into_iter().map(|pod| self.refreshed(pod)).collect();
        pods.retain(|pod| {
            pod.phase == Phase::Created
                && filter.state.is_none_or(|s| s == pod.state)
                && filter
                    .labels
                    .iter()
                    .all(|(k, v)| pod.spec.labels.get(k) == Some(v))
        });
        pods.sort_by_key(|p| p.created_at);
        pods
    }
}
