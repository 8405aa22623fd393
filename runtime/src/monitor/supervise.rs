//! Supervising a created container: its output to the CRI log and attach clients, input
//! from them, log reopen and resize requests, reaping, and the exit record.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::args::MonitorArgs;
use super::attach::Handler;
use super::created::{Created, MonitorError};
use super::cri_log::{CriLog, Stream};
use super::exit_record::ExitRecord;
use super::files;
use super::oom::OomWatcher;
use super::protocol;
use super::stdin::{STDIN_BUFFER, StdinWriter};

/// Everything a client may ask of the monitor.
struct Io {
    log: CriLog,
    stdin: Option<StdinWriter>,
    stdin_once: bool,
    /// stdin_once's close came while input was still waiting: close once it is written.
    close_stdin_when_drained: bool,
    terminal: Option<RawFd>,
}

impl Handler for Io {
    fn reopen_log(&mut self) -> Result<(), String> {
        self.log.reopen().map_err(|e| {
            super::own_log::error(&format!("reopening the CRI log: {e}"));
            e.to_string()
        })
    }

    fn resize(&mut self, rows: u16, cols: u16) -> Result<(), String> {
        let fd = self.terminal.ok_or("the container has no terminal")?;
        super::console::set_window_size(fd, rows, cols).map_err(|e| e.to_string())
    }

    fn stdin(&mut self, data: &[u8]) {
        if let Some(f) = self.stdin.as_mut()
            && f.write(data).is_err()
        {
            self.stdin = None;
        }
    }

    fn stdin_done(&mut self) {
        if self.stdin_once && self.terminal.is_none() {
            self.close_stdin_when_drained = true;
            self.flush_stdin();
        }
    }

    fn stdin_full(&self) -> bool {
        self.stdin.as_ref().is_some_and(StdinWriter::is_full)
    }
}

impl Io {
    /// Writes waiting input; closes stdin when it is gone, or when it is drained and
    /// the client asked for it to be closed.
    fn flush_stdin(&mut self) {
        let Some(f) = self.stdin.as_mut() else {
            return;
        };
        let failed = f.flush().is_err();
        if failed || (self.close_stdin_when_drained && !f.has_pending()) {
            self.stdin = None;
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Reaps children; returns the container's exit (code, signal) once it is reaped.
fn reap(container: i32) -> Option<(i32, Option<i32>)> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == container => {
                result = Some((code, None));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == container => {
                result = Some((128 + sig as i32, Some(sig as i32)));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

/// A created container, with what supervising it needs set up and the monitor confined.
pub(super) struct Supervised {
    created: Created,
    sigfd: SignalFd,
    oom: OomWatcher,
}

impl Supervised {
    pub(super) fn pid(&self) -> i32 {
        self.created.pid
    }
}

/// Sets up what supervising needs while the monitor may still open anything, then confines
/// it. An error leaves the container to be deleted by the caller.
pub(super) fn prepare(id: &str, c: Created) -> Result<Supervised, MonitorError> {
    let sys = |what: &'static str| {
        move |source| MonitorError::Sys {
            id: id.to_string(),
            what,
            source,
        }
    };
    // SIGCHLD is blocked only now: a blocked mask would be inherited by the container.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(sys("sigprocmask"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(sys("signalfd"))?;
    let oom = OomWatcher::for_pid(c.pid);
    super::confine::confine().map_err(|source| MonitorError::Confine {
        id: id.to_string(),
        source,
    })?;
    Ok(Supervised {
        created: c,
        sigfd,
        oom,
    })
}

/// Moves the container's output to the log and attach clients until it has exited, then
/// records the exit.
pub(super) fn supervise(a: &MonitorArgs, s: Supervised) -> Result<(), MonitorError> {
    let id = a.request.id.as_str();
    let Supervised {
        created: c,
        sigfd,
        mut oom,
    } = s;
    let Created {
        pid,
        mut outputs,
        stdin,
        terminal,
        log,
        mut attach,
    } = c;
    let mut io = Io {
        log,
        stdin: stdin.map(|f| StdinWriter::new(f, STDIN_BUFFER)),
        stdin_once: a.request.stdin_once,
        close_stdin_when_drained: false,
        terminal: terminal.as_ref().map(|t| t.as_raw_fd()),
    };
    for (f, _) in &outputs {
        set_nonblocking(f.as_raw_fd());
    }
    let mut exit = reap(pid);
    let mut exited_at: Option<Instant> = exit.map(|_| Instant::now());
    let mut buf = vec![0u8; 32 * 1024];
    let mut log_failing = false;

    loop {
        if let Some(t) = exited_at
            && (outputs.is_empty() || t.elapsed() > Duration::from_secs(2))
        {
            break;
        }
        let mut fds = vec![
            libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: attach.listener_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: oom.fd().unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let first_output = fds.len();
        for (f, _) in &outputs {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // Waiting input is written when the container's stdin can take more.
        let stdin_slot = io.stdin.as_ref().filter(|s| s.has_pending()).map(|s| {
            fds.push(libc::pollfd {
                fd: s.fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
            fds.len() - 1
        });
        let first_client = fds.len();
        for fd in attach.client_fds(io.stdin_full()) {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // After the exit, output still buffered in pipes is drained; a quiet period ends it
        // (a process that escaped the container may hold the pipe forever).
        let timeout = if exited_at.is_some() { 200 } else { -1 };
        // SAFETY: fds is a valid array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(MonitorError::Sys {
                id: id.to_string(),
                what: "poll",
                source: nix::Error::last(),
            });
        }
        if n == 0 && exited_at.is_some() {
            break;
        }
        if fds[0].revents != 0 {
            while let Ok(Some(_)) = sigfd.read_signal() {}
            if exit.is_none() {
                exit = reap(pid);
                if exit.is_some() {
                    exited_at = Some(Instant::now());
                }
            } else {
                reap(pid);
            }
        }
        if fds[1].revents != 0 {
            attach.accept();
        }
        if fds[2].revents != 0 {
            oom.on_event();
        }
        let mut closed = Vec::new();
        if stdin_slot.is_some_and(|i| fds[i].revents != 0) {
            io.flush_stdin();
        }
        let last_output = stdin_slot.unwrap_or(first_client);
        for (i, pfd) in fds[first_output..last_output].iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let (file, stream) = &mut outputs[i];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => {
                        closed.push(i);
                        break;
                    }
                    Ok(n) => {
                        // One line per run of failures: a full disk fails every write.
                        match io.log.write(*stream, &buf[..n]) {
                            Ok(_) => log_failing = false,
                            Err(e) if !log_failing => {
                                log_failing = true;
                                super::own_log::error(&format!("container {id}: CRI log: {e}"));
                            }
                            Err(_) => {}
                        }
                        let kind = match stream {
                            Stream::Stdout => protocol::STDOUT,
                            Stream::Stderr => protocol::STDERR,
                        };
                        attach.broadcast(kind, &buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // A pty master reads EIO once the last slave is closed.
                    Err(_) => {
                        closed.push(i);
                        break;
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        let client_events: Vec<RawFd> = fds[first_client..]
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| p.fd)
            .collect();
        for fd in client_events {
            attach.on_readable(fd, &mut io);
        }
    }

    let (code, signal) = exit.unwrap_or((255, None));
    let record = ExitRecord::now(code, signal, oom.oom_killed());
    let written = record
        .write(&a.request.state_dir)
        .map_err(|source| MonitorError::Exit {
            id: id.to_string(),
            source,
        });
    drop(attach);
    drop(terminal);
    let _ = std::fs::remove_file(a.request.state_dir.join(files::PID_FILE));
    written
}
