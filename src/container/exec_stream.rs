//! Processes started in a running container for a streaming exec: the runtime's own
//! `exec` command (`criox oci exec` or `runc exec`) in the foreground, with pipes, or with a
//! terminal whose master the runtime hands over a console socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use criox_runtime::monitor::console::{ConsoleError, ConsoleSocket, set_window_size};

use super::manager::{ContainerError, ContainerManager};

/// A running exec. Dropping it kills the process in the container (a client that went
/// away must not leave it running unattended) and removes its files.
pub struct ExecProcess {
    pub child: tokio::process::Child,
    /// The terminal's master side, when the exec has one.
    pub terminal: Option<OwnedFd>,
    files: Vec<PathBuf>,
    pid_file: PathBuf,
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
            // Ended: nothing runs in the container any more.
        } else if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: a plain kill of the pid the runtime recorded for this exec.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl ContainerManager {
    /// Starts `cmd` in the running container `id`. With a terminal, `size` (rows, columns)
    /// is set on it the moment the runtime hands the master over, which is before the
    /// process has usually got past its own setup to read it.
    pub async fn spawn_exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecProcess, ContainerError> {
        let record = self.running_record(id)?;
        let process = self.exec_process(&record.id, cmd, tty)?;
        let runtime = self.runtime_of(&record)?;
        let dir = self.monitor_dir(&record.id);
        let nonce = super::manager::new_id();
        let nonce = &nonce[..12];
        let process_file = dir.join(format!("exec-{nonce}.json"));
        let pid_file = dir.join(format!("exec-{nonce}.pid"));
        let json = serde_json::to_vec(&process).map_err(|e| ContainerError::Internal {
            id: record.id.clone(),
            message: format!("cannot encode the exec process: {e}"),
        })?;
        std::fs::write(&process_file, json).map_err(|source| ContainerError::Write {
            id: record.id.clone(),
            path: process_file.clone(),
            source,
        })?;
        let mut files = vec![process_file.clone()];
        let console_path = dir.join(format!("exec-{nonce}.sock"));
        let console = if tty {
            files.push(console_path.clone());
            Some(
                ConsoleSocket::bind(&console_path).map_err(|e| ContainerError::Internal {
                    id: record.id.clone(),
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let mut command = tokio::process::Command::from(runtime.oci_command());
        command
            .arg("exec")
            .arg("--process")
            .arg(&process_file)
            .arg("--pid-file")
            .arg(&pid_file);
        if tty {
            command.arg("--console-socket").arg(&console_path);
        }
        command.arg(&record.id);
        command
            .stdin(if tty { Stdio::null() } else { Stdio::piped() })
            .stdout(if tty { Stdio::null() } else { Stdio::piped() })
            .stderr(if tty { Stdio::null() } else { Stdio::piped() })
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| ContainerError::Write {
            id: record.id.clone(),
            path: PathBuf::from("exec"),
            source,
        })?;
        let mut exec = ExecProcess {
            child,
            terminal: None,
            files,
            pid_file,
        };
        if let Some(console) = console {
            let received = tokio::task::spawn_blocking(move || {
                let master = console.receive(10)?;
                if let Some((rows, columns)) = size {
                    let _ = set_window_size(master.as_raw_fd(), rows, columns);
                }
                Ok::<_, ConsoleError>(master)
            })
            .await
            .map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: format!("console task failed: {e}"),
            })?;
            exec.terminal = Some(received.map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: e.to_string(),
            })?);
        }
        Ok(exec)
    }
}
