//! StopContainer and the stopping of a pod's containers: the stop signal, then SIGKILL.

use std::sync::Arc;
use std::time::Duration;

use criox_runtime::{ProcessId, Runtime};

use super::exit_watch;
use super::manager::{ContainerError, ContainerManager};
use super::record::State;

impl ContainerManager {
    /// StopContainer: the stop signal, then SIGKILL after `timeout`. Stopping a container
    /// that is not running succeeds.
    pub async fn stop(self: &Arc<Self>, id: &str, timeout: Duration) -> Result<(), ContainerError> {
        let id = self.resolve(id)?;
        let lock = self.locks.of(&id);
        let _guard = lock.lock().await;
        self.stop_locked(&id, timeout).await
    }

    /// One sequence whether or not the container's monitor runs; only how the stop signal
    /// reaches the init and how its end shows differ (see [`Init`]). A container whose
    /// monitor is gone may have its exit recorded already; if its init outlived the
    /// monitor, its end is recorded with an unknown code.
    pub(super) async fn stop_locked(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
    ) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Ok(());
        }
        let runtime = self.runtime(&record.handler)?.clone();
        let init = if criox_runtime::monitor_pid(&self.state_dir(id)).is_some() {
            Init::Monitored(record.monitor_pid)
        } else {
            self.record_exit(id);
            let Some(init) = self.lost_init(id) else {
                return Ok(());
            };
            tracing::info!(
                container = id,
                init = init.pid,
                "stopping a container whose monitor is lost through its init"
            );
            Init::Lost(init)
        };
        if !timeout.is_zero() {
            init.signal(&runtime, id, record.stop_signal).await;
            if tokio::time::timeout(timeout, init.exited()).await.is_ok() {
                self.record_exit(id);
                return Ok(());
            }
        }
        if let Init::Lost(process) = init {
            process.signal(libc::SIGKILL);
        }
        kill_all(&runtime, id).await;
        // The kernel ends a SIGKILLed container promptly; the bound only guards against a
        // stuck monitor or an init the kill did not reach.
        if tokio::time::timeout(Duration::from_secs(30), init.exited())
            .await
            .is_err()
            && let Init::Lost(process) = init
        {
            return Err(ContainerError::Internal {
                id: id.to_string(),
                message: format!(
                    "its init (pid {}) still runs 30 s after SIGKILL",
                    process.pid
                ),
            });
        }
        self.record_exit(id);
        Ok(())
    }

    /// Stops every container of a pod (StopPodSandbox).
    pub async fn stop_pod_containers(self: &Arc<Self>, pod_id: &str) -> Result<(), ContainerError> {
        for record in self.store.list() {
            if record.pod_id == pod_id {
                self.stop(&record.id, Duration::ZERO).await?;
            }
        }
        Ok(())
    }
}

/// How a stopping container's init is reached: through its monitor, which the runtime
/// passes signals to and which leaves after recording the exit, or, when the monitor is
/// lost, directly by its recorded pid and start time.
#[derive(Clone, Copy)]
enum Init {
    Monitored(i32),
    Lost(ProcessId),
}

impl Init {
    async fn signal(self, runtime: &Runtime, id: &str, signal: i32) {
        match self {
            Init::Monitored(_) => {
                let (rt, kill_id) = (runtime.clone(), id.to_string());
                let sent =
                    tokio::task::spawn_blocking(move || rt.kill(&kill_id, signal, false)).await;
                if let Ok(Err(e)) = sent {
                    tracing::debug!(container = id, error = %e, "stop signal not delivered");
                }
            }
            Init::Lost(process) => {
                if !process.signal(signal) {
                    tracing::debug!(
                        container = id,
                        "stop signal not delivered: the init is gone"
                    );
                }
            }
        }
    }

    /// Resolves when the container has ended: its monitor left (after recording the exit),
    /// or its init did.
    async fn exited(self) {
        match self {
            Init::Monitored(monitor_pid) => exit_watch::process_exit(monitor_pid).await,
            Init::Lost(process) => exit_watch::recorded_exit(process).await,
        }
    }
}

/// SIGKILL to every process of the container: through the runtime, which knows the
/// container's cgroup (processes an init leaves behind in a shared PID namespace live on
/// there), and under the systemd cgroup driver through the container's scope too.
async fn kill_all(runtime: &Runtime, id: &str) {
    let (rt, kill_id) = (runtime.clone(), id.to_string());
    let sent = tokio::task::spawn_blocking(move || rt.kill(&kill_id, libc::SIGKILL, true)).await;
    if let Ok(Err(e)) = sent {
        tracing::debug!(container = id, error = %e, "SIGKILL not delivered");
    }
    if crate::cgroup_driver::is_systemd()
        && let Err(e) = crate::cgroup_driver::kill_container_scope(id).await
    {
        tracing::debug!(container = id, error = %e, "SIGKILL through the scope not delivered");
    }
}
