//! Which OCI runtime a container uses, and the one place a backend is made for it.
//!
//! libcontainer changes process-wide state while it works (the working directory around
//! its notify and console sockets, the umask, forks): it runs only in a process of one
//! thread, the monitor or `criox oci`. A threaded caller such as the daemon gets the
//! runtime's command line instead, each verb in a short-lived process of its own.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::embedded::Embedded;
use crate::external::External;

/// Which OCI runtime creates and runs a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    Embedded,
    /// A runc-compatible binary.
    External(PathBuf),
}

/// The backend for a process of one thread: the monitor and `criox oci`.
/// `systemd_cgroup` drives an external runtime with `--systemd-cgroup`; the embedded
/// runtime always manages cgroupfs paths (under systemd the daemon makes its scope).
pub(crate) fn in_process(
    choice: &RuntimeChoice,
    root: &Path,
    systemd_cgroup: bool,
) -> Box<dyn Backend> {
    match choice {
        RuntimeChoice::Embedded => Box::new(Embedded::new(root)),
        RuntimeChoice::External(bin) => {
            Box::new(External::new(bin, root).with_systemd_cgroup(systemd_cgroup))
        }
    }
}

/// The runtime's command line (`exe oci --root …` for the embedded runtime), whose verbs
/// each run in a process of their own: what a threaded caller uses.
pub(crate) fn command_line(
    choice: &RuntimeChoice,
    root: &Path,
    exe: &Path,
    systemd_cgroup: bool,
) -> External {
    match choice {
        RuntimeChoice::Embedded => External::new(exe, root).with_prefix(vec!["oci".to_string()]),
        RuntimeChoice::External(bin) => {
            External::new(bin, root).with_systemd_cgroup(systemd_cgroup)
        }
    }
}
