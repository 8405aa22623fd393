//! The OCI runtime-spec side of criox. It knows bundles and containers, and nothing of CRI.
//!
//! # The API the daemon calls
//!
//! Everything blocks; call it from blocking threads. A [`Runtime`] is one OCI runtime with
//! its state under a root directory: [`Runtime::embedded`] (libcontainer in this binary) or
//! [`Runtime::external`] (a runc-compatible binary). [`Runtime::with_exe`] names the criox
//! binary that serves `criox monitor` and `criox oci` (default: the running executable).
//!
//! - [`Runtime::launch`] starts a detached monitor for a [`LaunchRequest`] (id, bundle,
//!   per-container state directory, CRI log path, stdin / stdin_once / terminal) and returns
//!   once the container is created: [`Launched`] with the init pid, or an error whose text
//!   names the id and the failing field. The monitor outlives the daemon.
//! - [`Runtime::start`], [`Runtime::kill`] (one process or all), [`Runtime::state`],
//!   [`Runtime::pause`], [`Runtime::resume`], [`Runtime::update`] (cgroup resources).
//! - [`Runtime::delete`] removes the container (force kills it), waits for its monitor to
//!   leave, and removes the state directory.
//! - [`Runtime::exec_sync`] runs a process spec in a running container with a timeout and an
//!   output limit, and on timeout kills the process and has it reaped before returning;
//!   [`Runtime::exec_command`] gives the runtime's whole foreground exec command for a
//!   streaming exec ([`ExecSpec`]; a terminal comes over a [`ConsoleSocket`]), and
//!   [`kill_recorded_exec`] ends one whose client went away.
//! - The state directory is the contract with a monitor, also after a daemon restart:
//!   [`monitor_pid`], [`Runtime::exit_record`] / [`ExitRecord::read`], [`wait_exit`],
//!   [`reopen_log`], [`resize`], and [`attach`], whose stream carries [`AttachInput`] one
//!   way and [`AttachOutput`] the other (the frame format stays inside this crate).
//! - Entry points of the same binary: [`oci_main`] (`criox oci`, runc's command line),
//!   [`monitor_main`] (`criox monitor`), [`exec_relay_main`]. [`mountinfo`] reads the mount
//!   table for the daemon too, so there is one parser of it, and
//!   [`clear_capability_sets`] serves the daemon's confined children as well.
//!
//! Everything else (backends, the monitor's insides, the frame protocol, the `criox oci`
//! command tree) is private to this crate.
//!
//! Errors are [`RuntimeError`]: `NotFound`, `AlreadyExists`, `InvalidArgument` (bad bundle,
//! the field named), `Failed`, `Timeout`, `Io`.

mod backend;
mod bundle;
mod capset;
mod choice;
mod cli;
mod embedded;
mod error;
mod exec_kill;
mod exec_sync;
mod external;
mod handle;
mod launch;
mod monitor;
mod monitor_client;
pub mod mountinfo;
mod process;
mod request;
mod spawn;

use std::ffi::OsString;

pub use backend::{ContainerState, Status};
pub use capset::clear_capability_sets;
pub use error::{IoFailure, RuntimeError};
pub use exec_kill::{POLL as EXEC_POLL, REAP_LIMIT as EXEC_REAP_LIMIT, kill_recorded_exec};
pub use exec_sync::ExecOutput;
pub use handle::{ExecSpec, Runtime};
pub use launch::PendingLaunch;
pub use monitor::console::{ConsoleError, ConsoleSocket, set_window_size};
pub use monitor::{ExitRecord, RuntimeChoice};
pub use monitor_client::{
    AttachInput, AttachOutput, OutputStream, attach, monitor_pid, reopen_log, resize, wait_exit,
};
pub use oci_spec;
pub use process::ProcessId;
pub use request::{LaunchRequest, Launched, MonitorCgroup};

/// `criox oci …` (or the binary called as `criox-runc`): runc's command line over the
/// embedded runtime. `args` start with the program name; returns the exit status.
pub fn oci_main(args: Vec<OsString>) -> i32 {
    cli::main(args)
}

/// The hidden `criox monitor …` that [`Runtime::launch`] starts for each container.
/// `args` start with the subcommand; returns the exit status.
pub fn monitor_main(args: Vec<OsString>) -> i32 {
    monitor::main(args)
}

/// The hidden subcommand that relays a terminal exec for an external runtime.
pub const EXEC_RELAY_SUBCOMMAND: &str = external::exec_relay::SUBCOMMAND;

/// Runs [`EXEC_RELAY_SUBCOMMAND`]; `args` start with the subcommand.
pub fn exec_relay_main(args: Vec<OsString>) -> i32 {
    external::exec_relay::main(args)
}
