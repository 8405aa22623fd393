//! RemoveContainer and the removal of a pod's containers: the runtime's container, the
//! monitor state, the mounts and the bundle all go.

use std::sync::Arc;
use std::time::Duration;

use criox_runtime::RuntimeError;

use super::events::EventKind;
use super::image_volume;
use super::manager::{ContainerError, ContainerManager};
use crate::storage::rootfs::Rootfs;
use crate::store::StoreError;

impl ContainerManager {
    /// RemoveContainer: stops it if needed and removes every trace. Unknown ids succeed.
    pub async fn remove(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let id = match self.resolve(id) {
            Ok(id) => id,
            Err(ContainerError::Store(StoreError::NotFound(..))) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        let Some(record) = self.store.get(&id) else {
            return Ok(());
        };
        self.stop_locked(&id, Duration::ZERO).await?;
        let this = self.clone();
        let discard_id = id.clone();
        tokio::task::spawn_blocking(move || this.discard_stopped(&discard_id))
            .await
            .map_err(|e| ContainerError::Internal {
                id: id.clone(),
                message: format!("remove task failed: {e}"),
            })?;
        // systemd lets an emptied scope go by itself; stopping it makes that certain.
        if crate::cgroup_driver::is_systemd() {
            if let Err(e) = crate::cgroup_driver::remove_container_scope(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot stop the container's scope");
            }
            if let Err(e) = crate::cgroup_driver::monitor::remove_scope(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot stop the monitor's scope");
            }
        }
        self.store.remove(&id)?;
        self.locks.forget(&id);
        self.emit(&record, EventKind::Deleted);
        Ok(())
    }

    /// Removes every container of a pod (RemovePodSandbox).
    pub async fn remove_pod_containers(
        self: &Arc<Self>,
        pod_id: &str,
    ) -> Result<(), ContainerError> {
        for record in self.store.list() {
            if record.pod_id == pod_id {
                self.remove(&record.id).await?;
            }
        }
        Ok(())
    }

    /// Removes every trace of a container that failed to be made or is being removed:
    /// the runtime's container, the monitor state, the mount and the bundle.
    pub(super) fn discard(&self, id: &str) {
        self.delete_from_runtime(id);
        self.remove_bundle(id);
    }

    /// `discard` for a container whose processes have ended: nothing of it runs from the
    /// root filesystem any more, so the bundle goes while the runtime deletes its part.
    fn discard_stopped(&self, id: &str) {
        std::thread::scope(|scope| {
            scope.spawn(|| self.remove_bundle(id));
            self.delete_from_runtime(id);
        });
    }

    /// The runtime's container (its cgroup and state) and the monitor's state directory.
    fn delete_from_runtime(&self, id: &str) {
        let handler = self.store.get(id).map(|r| r.handler).unwrap_or_default();
        let state_dir = self.state_dir(id);
        if let Ok(runtime) = self.runtime(&handler)
            && let Err(e) = runtime.delete(id, &state_dir, true)
            && !matches!(e, RuntimeError::NotFound { .. })
        {
            tracing::warn!(container = id, error = %e, "runtime delete failed");
        }
        let _ = std::fs::remove_dir_all(&state_dir);
        // The monitor is gone or going with the runtime's container.
        if !crate::cgroup_driver::is_systemd()
            && let Err(e) = crate::cgroup_driver::monitor::remove(id)
        {
            tracing::warn!(container = id, error = %e, "cannot remove the monitor's cgroup");
        }
    }

    /// The root filesystem mount and the bundle with the writable layer.
    fn remove_bundle(&self, id: &str) {
        let bundle = self.bundle_dir(id);
        // ID-mapped volumes and layers show host directories and the image's layers: they
        // go before anything is deleted.
        if let Err(e) = crate::storage::idmap::unmount_all(&bundle) {
            tracing::warn!(container = id, error = %e, "cannot unmount ID-mapped volumes");
            return;
        }
        if let Err(e) = image_volume::unmount_all(&bundle) {
            tracing::warn!(container = id, error = %e, "cannot unmount image volumes");
            return;
        }
        if let Err(e) = Rootfs::new(&bundle).unmount() {
            tracing::warn!(container = id, error = %e, "cannot unmount root filesystem");
            return;
        }
        let _ = std::fs::remove_dir_all(&bundle);
    }
}
