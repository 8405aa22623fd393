//! Drives one container through the library the way the daemon does (launch through the
//! monitor, start, wait, delete) and prints the exit code. Used by hack/bench/runtime.
//!
//! Usage: launch CRIOX_BINARY RUNTIME_ROOT BUNDLE STATE_DIR ID [RUNC_PATH]

use std::time::Duration;

use criox_runtime::{LaunchRequest, Runtime, wait_exit};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: launch CRIOX_BINARY RUNTIME_ROOT BUNDLE STATE_DIR ID [RUNC_PATH]");
        std::process::exit(2);
    }
    let rt = match args.get(6) {
        Some(runc) => Runtime::external(runc, &args[2]),
        None => Runtime::embedded(&args[2]),
    }
    .with_exe(&args[1]);
    let req = LaunchRequest {
        id: args[5].clone(),
        bundle: args[3].clone().into(),
        state_dir: args[4].clone().into(),
        log_path: None,
        stdin: false,
        stdin_once: false,
        terminal: false,
    };
    let trace = std::env::var_os("CRIOX_LAUNCH_TRACE").is_some();
    let t0 = std::time::Instant::now();
    let mark = |what: &str| {
        if trace {
            eprintln!("{what}: {:?}", t0.elapsed());
        }
    };
    let code = (|| {
        rt.launch(&req)?;
        mark("created");
        rt.start(&req.id)?;
        mark("started");
        let rec = wait_exit(&req.state_dir, Some(Duration::from_secs(60)));
        mark("exited");
        rt.delete(&req.id, &req.state_dir, true)?;
        mark("deleted");
        Ok::<_, criox_runtime::RuntimeError>(rec.map_or(255, |r| r.exit_code))
    })();
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            eprintln!("launch: {e}");
            std::process::exit(1);
        }
    }
}
