use std::fs;
use std::path::Path;

use nix::unistd::Pid;

use crate::common::{self, CGROUP_PROCS, ControllerOpt, WrapIoResult, WrappedIoError};

/// criox: moves `pid` into the cgroup at `cgroup_path`.
///
/// A write to `cgroup.procs` takes the kernel's global threadgroup lock for writing, which
/// waits for an RCU grace period (milliseconds) unless another migration ran just before.
/// A single-threaded process that moves itself writes "0" to `tasks` instead: the kernel
/// moves only the calling thread, which is then the whole process, without that lock.
pub(super) fn write_task(pid: Pid, cgroup_path: &Path) -> Result<(), WrappedIoError> {
    if pid == nix::unistd::getpid() && single_threaded() {
        common::write_cgroup_file_str(cgroup_path.join("tasks"), "0")
    } else {
        common::write_cgroup_file(cgroup_path.join(CGROUP_PROCS), pid)
    }
}

/// Whether the calling process has one thread (`num_threads`, the 20th field of
/// `/proc/self/stat`, counted after the parenthesised command name).
fn single_threaded() -> bool {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return false;
    };
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .is_some_and(|threads| threads == "1")
}

pub(super) trait Controller {
    type Error: From<WrappedIoError>;
    type Resource;

    /// Adds a new task specified by its pid to the cgroup
    fn add_task(pid: Pid, cgroup_path: &Path) -> Result<(), Self::Error> {
        fs::create_dir_all(cgroup_path).wrap_create_dir(cgroup_path)?;
        write_task(pid, cgroup_path)?;
        Ok(())
    }

    /// Applies resource restrictions to the cgroup
    fn apply(controller_opt: &ControllerOpt, cgroup_root: &Path) -> Result<(), Self::Error>;

    /// Checks if the controller needs to handle this request
    fn needs_to_handle<'a>(controller_opt: &'a ControllerOpt) -> Option<&'a Self::Resource>;
}
