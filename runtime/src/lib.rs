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
//!   streaming exec ([`ExecSpec`]), and [`exec_kill`] ends one whose client went away.
//! - The state directory is the contract with a monitor, also after a daemon restart:
//!   [`monitor_client::monitor_pid`], [`Runtime::exit_record`] / [`ExitRecord::read`],
//!   [`monitor_client::wait_exit`], [`monitor_client::reopen_log`],
//!   [`monitor_client::resize`], [`monitor_client::attach`] (frames in
//!   [`monitor::protocol`]).
//!
//! Errors are [`RuntimeError`]: `NotFound`, `AlreadyExists`, `InvalidArgument` (bad bundle,
//! the field named), `Failed`, `Timeout`, `Io`.

pub mod backend;
pub mod bundle;
mod choice;
pub mod cli;
pub mod embedded;
mod error;
pub mod exec_kill;
pub mod exec_sync;
pub mod external;
mod handle;
mod launch;
pub mod monitor;
pub mod monitor_client;
pub mod mountinfo;
pub mod process;
mod request;

pub use backend::{ContainerState, Status};
pub use error::RuntimeError;
pub use exec_sync::ExecOutput;
pub use handle::{ExecSpec, Runtime};
pub use launch::PendingLaunch;
pub use monitor::console::{ConsoleError, ConsoleSocket, set_window_size};
pub use monitor::{ExitRecord, RuntimeChoice};
pub use monitor_client::{AttachInput, AttachOutput, OutputStream};
pub use oci_spec;
pub use process::ProcessId;
pub use request::{LaunchRequest, Launched};
