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

/// The live monitor recorded in `state_dir`'s pid file, checked by pid and start time.
pub fn live_monitor(state_dir: &std::path::Path) -> Option<crate::process::ProcessId> {
    let text = std::fs::read_to_string(state_dir.join(PID_FILE)).ok()?;
    let recorded: crate::process::ProcessId = text.parse().ok()?;
    recorded.is_alive().then_some(recorded)
}
