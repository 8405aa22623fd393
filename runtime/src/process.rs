//! Whether a process we recorded is still the one we recorded. A pid alone is not enough:
//! after the process ends the kernel hands the number to the next process, and a signal
//! meant for a monitor would reach a stranger. A process is known by its pid and its start
//! time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot), which together never
//! repeat. A zombie has ended: it counts as gone.

use std::fmt;
use std::str::FromStr;

/// One process, by pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: i32,
    /// Clock ticks after boot at which the process started.
    pub start_time: u64,
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after) = text.rsplit_once(')')?;
    let mut fields = after.split_ascii_whitespace();
    // Field 3 is the state; field 22 the start time, 19 fields after it.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn ended(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

impl ProcessId {
    /// The live process `pid` is now; `None` when there is none or it has ended.
    pub fn of(pid: i32) -> Option<ProcessId> {
        stat(pid).filter(|s| !ended(s.state)).map(|s| ProcessId {
            pid,
            start_time: s.start_time,
        })
    }

    /// This process, as others see it.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(std::process::id() as i32)
    }

    /// True while the very process recorded runs: same pid, same start time, not ended.
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_time == self.start_time && !ended(s.state))
    }

    /// Sends `signal` only if the recorded process still runs; false when it did not.
    /// The check and the signal are not one step, but a pid is reused only after its
    /// process has been reaped, and the window between them is microseconds.
    pub fn signal(&self, signal: i32) -> bool {
        if !self.is_alive() {
            return false;
        }
        // SAFETY: kill with a positive pid and a signal number.
        unsafe { libc::kill(self.pid, signal) == 0 }
    }

    /// A pidfd for the recorded process, readable once it exits; `None` when it is gone.
    /// The descriptor refers to one process for good, so identity is checked once it is
    /// open: a pid reused before the open is caught by the start time.
    pub fn pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the descriptor was just returned to us and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        self.is_alive().then_some(fd)
    }

    /// Waits up to `timeout` for the process to end; false if it still runs.
    pub fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.is_alive() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }
}

/// The form kept in pid files: `<pid> <start time>`.
impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.pid, self.start_time)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("process record {0:?}: expected \"<pid> <start time>\"")]
pub struct BadProcessRecord(String);

impl FromStr for ProcessId {
    type Err = BadProcessRecord;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadProcessRecord(s.chars().take(64).collect());
        let mut parts = s.split_ascii_whitespace();
        let pid: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let start_time: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if pid <= 0 || parts.next().is_some() {
            return Err(bad());
        }
        Ok(ProcessId { pid, start_time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    /// True when a process `pid` exists and has not ended, whoever it is.
    fn pid_running(pid: i32) -> bool {
        stat(pid).is_some_and(|s| !ended(s.state))
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("42 (truncated) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_is_alive_and_a_different_start_time_is_not() {
        let me = ProcessId::current().expect("own stat");
        assert!(me.is_alive());
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_alive(),
            "a reused pid must not pass for the recorded process"
        );
        assert!(!other.signal(0));
    }

    #[test]
    fn a_zombie_is_gone_and_a_reaped_process_is_gone() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let id = ProcessId::of(pid);
        // Not reaped yet: a zombie once it exits.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!pid_running(pid), "a zombie counts as ended");
        if let Some(id) = id {
            assert!(!id.is_alive());
            assert!(id.wait_gone(Duration::from_millis(10)));
        }
        child.wait().unwrap();
        assert!(ProcessId::of(pid).is_none());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let id = ProcessId {
            pid: 77,
            start_time: 12345,
        };
        assert_eq!(id.to_string().parse::<ProcessId>().unwrap(), id);
        assert_eq!("77 12345\n".parse::<ProcessId>().unwrap(), id);
        for bad in ["", "77", "x 1", "0 5", "-3 5", "1 2 3", "77 -1"] {
            assert!(bad.parse::<ProcessId>().is_err(), "{bad:?}");
        }
    }
}
