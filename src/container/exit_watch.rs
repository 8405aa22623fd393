//! Waiting for a container's monitor to leave, without polling: a pidfd becomes readable
//! when the process it refers to exits, and the monitor leaves only after writing the
//! container's exit record. A container whose monitor was lost is followed by its init.

use std::os::fd::{FromRawFd, OwnedFd};

use criox_runtime::ProcessId;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Resolves when process `pid` has exited (at once if it is already gone).
pub async fn process_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        // ESRCH: the process is gone already.
        return;
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    readable(fd, || {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
    .await;
}

/// Resolves when the very process recorded has ended (at once if it has already): a
/// process that is not our child, such as a container's init whose monitor is gone.
pub async fn recorded_exit(process: ProcessId) {
    let Some(fd) = process.pidfd() else {
        return;
    };
    readable(fd, || process.is_alive()).await;
}

/// Waits until a pidfd is readable, which it becomes when its process exits; `runs` tells
/// whether it still runs where the descriptor cannot be registered with the reactor.
async fn readable(fd: OwnedFd, runs: impl Fn() -> bool) {
    // SAFETY: the AsyncFd owns the descriptor until it is dropped, so the registration
    // never outlives it.
    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(watch) => {
            let _ = watch.readable().await;
        }
        // Without a reactor registration, fall back to checking now and then.
        Err(_) => {
            while runs() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Reap it from another thread so the pid does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        tokio::time::timeout(Duration::from_secs(10), process_exit(pid))
            .await
            .expect("exit noticed");
        reaper.join().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_recorded_process_resolves_when_it_exits_and_a_stranger_at_once() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let process = ProcessId::of(child.id() as i32).expect("the child runs");
        let reaper = std::thread::spawn(move || child.wait());
        tokio::time::timeout(Duration::from_secs(10), recorded_exit(process))
            .await
            .expect("exit noticed");
        reaper.join().unwrap().unwrap();
        // Another start time under a live pid is another process: nothing to wait for.
        let me = ProcessId::current().unwrap();
        let stranger = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        tokio::time::timeout(Duration::from_secs(1), recorded_exit(stranger))
            .await
            .expect("resolved");
    }

    #[tokio::test]
    async fn a_gone_process_resolves_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        tokio::time::timeout(Duration::from_secs(1), process_exit(pid))
            .await
            .expect("resolved");
    }
}
