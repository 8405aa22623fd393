//! What the daemon asks of a launch and what it gets back. The monitor receives the
//! request itself, on its command line.

use std::path::PathBuf;

use crate::process::ProcessId;

/// What a container is launched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    pub id: String,
    /// The OCI bundle; its root filesystem must lie inside it.
    pub bundle: PathBuf,
    /// Per-container directory for the monitor's pid file, socket and exit record.
    pub state_dir: PathBuf,
    /// CRI log file; `None` discards output.
    pub log_path: Option<PathBuf>,
    /// Keep the container's stdin open for attach.
    pub stdin: bool,
    /// Close stdin when the first attach session that used it ends.
    pub stdin_once: bool,
    /// Must match `process.terminal` of the bundle's config.json.
    pub terminal: bool,
}

/// The cgroup a container's monitor lives in, one directory per hierarchy. The monitor is
/// born in the cgroup2 directory and moves itself into the v1 ones before it forks
/// anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorCgroup {
    /// The directory in the cgroup2 hierarchy, where the node has one.
    pub unified: Option<PathBuf>,
    /// The directories in the v1 hierarchies (controllers and `name=systemd`).
    pub v1: Vec<PathBuf>,
}

/// A container the monitor created (status `created`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// Pid of the container's init process.
    pub pid: i32,
    /// Pid of its monitor.
    pub monitor_pid: i32,
    /// Its monitor by pid and start time: what to check before signalling it later.
    pub monitor: Option<ProcessId>,
    /// The init by pid and start time: what stays of the container to check and signal
    /// if its monitor is lost.
    pub init: Option<ProcessId>,
}
