//! How a container ended: the monitor's exit record, read when the monitor leaves.

use std::sync::Arc;

use criox_runtime::ExitRecord;

use super::events::EventKind;
use super::exit_watch;
use super::manager::ContainerManager;
use super::record::{ContainerRecord, Exit, State};
use crate::ids::now_ns;

/// Exit code recorded when a container's end could not be observed.
const UNKNOWN_EXIT_CODE: i32 = 255;

impl ContainerManager {
    /// Follows the monitor in the background and records the exit when it comes.
    pub(super) fn watch_exit(self: &Arc<Self>, id: &str, monitor_pid: i32) {
        let this = Arc::downgrade(self);
        let id = id.to_string();
        tokio::spawn(async move {
            exit_watch::process_exit(monitor_pid).await;
            if let Some(this) = this.upgrade() {
                this.record_exit(&id);
            }
        });
    }

    /// Moves a container to Exited from its monitor's exit record (or as unknown when the
    /// monitor is gone without one). Does nothing for a container already exited.
    pub(super) fn record_exit(&self, id: &str) -> Option<ContainerRecord> {
        let record = self.store.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return None;
        }
        let exit = match ExitRecord::read(&self.state_dir(id)) {
            Ok(Some(exit)) => Exit {
                code: exit.exit_code,
                finished_at: exit.finished_at_unix_nanos,
                oom_killed: exit.oom_killed,
                unknown: false,
            },
            _ if criox_runtime::monitor_pid(&self.state_dir(id)).is_some() => {
                return None;
            }
            _ => Exit {
                code: UNKNOWN_EXIT_CODE,
                finished_at: now_ns(),
                oom_killed: false,
                unknown: true,
            },
        };
        let updated = self
            .store
            .update(id, |r| {
                r.state = State::Exited;
                r.exit = Some(exit);
                r.pid = 0;
            })
            .ok()?;
        self.emit(&updated, EventKind::Stopped);
        Some(updated)
    }
}
