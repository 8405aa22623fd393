//! The filter is tried on a real process: this test binary runs itself again with only
//! the confining test selected, confines that thread and probes what is left.

use super::*;

const CHILD: &str = "CRIOX_CONFINE_TEST_CHILD";

fn errno_of(rc: libc::c_long) -> Option<i32> {
    (rc < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn status_field(name: &str) -> String {
    // Capabilities and filters are per thread: read this thread's view.
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Runs in the re-executed test binary; returns what went wrong.
fn probe(dir: &std::path::Path) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Err(e) = confine() {
        return vec![format!("confine: {e}")];
    }
    // What supervising needs still works.
    let file = dir.join("record.tmp");
    let kept = std::fs::write(&file, b"exit")
        .and_then(|()| std::fs::rename(&file, dir.join("record")))
        .and_then(|()| std::fs::read(dir.join("record")))
        .and_then(|_| std::fs::remove_file(dir.join("record")));
    if let Err(e) = kept {
        wrong.push(format!("file work failed: {e}"));
    }
    let big = vec![1u8; 16 << 20];
    if big.iter().map(|&b| b as usize).sum::<usize>() != 16 << 20 {
        wrong.push("allocation".to_string());
    }
    // What it does not need is refused, including calls no denylist would name.
    // SAFETY: plain system calls with integer arguments.
    let socket = unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if errno_of(socket) != Some(libc::EPERM) {
        wrong.push(format!("socket() was allowed: {socket}"));
    }
    // SAFETY: signal 0 to init only checks permission.
    let kill = unsafe { libc::syscall(libc::SYS_kill, 1, 0) };
    if errno_of(kill) != Some(libc::EPERM) {
        wrong.push(format!("kill() of another process was allowed: {kill}"));
    }
    // SAFETY: an anonymous mapping; unmapped below if it was made.
    let exec_map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if exec_map != libc::MAP_FAILED {
        // SAFETY: the mapping made just above.
        unsafe { libc::munmap(exec_map, 4096) };
        wrong.push("executable memory was mapped".to_string());
    }
    if std::process::Command::new("/bin/true").status().is_ok() {
        wrong.push("a program was started".to_string());
    }
    for (field, want) in [
        ("Seccomp:", "2"),
        ("NoNewPrivs:", "1"),
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
    ] {
        let got = status_field(field);
        if got != want {
            wrong.push(format!("{field} {got}, want {want}"));
        }
    }
    wrong
}

#[test]
fn a_confined_monitor_keeps_its_work_and_loses_everything_else() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let wrong = probe(std::path::Path::new(&dir));
        for w in &wrong {
            eprintln!("confined: {w}");
        }
        // Straight out: the test harness's own exit path is none of the filter's business.
        // SAFETY: ends this child process.
        unsafe { libc::_exit(i32::from(!wrong.is_empty())) };
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "monitor::confine::tests::a_confined_monitor_keeps_its_work_and_loses_everything_else",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "confined child: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
