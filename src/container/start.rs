//! StartContainer.

use std::sync::Arc;

use super::events::EventKind;
use super::manager::{ContainerError, ContainerManager};
use super::record::State;
use crate::ids::now_ns;

impl ContainerManager {
    /// StartContainer.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let id = self.resolve(id)?;
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        let record = self.get(&id)?;
        if record.state != State::Created {
            return Err(ContainerError::FailedPrecondition {
                id,
                message: format!("cannot start a container that is {}", record.state.as_str()),
            });
        }
        let runtime = self.runtime(&record.handler)?.clone();
        let start_id = id.clone();
        // Taken before the start: a short process can finish before start returns.
        let started_at = now_ns();
        let phase = crate::timeline::phase("backend_start");
        tokio::task::spawn_blocking(move || runtime.start(&start_id))
            .await
            .map_err(|e| ContainerError::Internal {
                id: id.clone(),
                message: format!("start task failed: {e}"),
            })??;
        drop(phase);
        let _phase = crate::timeline::phase("record");
        let updated = self.store.update_unsynced(&id, |r| {
            // The process may have ended already; the exit watcher records that.
            if r.state == State::Created {
                r.state = State::Running;
            }
            r.started_at = started_at;
        })?;
        self.emit(&updated, EventKind::Started);
        Ok(())
    }
}
