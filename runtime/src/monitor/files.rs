//! Names of the monitor's files in a container's state directory.

pub const PID_FILE: &str = "monitor.pid";
pub const SOCKET: &str = "monitor.sock";
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The monitor's own errors.
pub const OWN_LOG: &str = "monitor.log";
pub use super::exit_record::FILE_NAME as EXIT_FILE;

/// Every file the monitor may leave in the state directory.
pub const ALL: &[&str] = &[
    PID_FILE,
    SOCKET,
    CONSOLE_SOCKET,
    OWN_LOG,
    EXIT_FILE,
    ".exit.json.tmp",
];
