//! How a container ended: the monitor's exit record, read when the monitor leaves. A
//! monitor can also be lost (killed by the OOM killer or an operator) while the container
//! runs on: then the container stays running, followed by its init's pid and start time,
//! until the init ends.

use std::path::Path;
use std::sync::Arc;

use criox_runtime::{ExitRecord, ProcessId};

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
                this.monitor_gone(&id);
            }
        });
    }

    /// For a container whose monitor has left: records the exit, or, while the init still
    /// runs, marks the monitor lost and follows the init until it ends.
    pub(super) fn monitor_gone(self: &Arc<Self>, id: &str) {
        self.record_exit(id);
        let Some(init) = self.lost_init(id) else {
            return;
        };
        let this = Arc::downgrade(self);
        let id = id.to_string();
        tokio::spawn(async move {
            exit_watch::recorded_exit(init).await;
            if let Some(this) = this.upgrade() {
                this.record_exit(&id);
            }
        });
    }

    /// The init of a created or running container whose monitor is lost, while it runs.
    pub(super) fn lost_init(&self, id: &str) -> Option<ProcessId> {
        let record = self.store.get(id)?;
        if !record.monitor_lost || !matches!(record.state, State::Created | State::Running) {
            return None;
        }
        record.init().filter(ProcessId::is_alive)
    }

    /// Moves a container to Exited from its monitor's exit record, or as unknown when the
    /// monitor is gone without one and so is the init. Does nothing for a container
    /// already exited, one whose monitor runs, or one whose init outlived its monitor
    /// (which is marked so).
    pub(super) fn record_exit(&self, id: &str) -> Option<ContainerRecord> {
        let record = self.store.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return None;
        }
        let state_dir = self.state_dir(id);
        let exit = match recorded(&state_dir) {
            Some(exit) => exit,
            None if criox_runtime::monitor_pid(&state_dir).is_some() => return None,
            // The monitor writes the record before it leaves: read again now that it is gone.
            None => match recorded(&state_dir) {
                Some(exit) => exit,
                None if record.init().is_some_and(|init| init.is_alive()) => {
                    self.mark_monitor_lost(&record);
                    return None;
                }
                None => Exit {
                    code: UNKNOWN_EXIT_CODE,
                    finished_at: now_ns(),
                    oom_killed: false,
                    unknown: true,
                },
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

    fn mark_monitor_lost(&self, record: &ContainerRecord) {
        if record.monitor_lost {
            return;
        }
        tracing::warn!(
            container = %record.id,
            monitor = record.monitor_pid,
            init = record.pid,
            "the container's monitor is gone while the container runs: it stays running without log, attach or exit code"
        );
        if let Err(e) = self.store.update(&record.id, |r| r.monitor_lost = true) {
            tracing::warn!(container = %record.id, error = %e, "cannot record the lost monitor");
        }
    }
}

/// The exit the monitor recorded in `state_dir`, if it did.
fn recorded(state_dir: &Path) -> Option<Exit> {
    let exit = ExitRecord::read(state_dir).ok()??;
    Some(Exit {
        code: exit.exit_code,
        finished_at: exit.finished_at_unix_nanos,
        oom_killed: exit.oom_killed,
        unknown: false,
    })
}
