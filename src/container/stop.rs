//! StopContainer and the stopping of a pod's containers: the stop signal, then SIGKILL.

use std::sync::Arc;
use std::time::Duration;

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
        if criox_runtime::monitor_pid(&self.state_dir(id)).is_none() {
            return self.stop_without_monitor(id, timeout, runtime).await;
        }
        let monitor_pid = record.monitor_pid;
        if !timeout.is_zero() {
            let signal = record.stop_signal;
            let rt = runtime.clone();
            let kill_id = id.to_string();
            let sent = tokio::task::spawn_blocking(move || rt.kill(&kill_id, signal, false)).await;
            if let Ok(Err(e)) = sent {
                tracing::debug!(container = id, error = %e, "stop signal not delivered");
            }
            if tokio::time::timeout(timeout, exit_watch::process_exit(monitor_pid))
                .await
                .is_ok()
            {
                self.record_exit(id);
                return Ok(());
            }
        }
        let kill_id = id.to_string();
        let sent =
            tokio::task::spawn_blocking(move || runtime.kill(&kill_id, libc::SIGKILL, true)).await;
        if let Ok(Err(e)) = sent {
            tracing::debug!(container = id, error = %e, "SIGKILL not delivered");
        }
        if crate::cgroup_driver::is_systemd()
            && let Err(e) = crate::cgroup_driver::kill_container_scope(id).await
        {
            tracing::debug!(container = id, error = %e, "SIGKILL through the scope not delivered");
        }
        // The kernel ends a SIGKILLed container promptly; the bound only guards against a
        // stuck monitor.
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            exit_watch::process_exit(monitor_pid),
        )
        .await;
        self.record_exit(id);
        Ok(())
    }

    /// Stops a container whose monitor is gone: its exit may be recorded already; if its
    /// init outlived the monitor, the init itself gets the stop signal, then SIGKILL (with
    /// everything else in the container), and its end is recorded with an unknown code.
    async fn stop_without_monitor(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
        runtime: criox_runtime::Runtime,
    ) -> Result<(), ContainerError> {
        self.record_exit(id);
        let Some(init) = self.lost_init(id) else {
            return Ok(());
        };
        tracing::info!(
            container = id,
            init = init.pid,
            "stopping a container whose monitor is lost through its init"
        );
        if !timeout.is_zero() {
            let signal = self.get(id)?.stop_signal;
            if !init.signal(signal) {
                tracing::debug!(
                    container = id,
                    "stop signal not delivered: the init is gone"
                );
            }
            if tokio::time::timeout(timeout, exit_watch::recorded_exit(init))
                .await
                .is_ok()
            {
                self.record_exit(id);
                return Ok(());
            }
        }
        init.signal(libc::SIGKILL);
        // Processes the init leaves behind in the container (a shared PID namespace keeps
        // them alive) go through the runtime, which knows the container's cgroup.
        let kill_id = id.to_string();
        let sent =
            tokio::task::spawn_blocking(move || runtime.kill(&kill_id, libc::SIGKILL, true)).await;
        if let Ok(Err(e)) = sent {
            tracing::debug!(container = id, error = %e, "SIGKILL to the container not delivered");
        }
        if tokio::time::timeout(Duration::from_secs(30), exit_watch::recorded_exit(init))
            .await
            .is_err()
        {
            return Err(ContainerError::Internal {
                id: id.to_string(),
                message: format!("its init (pid {}) still runs 30 s after SIGKILL", init.pid),
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
