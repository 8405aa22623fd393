//! Ending an exec'd process that its caller gave up on: an ExecSync past its timeout, a
//! streaming client that went away.
//!
//! The process is not the caller's child. Its parent is the runtime's exec command
//! (`criox oci exec`, `runc exec`, or the terminal relay), a child subreaper that waits
//! for it: only that command can reap it. So the process is killed by the pid the runtime
//! wrote to its pid file, and the exec command is left to reap it and exit. Killing the
//! exec command first would hand the process, or its zombie, to the host's init.

use std::path::Path;
use std::time::Duration;

/// How long an exec command gets to reap its killed process and exit before it is killed
/// itself.
pub const REAP_LIMIT: Duration = Duration::from_secs(10);

/// How often the pid file and the exec command are looked at while ending an exec.
pub const POLL: Duration = Duration::from_millis(5);

/// The pid the runtime recorded for an exec, once it has.
pub fn recorded_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 0)
}

/// SIGKILLs the exec'd process and, when it leads a process group of its own (runtimes
/// start exec'd processes in a new session), everything in that group, so children it
/// started in the foreground go with it.
pub fn kill_exec(pid: i32) {
    // SAFETY: getpgid and kill take plain integers.
    unsafe {
        if libc::getpgid(pid) == pid {
            libc::kill(-pid, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills the exec'd process recorded in `pid_file` and its process group, if the runtime
/// has recorded it yet; returns whether it had. The caller then waits for the runtime's
/// exec command to reap it, polling every [`POLL`] for at most [`REAP_LIMIT`].
pub fn kill_recorded_exec(pid_file: &Path) -> bool {
    match recorded_pid(pid_file) {
        Some(pid) => {
            kill_exec(pid);
            true
        }
        None => false,
    }
}

/// Kills the exec'd process recorded in `pid_file` (waiting for the runtime to record it)
/// and waits up to `limit` for `relay`, its parent, to reap it and exit; a relay still
/// there then is killed. Returns the relay's exit status.
pub fn end_exec(
    relay: &mut std::process::Child,
    pid_file: &Path,
    limit: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    let mut killed = false;
    loop {
        if let Some(status) = relay.try_wait()? {
            return Ok(status);
        }
        if !killed && let Some(pid) = recorded_pid(pid_file) {
            kill_exec(pid);
            killed = true;
        }
        if std::time::Instant::now() >= deadline {
            let _ = relay.kill();
            return relay.wait();
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// A stand-in for a runtime's exec command: starts `sleep`, records its pid the way
    /// runtimes do (complete file, renamed into place) and waits for it.
    fn relay(pid_file: &Path) -> std::process::Child {
        let script = format!(
            "sleep 300 & echo $! > {0}.tmp && mv {0}.tmp {0}; wait $!",
            pid_file.display()
        );
        // stderr: the shell reports its killed job there.
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_process_is_killed_and_reaped_by_its_parent_before_end_exec_returns() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("exec.pid");
        let mut relay = relay(&pid_file);
        let pid = loop {
            if let Some(pid) = recorded_pid(&pid_file) {
                break pid;
            }
            std::thread::sleep(POLL);
        };
        let status = end_exec(&mut relay, &pid_file, REAP_LIMIT).unwrap();
        // The relay saw its process die of SIGKILL and left on its own.
        assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{status:?}");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} is still there"
        );
    }

    #[test]
    fn a_relay_that_does_not_end_is_killed_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("never.pid");
        let mut relay = Command::new("sh")
            .arg("-c")
            .arg("exec sleep 300")
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = end_exec(&mut relay, &pid_file, Duration::from_millis(200)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn pid_files_are_read_only_when_complete_and_positive() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pid");
        assert_eq!(recorded_pid(&file), None);
        std::fs::write(&file, "").unwrap();
        assert_eq!(recorded_pid(&file), None);
        std::fs::write(&file, "0").unwrap();
        assert_eq!(recorded_pid(&file), None);
        std::fs::write(&file, "4242\n").unwrap();
        assert_eq!(recorded_pid(&file), Some(4242));
    }
}
