//! The per-container monitor, run as the hidden `criox monitor` subcommand.
//!
//! It detaches (own session, child subreaper), creates the container through the chosen
//! backend, reports the pid (or the error) on the sync descriptor, holds the container's
//! stdio, writes the CRI log, serves attach and control requests on `monitor.sock`, and on
//! exit writes `exit.json` into the state directory and leaves.

pub mod args;
mod attach;
mod confine;
pub mod console;
mod created;
pub mod cri_log;
pub mod exit_record;
pub mod files;
mod oom;
mod own_log;
pub mod protocol;
mod root_flags;
mod run;
mod stdin;
mod supervise;
mod trim;

use std::ffi::OsString;

pub use args::{MonitorArgs, RuntimeChoice};
pub use exit_record::ExitRecord;
pub use run::CreateReport;

/// Runs the monitor with `args` (program name first) and returns the process exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let parsed = match MonitorArgs::parse(args.get(1..).unwrap_or_default()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    // Detach: the launcher waits for this first process only; the container lives on
    // under the second, which no one but init (or a subreaper) needs to reap.
    // SAFETY: the monitor is single-threaded at this point.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            eprintln!("monitor: fork: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    // The launcher's working directory may be removed while the monitor lives, and
    // libcontainer reads the working directory when it creates.
    let _ = std::env::set_current_dir("/");
    // Whatever the launcher's stdio is (a terminal, a pipe someone reads to its end), the
    // monitor must not hold it: results travel through the sync descriptor and the state
    // directory.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
        }
    }
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    match run::run(parsed) {
        Ok(()) => 0,
        Err(e) => {
            own_log::error(&e.to_string());
            1
        }
    }
}
