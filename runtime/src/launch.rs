//! Starting a container's monitor in two steps: the monitor process is started (exec,
//! detach) while the caller still prepares the bundle, and creates the container once told
//! the bundle is ready. The two halves run on different cores.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use crate::error::{RuntimeError, io_err};
use crate::monitor::{CreateReport, MonitorArgs, RuntimeChoice};
use crate::request::{LaunchRequest, Launched};

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
    first: Child,
}

/// Starts the monitor for `req` with `exe monitor …`; it waits for [`PendingLaunch::create`].
/// The monitor joins the cgroups whose `cgroup.procs` files `join` names before its
/// program runs, so it and everything it forks live there from the start.
pub(crate) fn start(
    exe: &Path,
    choice: &RuntimeChoice,
    root: &Path,
    systemd_cgroup: bool,
    req: &LaunchRequest,
    join: &[PathBuf],
) -> Result<PendingLaunch, RuntimeError> {
    let id = req.id.as_str();
    // Made before the fork: the child may not allocate.
    let join: Vec<std::ffi::CString> = join
        .iter()
        .map(|p| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
                RuntimeError::InvalidArgument {
                    id: id.to_string(),
                    message: format!("cgroup path {} contains a NUL byte", p.display()),
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let args = MonitorArgs {
        request: req.clone(),
        runtime: choice.clone(),
        runtime_root: root.to_path_buf(),
        systemd_cgroup,
        sync_fd: Some(SYNC_FD),
        go_fd: Some(GO_FD),
    };
    let pipe = |what: &str| {
        pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Failed {
            id: id.to_string(),
            op: "launch",
            message: format!("{what} pipe: {e}"),
        })
    };
    let (report_read, report_write) = pipe("report")?;
    let (go_read, go_write) = pipe("go")?;
    // Above the descriptors the child moves them to, so that neither dup2 overwrites the
    // other's source.
    let report_write = above(report_write, GO_FD + 1, id)?;
    let go_read = above(go_read, GO_FD + 1, id)?;
    let (report_raw, go_raw) = (report_write.as_raw_fd(), go_read.as_raw_fd());
    let mut cmd = Command::new(exe);
    std::os::unix::process::CommandExt::arg0(&mut cmd, "criox");
    cmd.arg("monitor")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2, open, write, close) between fork and
    // exec; dup2 leaves the new descriptors without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(report_raw, SYNC_FD), (go_raw, GO_FD)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for procs in &join {
                // "0" is the writing process itself, in v1 and v2 alike.
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            Ok(())
        });
    }
    let first = cmd.spawn().map_err(io_err(id, "running monitor", exe))?;
    drop(report_write);
    drop(go_read);
    Ok(PendingLaunch {
        id: req.id.clone(),
        state_dir: req.state_dir.clone(),
        go: Some(File::from(go_write)),
        report: Some(File::from(report_read)),
        first,
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
        let _ = self.first.wait();
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
        let _ = self.first.wait();
    }
}
