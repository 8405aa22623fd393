//! The monitor's life: wait for the go, create the container, confine, report, supervise.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use serde::{Deserialize, Serialize};

use super::args::MonitorArgs;
use super::attach::AttachServer;
use super::console::ConsoleSocket;
use super::created::{Created, MonitorError};
use super::cri_log::{CriLog, Stream};
use super::files;
use super::supervise;
use crate::backend::{Backend, BackendError, CreateOptions, Stdio};
use crate::bundle;

/// The creation result the monitor writes to its sync descriptor, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The init's start time (see [`crate::ProcessId`]), read while this monitor, its
    /// reaper, keeps the pid from being reused: with the pid it names the init for good,
    /// also once the monitor is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
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
            start_time: None,
            kind: Some(kind.to_string()),
            error: Some(e.to_string()),
        }
    }
}

pub fn run(a: MonitorArgs) -> Result<(), MonitorError> {
    let backend = crate::choice::in_process(&a.runtime, &a.runtime_root, a.systemd_cgroup);
    // SAFETY: the launcher handed this descriptor to us alone.
    let mut sync = a.sync_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(s) = &sync {
        // Runtimes that exec (runc) must not carry the descriptor into the container.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // Joined before the go word is awaited: the migration's wait overlaps the launcher's
    // own work on the bundle.
    let joined = join_cgroups(&a.request.id, &a.join_cgroups);
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
    // Confined before anyone hears of the container: a monitor that cannot confine itself
    // fails the creation instead of supervising with everything it held while creating.
    let created = joined
        .and_then(|()| create(&a, backend.as_ref(), &mut made))
        .and_then(|c| {
            supervise::prepare(&a.request.id, c).inspect_err(|_| {
                let _ = backend.delete(&a.request.id, true);
            })
        });
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
        Ok(s) => CreateReport {
            pid: Some(s.pid()),
            start_time: crate::process::ProcessId::of(s.pid()).map(|p| p.start_time),
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
    let supervised = created?;
    // Creation touched far more heap and stack than supervising needs. Given back once the
    // launcher has its report, so that CreateContainer does not wait for it; the filter
    // confine installed allows what it calls (open and read of /proc/self/maps, madvise).
    super::trim::release();
    supervise::supervise(&a, supervised)
}

/// Moves this process into each cgroup v1 directory. The monitor is single-threaded here,
/// so writing "0" to `tasks` moves all of it, without the global lock (and its RCU grace
/// period) that a write to `cgroup.procs` takes. The vendored libcgroups moves
/// libcontainer's intermediate process the same way (`third_party/libcgroups`).
fn join_cgroups(id: &str, dirs: &[std::path::PathBuf]) -> Result<(), MonitorError> {
    for dir in dirs {
        let file = dir.join("tasks");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| f.write_all(b"0"))
            .map_err(crate::error::io_err(
                id,
                "joining the monitor cgroup",
                &file,
            ))?;
    }
    Ok(())
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
    let io = |what: &'static str, path: &Path| crate::error::io_err(id, what, path.to_path_buf());
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
