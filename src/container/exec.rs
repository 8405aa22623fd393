//! ExecSync and the process every exec runs.

use std::sync::Arc;
use std::time::Duration;

use criox_runtime::oci_spec::runtime::Process;

use super::manager::{ContainerError, ContainerManager, invalid};

/// ExecSync output beyond this is cut, as the kubelet's own limit does.
pub const EXEC_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

impl ContainerManager {
    /// The process an exec runs: the container's own user, environment, working directory
    /// and capabilities, with `cmd` as arguments.
    pub fn exec_process(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<Process, ContainerError> {
        if cmd.is_empty() {
            return Err(invalid("cmd", "is empty"));
        }
        let spec = self.spec(id)?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(tty));
        process.set_console_size(None);
        Ok(process)
    }

    /// ExecSync: runs `cmd` in the running container and returns its exit code and output.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<criox_runtime::ExecOutput, ContainerError> {
        let record = self.running_record(id)?;
        let process = self.exec_process(&record.id, cmd, false)?;
        let runtime = self.runtime(&record.handler)?.clone();
        let exec_id = record.id.clone();
        let output = tokio::task::spawn_blocking(move || {
            runtime.exec_sync(&exec_id, &process, timeout, EXEC_OUTPUT_LIMIT)
        })
        .await
        .map_err(|e| ContainerError::Internal {
            id: record.id.clone(),
            message: format!("exec task failed: {e}"),
        })??;
        if output.timed_out {
            return Err(ContainerError::ExecTimeout {
                id: record.id,
                timeout: timeout.unwrap_or_default(),
            });
        }
        Ok(output)
    }
}
