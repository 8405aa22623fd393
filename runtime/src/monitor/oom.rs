//! Detects the memory cgroup's OOM killer acting on a container: an eventfd on cgroup v1's
//! memory.oom_control, and the `oom_kill` counters of v1 memory.oom_control or v2
//! memory.events read when the container exits.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub struct OomWatcher {
    counter_file: Option<PathBuf>,
    eventfd: Option<OwnedFd>,
    fired: bool,
}

/// The memory cgroup of `pid`: (v1 memory.oom_control or v2 memory.events path, is_v1).
fn memory_cgroup(pid: i32) -> Option<(PathBuf, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some((
                Path::new("/sys/fs/cgroup/memory")
                    .join(rel)
                    .join("memory.oom_control"),
                true,
            ));
        }
        if controllers.is_empty() {
            v2 = Some(rel.to_string());
        }
    }
    let rel = v2?;
    let root = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup/unified")
    };
    Some((root.join(rel).join("memory.events"), false))
}

fn register_v1_eventfd(oom_control: &Path) -> Option<OwnedFd> {
    let control = std::fs::File::open(oom_control).ok()?;
    // SAFETY: eventfd returns a new descriptor or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a fresh descriptor we own.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let event_control = oom_control.with_file_name("cgroup.event_control");
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    std::fs::write(event_control, line).ok()?;
    Some(efd)
}

fn oom_kill_count(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

impl OomWatcher {
    pub fn for_pid(pid: i32) -> Self {
        let (counter_file, eventfd) = match memory_cgroup(pid) {
            Some((file, true)) => {
                let efd = register_v1_eventfd(&file);
                (Some(file), efd)
            }
            Some((file, false)) => (Some(file), None),
            None => (None, None),
        };
        OomWatcher {
            counter_file,
            eventfd,
            fired: false,
        }
    }

    /// Descriptor that becomes readable on an OOM event (cgroup v1 only).
    pub fn fd(&self) -> Option<RawFd> {
        self.eventfd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Consumes an event. The v1 eventfd also fires when the cgroup goes away, so it counts
    /// only while the cgroup still exists.
    pub fn on_event(&mut self) {
        if let Some(efd) = &self.eventfd {
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into a buffer of 8 bytes.
            unsafe { libc::read(efd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        if self.counter_file.as_ref().is_some_and(|f| f.exists()) {
            self.fired = true;
        } else {
            self.eventfd = None;
        }
    }

    /// Whether the OOM killer acted on the container's cgroup.
    pub fn oom_killed(&self) -> bool {
        self.fired
            || self
                .counter_file
                .as_ref()
                .is_some_and(|f| oom_kill_count(f) > 0)
    }
}
