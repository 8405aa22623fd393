//! The per-container monitor, run as the hidden `criox monitor` subcommand.

use std::ffi::OsString;

/// Runs the monitor with `args` (program name first) and returns the process exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("criox monitor: not implemented yet");
    1
}
