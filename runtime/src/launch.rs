//! Starting a container's monitor in two steps: the monitor process is started (exec,
//! detach) while the caller still prepares the bundle, and creates the container once told
//! the bundle is ready. The two halves run on different cores.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::error::{RuntimeError, io_err};
use crate::monitor::{CreateReport, MonitorArgs, RuntimeChoice};
use crate::request::{LaunchRequest, Launched, MonitorCgroup};

/// Where the monitor finds the report pipe and the go pipe.
const SYNC_FD: RawFd = 3;
const GO_FD: RawFd = 4;

/// A monitor that has started and waits for the bundle. Dropping it without
/// [`PendingLaunch::create`] makes the monitor leave without creating anything.
pub struct PendingLaunch {
    id: String,
    state_dir: PathBuf,
    go: Option<File>,
    report: Option<File>,
    /// The monitor's first process (it detaches and leaves).
    first: Option<libc::pid_t>,
}

/// Starts the monitor for `req` with `exe monitor …`; it waits for [`PendingLaunch::create`].
/// It is born in `cgroup`'s cgroup2 directory (see [`crate::spawn`]) and moves itself into
/// the v1 ones first thing (the monitor's `join_cgroups`).
pub(crate) fn start(
    exe: &Path,
    choice: &RuntimeChoice,
    root: &Path,
    systemd_cgroup: bool,
    req: &LaunchRequest,
    cgroup: &MonitorCgroup,
) -> Result<PendingLaunch, RuntimeError> {
    let id = req.id.as_str();
    let failed = |what: &str, e: &dyn std::fmt::Display| RuntimeError::Failed {
        id: id.to_string(),
        op: "launch",
        message: format!("{what}: {e}"),
    };
    let born_in = cgroup
        .unified
        .as_ref()
        .map(|d| crate::spawn::open_cgroup(d).map_err(io_err(id, "opening the monitor cgroup", d)))
        .transpose()?;
    let args = MonitorArgs {
        request: req.clone(),
        runtime: choice.clone(),
        runtime_root: root.to_path_buf(),
        systemd_cgroup,
        sync_fd: Some(SYNC_FD),
        go_fd: Some(GO_FD),
        join_cgroups: cgroup.v1.clone(),
    };
    let (report_read, report_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| failed("report pipe", &e))?;
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| failed("go pipe", &e))?;
    // Above the descriptors the child moves them to, so that neither dup2 overwrites the
    // other's source.
    let report_write = above(report_write, GO_FD + 1, id)?;
    let go_read = above(go_read, GO_FD + 1, id)?;
    let fds = [
        (report_write.as_raw_fd(), SYNC_FD),
        (go_read.as_raw_fd(), GO_FD),
    ];
    let exe_c = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| failed("monitor path", &"contains a NUL byte"))?;
    let argv = ["criox".into(), "monitor".into()]
        .into_iter()
        .chain(args.to_args())
        .map(|a: std::ffi::OsString| {
            CString::new(a.into_encoded_bytes())
                .map_err(|_| failed("monitor argument", &"contains a NUL byte"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pid = crate::spawn::spawn(&exe_c, &argv, &fds, born_in.as_ref().map(|f| f.as_fd()))
        .map_err(io_err(id, "running monitor", exe))?;
    drop(report_write);
    drop(go_read);
    Ok(PendingLaunch {
        id: req.id.clone(),
        state_dir: req.state_dir.clone(),
        go: Some(File::from(go_write)),
        report: Some(File::from(report_read)),
        first: Some(pid),
    })
}

fn above(fd: OwnedFd, min: RawFd, id: &str) -> Result<OwnedFd, RuntimeError> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(RuntimeError::Failed {
            id: id.to_string(),
            op: "launch",
            message: format!("dup: {}", std::io::Error::last_os_error()),
        });
    }
    // SAFETY: `new` was just returned by fcntl and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl PendingLaunch {
    /// Tells the monitor the bundle is ready and waits until the container is created.
    pub fn create(mut self) -> Result<Launched, RuntimeError> {
        let id = self.id.clone();
        let mut go = self.go.take().expect("go pipe held until create");
        // A monitor that died before reading leaves the write failing; its report (or
        // its absence) below says what happened.
        let _ = go.write_all(b"\n");
        drop(go);
        // The first process leaves at once; the detached second one reports.
        reap(self.first.take());
        let report = self.report.take().expect("report pipe held until create");
        let mut line = String::new();
        BufReader::new(report).read_line(&mut line).map_err(io_err(
            &id,
            "reading monitor report",
            &self.state_dir,
        ))?;
        let report: CreateReport =
            serde_json::from_str(line.trim()).map_err(|_| RuntimeError::Failed {
                id: id.clone(),
                op: "create",
                message: "the monitor exited without reporting".to_string(),
            })?;
        match (report.pid, report.kind.as_deref()) {
            (Some(pid), _) => {
                let monitor = crate::monitor_client::monitor_process(&self.state_dir);
                Ok(Launched {
                    pid,
                    monitor_pid: monitor.map_or(0, |m| m.pid),
                    monitor,
                    init: report
                        .start_time
                        .map(|start_time| crate::process::ProcessId { pid, start_time }),
                })
            }
            (None, kind) => {
                let message = report.error.unwrap_or_default();
                Err(match kind {
                    Some("already_exists") => RuntimeError::AlreadyExists { id },
                    Some("not_found") => RuntimeError::NotFound { id },
                    Some("invalid") => RuntimeError::InvalidArgument { id, message },
                    _ => RuntimeError::Failed {
                        id,
                        op: "create",
                        message,
                    },
                })
            }
        }
    }
}

impl Drop for PendingLaunch {
    fn drop(&mut self) {
        // Without the go byte the monitor reads end of file and leaves; the first process
        // is reaped here so that no zombie stays behind.
        self.go.take();
        reap(self.first.take());
    }
}

/// Waits for the monitor's first process, which leaves as soon as it has detached; once
/// only, since its pid may belong to another child afterwards.
fn reap(pid: Option<libc::pid_t>) {
    let Some(pid) = pid else { return };
    loop {
        // SAFETY: waiting for a child this process started and nothing else reaps.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}
