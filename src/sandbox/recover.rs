//! Opening the pod store at daemon start: pods a crash left half-made are taken apart,
//! pods whose namespaces vanished (a reboot) become not ready, and state that belongs to
//! no record is released.

use std::path::Path;
use std::sync::Arc;

use super::teardown::{Depth, cleanup_dir};
use super::{Phase, Pod, PodState, SandboxError, SandboxManager};
use super::{namespaces, status};
use crate::ids::Locks;
use crate::network::NetworkManager;
use crate::store::Store;

impl SandboxManager {
    /// Opens the store, takes apart pods left half-made by a crash, and marks pods whose
    /// namespaces vanished (a reboot) as not ready.
    pub async fn open(
        root: &Path,
        state: &Path,
        network: Arc<NetworkManager>,
        handlers: Vec<String>,
        default_handler: String,
    ) -> Result<SandboxManager, SandboxError> {
        let (store, unreadable) = Store::<Pod>::open(&root.join("pods"), "pod sandbox")?;
        for bad in unreadable {
            tracing::warn!(path = %bad.path.display(), reason = %bad.reason, "discarding an unreadable pod record");
            let _ = std::fs::remove_file(bad.path);
        }
        let manager = SandboxManager {
            state_dir: state.join("pods"),
            store,
            network,
            handlers,
            default_handler,
            locks: Locks::default(),
        };
        let mut known = Vec::new();
        for mut pod in manager.store.list() {
            if pod.phase == Phase::Creating {
                tracing::warn!(pod = %pod.id, "removing a pod whose creation was interrupted");
                manager.teardown(&mut pod, Depth::Everything).await;
                let _ = cleanup_dir(&pod.paths.dir);
                manager.store.remove(&pod.id)?;
                continue;
            }
            let netns_gone = pod
                .paths
                .namespaces
                .network
                .as_ref()
                .is_some_and(|p| !namespaces::is_pinned(p));
            if pod.state == PodState::Ready && (netns_gone || status::infra_ended(&pod)) {
                manager
                    .store
                    .update(&pod.id, |p| p.state = PodState::NotReady)?;
            }
            known.push(pod.id.clone());
        }
        // Network attachments and state directories that belong to no record.
        for id in manager.network.cached_ids() {
            if !known.contains(&id) {
                let _ = manager.network.detach(&id, false).await;
            }
        }
        if let Ok(entries) = std::fs::read_dir(&manager.state_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    let _ = cleanup_dir(&entry.path());
                }
            }
        }
        Ok(manager)
    }
}
