//! The runc-compatible command line: `criox oci …` and the `criox-runc` link.

use std::ffi::OsString;

/// Runs the runc-compatible command line with `args` (program name first) and returns the
/// process exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("criox oci: the runc command line is not implemented yet");
    1
}
