//! The infra process of a pod with a shared PID namespace: this binary re-executed as
//! `criox pod-infra`, joining the pod's pinned namespaces, creating the PID namespace and
//! forking its PID 1, whose only job is reaping the zombies of the pod.
//!
//! The re-exec keeps the fork out of the multi-threaded daemon: `pod-infra` is dispatched
//! before any thread is started.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid};

/// The hidden subcommand name dispatched in main.rs.
pub const SUBCOMMAND: &str = "pod-infra";

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("cannot start the pod infra process: {0}")]
    Spawn(std::io::Error),
    #[error("the pod infra process failed: {0}")]
    Failed(String),
}

/// How often PID 1 checks that its pod still exists.
const POD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the infra process in the namespaces pinned at `namespaces` (net, ipc, uts, any
/// of them absent meaning the host's) and returns the host pid of its PID 1. The process
/// ends by itself once `pod_dir` is gone, so a pod whose state was wiped without a
/// RemovePodSandbox leaves no process behind.
pub fn spawn(namespaces: &[(&str, &Path)], pod_dir: &Path) -> Result<i32, InfraError> {
    let exe = std::env::current_exe().map_err(InfraError::Spawn)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(SUBCOMMAND).arg("--pod-dir").arg(pod_dir);
    for (kind, path) in namespaces {
        cmd.arg(format!("--{kind}")).arg(path);
    }
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(InfraError::Spawn)?;
    if !output.status.success() {
        return Err(InfraError::Failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| InfraError::Failed("printed no pid".to_string()))
}

/// True while `pid` runs this binary's infra loop (not a zombie, not a reused pid).
pub fn is_running(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline
        .split(|b| *b == 0)
        .nth(1)
        .is_some_and(|arg| arg == SUBCOMMAND.as_bytes())
}

/// Kills the infra process; with PID 1 gone the kernel kills the rest of the namespace.
pub fn kill(pid: i32) {
    if is_running(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        for _ in 0..200 {
            if !is_running(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// `criox pod-infra [--net P] [--ipc P] [--uts P]`; prints the PID 1's host pid.
pub fn main(args: Vec<OsString>) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("criox pod-infra: {message}");
            1
        }
    }
}

fn run(args: Vec<OsString>) -> Result<(), String> {
    let mut joins: Vec<(CloneFlags, PathBuf)> = Vec::new();
    let mut pod_dir = None;
    let mut iter = args.into_iter().skip(1);
    while let Some(flag) = iter.next() {
        if flag == "--pod-dir" {
            pod_dir = Some(PathBuf::from(iter.next().ok_or("--pod-dir needs a path")?));
            continue;
        }
        let kind = match flag.to_str() {
            Some("--net") => CloneFlags::CLONE_NEWNET,
            Some("--ipc") => CloneFlags::CLONE_NEWIPC,
            Some("--uts") => CloneFlags::CLONE_NEWUTS,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let path = iter.next().ok_or(format!("{flag:?} needs a path"))?;
        joins.push((kind, PathBuf::from(path)));
    }
    for (kind, path) in &joins {
        let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        nix::sched::setns(file, *kind).map_err(|e| format!("join {}: {e}", path.display()))?;
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("create PID namespace: {e}"))?;
    // SAFETY: this process is single-threaded (dispatched before any runtime starts).
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            let mut out = std::io::stdout();
            writeln!(out, "{child}").map_err(|e| e.to_string())?;
            Ok(())
        }
        ForkResult::Child => reap_forever(pod_dir.as_deref()),
    }
}

fn reap_forever(pod_dir: Option<&Path>) -> ! {
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: duplicating a descriptor we own onto the standard ones.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let all = SigSet::all();
    let _ = all.thread_block();
    let timeout = libc::timespec {
        tv_sec: POD_CHECK_INTERVAL.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: sigtimedwait on a valid, initialised set and timeout.
        let signal = unsafe { libc::sigtimedwait(all.as_ref(), std::ptr::null_mut(), &timeout) };
        match signal {
            libc::SIGTERM | libc::SIGINT => std::process::exit(0),
            -1 if pod_dir.is_some_and(|dir| !dir.exists()) => std::process::exit(0),
            _ => {}
        }
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}
