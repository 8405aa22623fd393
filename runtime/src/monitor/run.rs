//! The monitor's life: prepare stdio, create the container, report, supervise, record exit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use serde::{Deserialize, Serialize};

use super::args::MonitorArgs;
use super::attach::{AttachServer, Handler};
use super::console::{ConsoleError, ConsoleSocket};
use super::cri_log::{CriLog, CriLogError, Stream};
use super::exit_record::{ExitRecord, ExitRecordError};
use super::files;
use super::oom::OomWatcher;
use super::protocol;
use super::stdin::{STDIN_BUFFER, StdinWriter};
use crate::backend::{Backend, BackendError, CreateOptions, Stdio};
use crate::bundle;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("container {id}: {what} {path}: {source}")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {source}")]
    Console { id: String, source: ConsoleError },
    #[error("container {id}: {source}")]
    Log { id: String, source: CriLogError },
    #[error("container {id}: {source}")]
    Exit { id: String, source: ExitRecordError },
    #[error("container {id}: {what}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::Error,
    },
    #[error("container {id}: {source}")]
    RootFlags {
        id: String,
        source: super::root_flags::RootFlagsError,
    },
}

/// The creation result the monitor writes to its sync descriptor, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// `already_exists`, `invalid`, `not_found` or `failed`, with `error` the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CreateReport {
    fn from_error(e: &MonitorError) -> Self {
        let kind = match e {
            MonitorError::Backend(BackendError::AlreadyExists { .. }) => "already_exists",
            MonitorError::Backend(BackendError::InvalidBundle { .. }) => "invalid",
            MonitorError::Backend(BackendError::NotFound { .. }) => "not_found",
            MonitorError::Log { .. } => "invalid",
            _ => "failed",
        };
        CreateReport {
            pid: None,
            kind: Some(kind.to_string()),
            error: Some(e.to_string()),
        }
    }
}

/// The container's streams as the monitor holds them.
struct Created {
    pid: i32,
    outputs: Vec<(File, Stream)>,
    stdin: Option<File>,
    /// The pty master, for resizing.
    terminal: Option<File>,
    log: CriLog,
    attach: AttachServer,
}

