//! criox: a Kubernetes CRI runtime in one binary.
//!
//! The runc command line (`criox oci`, or the binary invoked as `criox-runc`) and the
//! per-container monitor (`criox monitor`) are dispatched before anything else happens:
//! both must stay single-threaded, so no async runtime may be started for them.

use std::ffi::OsString;
use std::path::Path;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "criox-runc" {
        std::process::exit(criox_runtime::cli::main(args));
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("oci") => std::process::exit(criox_runtime::cli::main(args[1..].to_vec())),
        Some("monitor") => std::process::exit(criox_runtime::monitor::main(args[1..].to_vec())),
        _ => {}
    }
    eprintln!("criox: the daemon is not implemented yet");
    std::process::exit(1);
}
