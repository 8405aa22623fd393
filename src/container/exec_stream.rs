//! Processes started in a running container for a streaming exec: the runtime's own
//! `exec` command (`criox oci exec` or `runc exec`) in the foreground, with pipes, or with a
//! terminal whose master the runtime hands over a console socket.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use criox_runtime::{ConsoleError, ConsoleSocket, set_window_size};

use super::manager::{ContainerError, ContainerManager};

/// A running exec. Dropping it before the process ended kills the process in the
/// container (a client that went away must not leave it running unattended) and lets the
/// runtime's exec command, its parent, reap it before the files go.
pub struct ExecProcess {
    /// The runtime's exec command; `None` only while being dropped.
    child: Option<tokio::process::Child>,
    /// The terminal's master side, when the exec has one.
    pub terminal: Option<OwnedFd>,
    files: Vec<PathBuf>,
    pid_file: PathBuf,
}

impl ExecProcess {
    /// The runtime's exec command: its pipes are the process's, and it exits with the
    /// process's exit code.
    pub fn child(&mut self) -> &mut tokio::process::Child {
        self.child
            .as_mut()
            .expect("an exec's command is there until it is dropped")
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let files = std::mem::take(&mut self.files);
        let pid_file = self.pid_file.clone();
        let remove = move || {
            for file in &files {
                let _ = std::fs::remove_file(file);
            }
            let _ = std::fs::remove_file(&pid_file);
        };
        if let Ok(Some(_)) | Err(_) = child.try_wait() {
            // Ended: nothing runs in the container any more.
            remove();
            return;
        }
        let pid_file = self.pid_file.clone();
        let end = async move {
            end_exec(&mut child, &pid_file).await;
            remove();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(end);
            }
            // Outside the runtime (the daemon is going down): the process is killed all
            // the same; the exec command is killed when it is dropped.
            Err(_) => {
                criox_runtime::kill_recorded_exec(&self.pid_file);
            }
        }
    }
}

/// Kills the exec'd process and waits for the exec command to reap it and exit; see
/// [`criox_runtime::kill_recorded_exec`].
async fn end_exec(child: &mut tokio::process::Child, pid_file: &std::path::Path) {
    use criox_runtime::{EXEC_POLL, EXEC_REAP_LIMIT, kill_recorded_exec};
    use tokio::time::{Instant, timeout, timeout_at};
    let deadline = Instant::now() + EXEC_REAP_LIMIT;
    // The runtime records the pid once the process runs; an exec command that ends
    // before then started nothing.
    while Instant::now() < deadline {
        if kill_recorded_exec(pid_file) {
            break;
        }
        if timeout(EXEC_POLL, child.wait()).await.is_ok() {
            return;
        }
    }
    if timeout_at(deadline, child.wait()).await.is_err() {
        tracing::warn!(
            pid_file = %pid_file.display(),
            "the runtime's exec command did not end after its process was killed"
        );
        let _ = child.kill().await;
    }
}

/// How long a terminal may still arrive after the runtime's exec command ended.
const TERMINAL_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Length of an exec's console socket name in the container's state directory. Unix
/// socket paths are limited to 107 bytes, so the name is kept shorter than the monitor's
/// and the runtime's sockets, which set the longest state directory the daemon accepts.
pub const CONSOLE_SOCKET_NAME_LEN: usize = "tty-".len() + 8 + ".sock".len();

fn console_socket_name(nonce: &str) -> String {
    format!("tty-{}.sock", &nonce[..8])
}

impl ContainerManager {
    /// Starts `cmd` in the running container `id`. With a terminal, `size` (rows, columns)
    /// goes in the process's `consoleSize`, which the runtime gives the terminal before the
    /// process runs; it is set again the moment the runtime hands the master over, for a
    /// runtime that ignores `consoleSize`.
    pub async fn spawn_exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<ExecProcess, ContainerError> {
        let record = self.running_record(id)?;
        let mut process = self.exec_process(&record.id, cmd, tty)?;
        if let (true, Some((rows, columns))) = (tty, size) {
            let console = criox_runtime::oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(columns))
                .build()
                .map_err(|e| ContainerError::Internal {
                    id: record.id.clone(),
                    message: format!("cannot describe the terminal's size: {e}"),
                })?;
            process.set_console_size(Some(console));
        }
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
        let console_path = dir.join(console_socket_name(nonce));
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
        let mut command =
            tokio::process::Command::from(runtime.exec_command(&criox_runtime::ExecSpec {
                id: &record.id,
                process_file: &process_file,
                pid_file: &pid_file,
                console_socket: tty.then_some(console_path.as_path()),
            }));
        command
            .stdin(if tty { Stdio::null() } else { Stdio::piped() })
            .stdout(if tty { Stdio::null() } else { Stdio::piped() })
            // With a terminal the process writes to the terminal; the pipe then carries
            // only the runtime's own errors.
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| ContainerError::Write {
            id: record.id.clone(),
            path: PathBuf::from("exec"),
            source,
        })?;
        let mut exec = ExecProcess {
            child: Some(child),
            terminal: None,
            files,
            pid_file,
        };
        if let Some(console) = console {
            let mut receiving = tokio::task::spawn_blocking(move || {
                let master = console.receive(10)?;
                if let Some((rows, columns)) = size {
                    let _ = set_window_size(master.as_raw_fd(), rows, columns);
                }
                Ok::<_, ConsoleError>(master)
            });
            let ended = tokio::select! {
                received = &mut receiving => Ok(received),
                status = exec.child().wait() => Err(status),
            };
            let received = match ended {
                Ok(received) => received,
                // A short process may be over before its terminal is picked up: a runtime
                // that started it had handed the terminal over already.
                Err(status) => match tokio::time::timeout(TERMINAL_AFTER_EXIT, receiving).await {
                    Ok(received) => received,
                    Err(_) => return Err(exec_failed(&record.id, &mut exec, status).await),
                },
            }
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

/// The error of an exec command that ended before it handed a terminal over: what the
/// runtime said on its stderr, instead of a wait for the terminal that never comes.
async fn exec_failed(
    id: &str,
    exec: &mut ExecProcess,
    status: std::io::Result<std::process::ExitStatus>,
) -> ContainerError {
    use tokio::io::AsyncReadExt;
    let mut said = String::new();
    if let Some(mut stderr) = exec.child().stderr.take() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            stderr.read_to_string(&mut said),
        )
        .await;
    }
    let status = match status {
        Ok(status) => status.to_string(),
        Err(e) => e.to_string(),
    };
    ContainerError::Internal {
        id: id.to_string(),
        message: format!(
            "the runtime's exec ended ({status}) without starting the process: {}",
            said.trim()
        ),
    }
}