pub fn run(a: MonitorArgs) -> Result<(), MonitorError> {
    let backend = crate::choice::in_process(&a.runtime, &a.runtime_root);
    // SAFETY: the launcher handed this descriptor to us alone.
    let mut sync = a.sync_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(s) = &sync {
        // Runtimes that exec (runc) must not carry the descriptor into the container.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if let Some(fd) = a.go_fd {
        // SAFETY: the launcher handed this descriptor to us alone; it is closed on return.
        let mut go = unsafe { File::from_raw_fd(fd) };
        let mut byte = [0u8; 1];
        let read = loop {
            match go.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        if !matches!(read, Ok(1)) {
            // The launcher gave up on the container before it was created: nothing was
            // made, and no one waits for a report.
            return Ok(());
        }
    }
    let mut made = Made::default();
    let created = create(&a, backend.as_ref(), &mut made);
    // A failed creation is reported to the launcher; from here on no one else hears.
    if created.is_ok() {
        super::own_log::open(&a.request.state_dir);
    }
    // What a failed creation made is removed before the launcher hears of it.
    if created.is_err() {
        if made.pid_file {
            let _ = std::fs::remove_file(a.request.state_dir.join(files::PID_FILE));
        }
        if let (true, Some(log)) = (made.log, &a.request.log_path) {
            let _ = std::fs::remove_file(log);
        }
        if made.dir {
            let _ = std::fs::remove_dir(&a.request.state_dir);
        }
    }
    let report = match &created {
        Ok(c) => CreateReport {
            pid: Some(c.pid),
            kind: None,
            error: None,
        },
        Err(e) => CreateReport::from_error(e),
    };
    if let Some(s) = sync.as_mut() {
        let mut line = serde_json::to_vec(&report).unwrap_or_default();
        line.push(b'\n');
        let _ = s.write_all(&line);
    }
    drop(sync);
    supervise(&a, created?)
}

/// What a failed creation must remove again: only what this monitor made.
#[derive(Default)]
struct Made {
    dir: bool,
    pid_file: bool,
    log: bool,
}

fn create(
    a: &MonitorArgs,
    backend: &dyn Backend,
    made: &mut Made,
) -> Result<Created, MonitorError> {
    let id = a.request.id.as_str();
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| MonitorError::Io {
            id: id.to_string(),
            what,
            path,
            source,
        }
    };
    let sys = |what: &'static str| {
        move |source| MonitorError::Sys {
            id: id.to_string(),
            what,
            source,
        }
    };
    bundle::check_id(id)?;
    let spec = bundle::load(id, &a.request.bundle, true)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal != a.request.terminal {
        return Err(BackendError::InvalidBundle {
            id: id.to_string(),
            field: "process.terminal".to_string(),
            reason: format!(
                "is {terminal}, the request asked for terminal={}",
                a.request.terminal
            ),
        }
        .into());
    }
    let dir = &a.request.state_dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io("state directory", dir))?;
        made.dir = true;
    }
    let pid_file = dir.join(files::PID_FILE);
    if dir.join(files::EXIT_FILE).exists() || files::live_monitor(dir).is_some() {
        return Err(BackendError::AlreadyExists { id: id.to_string() }.into());
    }
    // With its start time, so that a later reader never takes a process that got the
    // same pid after this monitor left for it.
    let me = crate::process::ProcessId::current()
        .map(|p| p.to_string())
        .unwrap_or_else(|| std::process::id().to_string());
    std::fs::write(&pid_file, me).map_err(io("pid file", &pid_file))?;
    made.pid_file = true;
    made.log = a.request.log_path.as_ref().is_some_and(|l| !l.exists());
    let log = CriLog::open(a.request.log_path.as_deref()).map_err(|source| MonitorError::Log {
        id: id.to_string(),
        source,
    })?;
    let sock = dir.join(files::SOCKET);
    let attach = AttachServer::bind(&sock).map_err(io("monitor socket", &sock))?;

    let created = if terminal {
        let console = ConsoleSocket::bind(&dir.join(files::CONSOLE_SOCKET)).map_err(|source| {
            MonitorError::Console {
                id: id.to_string(),
                source,
            }
        })?;
        let devnull = File::open("/dev/null").map_err(io("open", Path::new("/dev/null")))?;
        let pid = backend.create(CreateOptions {
            id,
            bundle: &a.request.bundle,
            pid_file: None,
            console_socket: Some(console.path()),
            stdio: Stdio {
                stdin: Some(
                    devnull
                        .try_clone()
                        .map_err(io("dup", Path::new("/dev/null")))?
                        .into(),
                ),
                stdout: Some(
                    devnull
                        .try_clone()
                        .map_err(io("dup", Path::new("/dev/null")))?
                        .into(),
                ),
                stderr: Some(devnull.into()),
            },
        })?;
        let master = match console.receive(10) {
            Ok(m) => File::from(m),
            Err(source) => {
                let _ = backend.delete(id, true);
                return Err(MonitorError::Console {
                    id: id.to_string(),
                    source,
                });
            }
        };
        let out = master.try_clone().map_err(io("dup", console.path()))?;
        let stdin = if a.request.stdin {
            Some(master.try_clone().map_err(io("dup", console.path()))?)
        } else {
            None
        };
        Created {
            pid,
            outputs: vec![(out, Stream::Stdout)],
            stdin,
            terminal: Some(master),
            log,
            attach,
        }
    } else {
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (stdin_child, stdin_keep): (OwnedFd, Option<File>) = if a.request.stdin {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
            (r, Some(File::from(w)))
        } else {
            let null = File::open("/dev/null").map_err(io("open", Path::new("/dev/null")))?;
            (null.into(), None)
        };
        let pid = backend.create(CreateOptions {
            id,
            bundle: &a.request.bundle,
            pid_file: None,
            console_socket: None,
            stdio: Stdio {
                stdin: Some(stdin_child),
                stdout: Some(out_w),
                stderr: Some(err_w),
            },
        })?;
        Created {
            pid,
            outputs: vec![
                (File::from(out_r), Stream::Stdout),
                (File::from(err_r), Stream::Stderr),
            ],
            stdin: stdin_keep,
            terminal: None,
            log,
            attach,
        }
    };
    if let Err(source) = super::root_flags::restore(created.pid) {
        let _ = backend.delete(id, true);
        return Err(MonitorError::RootFlags {
            id: id.to_string(),
            source,
        });
    }
    Ok(created)
}

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

fn supervise(a: &MonitorArgs, c: Created) -> Result<(), MonitorError> {
    let id = a.request.id.as_str();
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

    let mut oom = OomWatcher::for_pid(c.pid);
    // Creation allocated far more than supervising needs; give it back to the kernel so
    // an idle monitor stays small.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    // Best effort: a kernel without seccomp still gets a working monitor.
    let _ = super::confine::confine();
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
