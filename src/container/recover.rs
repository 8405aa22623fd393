//! Start-up recovery: records brought in line with what happened while the daemon was
//! away, and bundles that no record names removed.

use std::sync::Arc;

use super::manager::ContainerManager;
use super::record::State;
use crate::storage::rootfs::Rootfs;

impl ContainerManager {
    /// Brings the records in line with reality after a daemon start.
    pub(super) async fn recover(self: &Arc<Self>) {
        for record in self.store.list() {
            match record.state {
                State::Creating => {
                    tracing::info!(container = %record.id, "removing a container a crash left half-made");
                    let this = self.clone();
                    let id = record.id.clone();
                    let _ = tokio::task::spawn_blocking(move || this.discard(&id)).await;
                    let _ = self.store.remove(&record.id);
                }
                State::Created | State::Running => {
                    let state_dir = self.state_dir(&record.id);
                    match criox_runtime::monitor_pid(&state_dir) {
                        Some(pid) => {
                            adopt_monitor(&record.id, pid).await;
                            self.watch_exit(&record.id, pid);
                        }
                        None => self.monitor_gone(&record.id),
                    }
                }
                State::Exited => {}
            }
        }
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            this.sweep_orphan_bundles();
            if !crate::cgroup_driver::is_systemd() {
                crate::cgroup_driver::monitor::sweep(|id| this.store.get(id).is_some());
            }
        })
        .await;
    }

    /// Removes bundles that no record names. The record of a container being created is
    /// written without a flush to disk, so a power loss can take it away and leave its
    /// bundle; nothing runs from such a bundle any more. One whose root filesystem is
    /// still mounted is left alone: something other than a lost record holds it.
    fn sweep_orphan_bundles(&self) {
        let Ok(entries) = std::fs::read_dir(&self.bundles) else {
            return;
        };
        let mounts = criox_runtime::mountinfo::current();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else {
                continue;
            };
            if self.store.get(id).is_some() {
                continue;
            }
            let bundle = entry.path();
            if Rootfs::new(&bundle).is_mounted(&mounts)
                || crate::storage::idmap::any_mounted(&bundle, &mounts)
            {
                tracing::warn!(bundle = %bundle.display(), "a bundle without a record has its root filesystem mounted; leaving it");
                continue;
            }
            tracing::info!(bundle = %bundle.display(), "removing a bundle without a record");
            if let Err(e) = std::fs::remove_dir_all(&bundle) {
                tracing::warn!(bundle = %bundle.display(), error = %e, "cannot remove bundle");
            }
        }
    }
}

/// A live monitor goes to its own cgroup (or scope) if it is not there yet: monitors
/// started by a daemon that kept them in its own cgroup leave it on the next start.
async fn adopt_monitor(id: &str, pid: i32) {
    let result = if crate::cgroup_driver::is_systemd() {
        crate::cgroup_driver::monitor::scope(id, pid).await
    } else {
        let id = id.to_string();
        tokio::task::spawn_blocking(move || crate::cgroup_driver::monitor::adopt(&id, pid))
            .await
            .unwrap_or(Ok(()))
    };
    if let Err(e) = result {
        tracing::warn!(container = %id, error = %e, "the monitor stays where it is");
    }
}
