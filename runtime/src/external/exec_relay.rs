//! `criox exec-relay PID_FILE PROGRAM ARGS...`: stands in the foreground for a runtime's
//! detached exec, which a terminal needs: runc hands the terminal's master over the
//! console socket only with `--detach` (in the foreground it wants a terminal of its own
//! on stdin) and then leaves the process to whoever reaps orphans. The relay is a child
//! subreaper, so the process is reparented to it when the runtime leaves; it waits for
//! the process and exits with its exit code, as a foreground `exec` does.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::exec_kill::recorded_pid;

/// The first argument that selects the relay.
pub const SUBCOMMAND: &str = "exec-relay";

/// Exit code when the relay itself fails (as runc uses for its own errors).
const FAILED: i32 = 255;

/// Runs the relay: `args` are `exec-relay PID_FILE PROGRAM ARGS...`; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut args = args.into_iter().skip(1);
    let (Some(pid_file), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: criox {SUBCOMMAND} PID_FILE PROGRAM [ARGS...]");
        return 2;
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let status = match Command::new(&program).args(args).status() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("criox {SUBCOMMAND}: {}: {e}", Path::new(&program).display());
            return FAILED;
        }
    };
    if !status.success() {
        // The runtime said why on the stderr it shares with the relay.
        return status.code().unwrap_or(FAILED);
    }
    let Some(pid) = recorded_pid(Path::new(&pid_file)) else {
        eprintln!(
            "criox {SUBCOMMAND}: the runtime wrote no pid to {}",
            Path::new(&pid_file).display()
        );
        return FAILED;
    };
    wait_for(pid)
}

/// Reaps children until `pid` ends (others are what the runtime left behind) and returns
/// its exit code, 128 + the signal when one ended it.
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("criox {SUBCOMMAND}: waiting for process {pid}: {e}");
                return FAILED;
            }
        }
    }
}
