//! Running a process in a container and collecting its output (CRI ExecSync). The process
//! is started by the runtime's own command line (`criox oci exec` or `runc exec`), in a
//! process of its own: exec clones into the container.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use oci_spec::runtime::Process;

use crate::error::{RuntimeError, io_err};
use crate::exec_kill::REAP_LIMIT;
use crate::handle::Runtime;

/// What an exec produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code of the process (128 + signal when a signal ended it).
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond the limit was dropped.
    pub truncated: bool,
    /// The timeout passed and the process was killed.
    pub timed_out: bool,
}

/// Reads both pipes until they close or `deadline` passes; keeps at most `limit` bytes each.
fn collect(
    pipes: &mut [(std::process::ChildStdout, Vec<u8>); 1],
    errp: &mut (std::process::ChildStderr, Vec<u8>),
    limit: usize,
    deadline: Option<Instant>,
    truncated: &mut bool,
) -> bool {
    let mut open = [true, true];
    let mut buf = [0u8; 16 * 1024];
    while open[0] || open[1] {
        let mut fds = [
            libc::pollfd {
                fd: if open[0] { pipes[0].0.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[1] { errp.0.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                left.as_millis().min(i32::MAX as u128) as i32
            }
            None => -1,
        };
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if n < 0 {
            continue;
        }
        if n == 0 {
            return false;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let (read, sink) = if i == 0 {
                let (p, s) = &mut pipes[0];
                (p.read(&mut buf), s)
            } else {
                let (p, s) = errp;
                (p.read(&mut buf), s)
            };
            match read {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => {
                    let room = limit.saturating_sub(sink.len());
                    if n > room {
                        *truncated = true;
                    }
                    sink.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    true
}

impl Runtime {
    /// Runs `process` in the running container `id`, waits at most `timeout`, and returns
    /// its exit code and up to `limit` bytes of stdout and of stderr. On timeout the
    /// process is killed and `timed_out` is set.
    pub fn exec_sync(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        crate::bundle::check_id(id)?;
        let mut process = process.clone();
        process.set_terminal(Some(false));
        std::fs::create_dir_all(self.root()).map_err(io_err(id, "runtime root", self.root()))?;
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let process_file = self.root().join(format!(".exec-{id}-{nonce}.json"));
        let pid_file = self.root().join(format!(".exec-{id}-{nonce}.pid"));
        let json = serde_json::to_vec(&process).map_err(|e| RuntimeError::InvalidArgument {
            id: id.to_string(),
            message: format!("container {id}: exec process: {e}"),
        })?;
        std::fs::write(&process_file, json).map_err(io_err(id, "exec process", &process_file))?;
        let result = self.exec_with_files(id, &process_file, &pid_file, timeout, limit);
        let _ = std::fs::remove_file(&process_file);
        let _ = std::fs::remove_file(&pid_file);
        result
    }

    fn exec_with_files(
        &self,
        id: &str,
        process_file: &std::path::Path,
        pid_file: &std::path::Path,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut cmd = self.exec_command(&crate::handle::ExecSpec {
            id,
            process_file,
            pid_file,
            console_socket: None,
        });
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = cmd.get_program().to_os_string();
        let mut child = cmd.spawn().map_err(io_err(id, "running", program))?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut out = [(child.stdout.take().expect("piped"), Vec::new())];
        let mut err = (child.stderr.take().expect("piped"), Vec::new());
        let mut truncated = false;
        let finished = collect(&mut out, &mut err, limit, deadline, &mut truncated);
        let status = if finished {
            child.wait()
        } else {
            // The process is gone, reaped by the exec command, before the timeout is
            // reported: a probe that timed out leaves nothing behind.
            let status = crate::exec_kill::end_exec(&mut child, pid_file, REAP_LIMIT);
            // Output still buffered in the pipes, unless a process the exec left behind
            // holds them open.
            collect(
                &mut out,
                &mut err,
                limit,
                Some(Instant::now() + Duration::from_millis(200)),
                &mut truncated,
            );
            status
        }
        .map_err(io_err(id, "waiting for exec", pid_file))?;
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255);
        let [(_, stdout)] = out;
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr: err.1,
            truncated,
            timed_out: !finished,
        })
    }
}
