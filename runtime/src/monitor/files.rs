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
    match text.parse::<crate::process::ProcessId>() {
        Ok(recorded) => recorded.is_alive().then_some(recorded),
        Err(_) => legacy_monitor(text.trim().parse().ok()?, state_dir),
    }
}

/// A monitor started by an earlier criox recorded its pid alone. Its containers must
/// survive an upgrade, so that pid counts as the monitor while it still runs a monitor
/// for this very state directory: a reused pid runs something else.
fn legacy_monitor(pid: i32, state_dir: &std::path::Path) -> Option<crate::process::ProcessId> {
    let process = crate::process::ProcessId::of(pid)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_monitor = args.contains(&&b"monitor"[..]);
    let dir = state_dir.as_os_str().as_encoded_bytes();
    let same_dir = args
        .windows(2)
        .any(|w| w[0] == b"--state-dir" && w[1] == dir);
    (is_monitor && same_dir).then_some(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_pid_counts_only_for_a_monitor_of_that_directory() {
        let dir = tempfile::tempdir().unwrap();
        // This test process is alive but is no monitor: a reused pid must not count.
        std::fs::write(dir.path().join(PID_FILE), std::process::id().to_string()).unwrap();
        assert_eq!(live_monitor(dir.path()), None);

        // A process whose arguments are a monitor's for this directory.
        let mut monitor = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh", "monitor", "--state-dir"])
            .arg(dir.path())
            .spawn()
            .unwrap();
        // Until the child has executed `sh`, its command line is still this test's.
        let cmdline = format!("/proc/{}/cmdline", monitor.id());
        for _ in 0..500 {
            let args = std::fs::read(&cmdline).unwrap_or_default();
            if args.split(|b| *b == 0).any(|a| a == b"monitor") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(dir.path().join(PID_FILE), monitor.id().to_string()).unwrap();
        let found = live_monitor(dir.path());
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(PID_FILE), monitor.id().to_string()).unwrap();
        let elsewhere = live_monitor(other.path());
        let _ = monitor.kill();
        let _ = monitor.wait();
        assert_eq!(found.map(|p| p.pid), Some(monitor.id() as i32));
        assert_eq!(elsewhere, None, "a monitor of another directory");
        assert_eq!(live_monitor(dir.path()), None, "the monitor has ended");
    }
}
