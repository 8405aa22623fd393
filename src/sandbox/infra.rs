//! The infra process of a pod with a shared PID namespace: PID 1 of that namespace, whose
//! only job is reaping the zombies of the pod.
//!
//! Every container of the pod sees it as /proc/1, and one allowed to ptrace can open its
//! root, cwd and descriptors and read its command line. So PID 1 holds nothing: it is
//! re-executed with a short argv and an empty environment, takes a private mount namespace
//! whose root is an empty read-only tmpfs, drops every capability (bounding set included),
//! runs as 65534 with no_new_privs and is not dumpable.
//!
//! Three processes take part, all this binary dispatched as `criox pod-infra` before any
//! thread starts (so forking is safe):
//! - the launcher joins the pod's infra cgroup and namespaces, forks the watcher and exits;
//! - the watcher (outside the PID namespace, invisible to the containers) creates the
//!   namespace, forks PID 1, reports its pid once PID 1 says it is locked down, reaps it,
//!   and kills it when the pod's directory is gone (a state wiped without
//!   RemovePodSandbox), so no pod leaves a process behind;
//! - PID 1 locks itself down and reaps.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

/// The hidden subcommand name dispatched in main.rs.
pub const SUBCOMMAND: &str = "pod-infra";
/// PID 1's own mode; its whole argv is `criox pod-infra --pid1`.
const PID1_FLAG: &str = "--pid1";
/// The descriptor on which PID 1 reports that it is locked down (or why not).
const READY_FD: i32 = 3;
/// The overflow user and group: owns nothing on the host.
const NOBODY: u32 = 65534;

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("cannot start the pod infra process: {0}")]
    Spawn(std::io::Error),
    #[error("the pod infra process failed: {0}")]
    Failed(String),
}

/// How often the watcher checks that its pod still exists.
const POD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the infra process in the namespaces pinned at `namespaces` (net, ipc, uts, any
/// of them absent meaning the host's) and in the cgroups whose `cgroup.procs` files are
/// `cgroups`, and returns the host pid of its PID 1 once it is locked down.
pub fn spawn(
    namespaces: &[(&str, &Path)],
    pod_dir: &Path,
    cgroups: &[PathBuf],
) -> Result<i32, InfraError> {
    // The running image rather than the file at its path, which an upgrade may have
    // replaced or removed since the daemon started.
    let mut cmd = std::process::Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "criox");
    cmd.arg(SUBCOMMAND).arg("--pod-dir").arg(pod_dir);
    for procs in cgroups {
        cmd.arg("--cgroup").arg(procs);
    }
    for (kind, path) in namespaces {
        cmd.arg(format!("--{kind}")).arg(path);
    }
    // Returns once the launcher has exited and the watcher has closed its output.
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(InfraError::Spawn)?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if !output.status.success() || !stderr.is_empty() {
        return Err(InfraError::Failed(format!("{}: {stderr}", output.status)));
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| InfraError::Failed("printed no pid".to_string()))
}

/// True while `pid` runs this binary's infra (not a zombie, not a reused pid).
pub fn is_running(pid: i32) -> bool {
    argv(pid)
        .get(1)
        .is_some_and(|arg| arg == SUBCOMMAND.as_bytes())
}

fn argv(pid: i32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(<[u8]>::to_vec)
        .collect()
}

/// The parent of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Kills the infra process; with PID 1 gone the kernel kills the rest of the namespace,
/// and its watcher exits. Returns once both are gone (or after a second), so the pod's
/// cgroup can be removed.
pub fn kill(pid: i32) {
    if !is_running(pid) {
        return;
    }
    let watcher = parent_of(pid).filter(|w| *w > 1 && is_running(*w));
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    for _ in 0..200 {
        if !is_running(pid) && !watcher.is_some_and(is_running) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `criox pod-infra --pod-dir D [--cgroup PROCS]... [--user P] [--net P] [--ipc P]
/// [--uts P]`, or `criox pod-infra --pid1`.
pub fn main(args: Vec<OsString>) -> i32 {
    if args.get(1).is_some_and(|a| a == PID1_FLAG) {
        pid1();
    }
    match launch(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("criox pod-infra: {message}");
            1
        }
    }
}

fn launch(args: Vec<OsString>) -> Result<(), String> {
    let mut joins: Vec<(CloneFlags, PathBuf)> = Vec::new();
    let mut cgroups = Vec::new();
    let mut pod_dir = None;
    let mut iter = args.into_iter().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or(format!("{flag:?} needs a path"))?;
        let kind = match flag.to_str() {
            Some("--pod-dir") => {
                pod_dir = Some(PathBuf::from(value));
                continue;
            }
            Some("--cgroup") => {
                cgroups.push(PathBuf::from(value));
                continue;
            }
            Some("--user") => CloneFlags::CLONE_NEWUSER,
            Some("--net") => CloneFlags::CLONE_NEWNET,
            Some("--ipc") => CloneFlags::CLONE_NEWIPC,
            Some("--uts") => CloneFlags::CLONE_NEWUTS,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        joins.push((kind, PathBuf::from(value)));
    }
    let pod_dir = pod_dir.ok_or("--pod-dir is required")?;
    // Joined before forking, so PID 1 never runs outside the pod's cgroup.
    let me = std::process::id().to_string();
    for procs in &cgroups {
        std::fs::write(procs, &me).map_err(|e| format!("join {}: {e}", procs.display()))?;
    }
    for (kind, path) in &joins {
        let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        nix::sched::setns(file, *kind).map_err(|e| format!("join {}: {e}", path.display()))?;
    }
    // Host root has no id in the pod's user namespace, and execve would take the
    // capabilities of an unmapped user: PID 1 could not make its mount namespace. The
    // namespace's root is who it starts as.
    if joins
        .iter()
        .any(|(kind, _)| *kind == CloneFlags::CLONE_NEWUSER)
    {
        let root = (Gid::from_raw(0), Uid::from_raw(0));
        nix::unistd::setresgid(root.0, root.0, root.0)
            .map_err(|e| format!("become the user namespace's root group: {e}"))?;
        nix::unistd::setresuid(root.1, root.1, root.1)
            .map_err(|e| format!("become the user namespace's root: {e}"))?;
    }
    // SAFETY: this process is single-threaded (dispatched before any runtime starts).
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => Ok(()),
        ForkResult::Child => {
            let code = match watch(&pod_dir) {
                Ok(()) => 0,
                Err(message) => {
                    eprintln!("criox pod-infra: {message}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// The watcher: makes the PID namespace and its PID 1, prints PID 1's host pid, then
/// stays until PID 1 ends or the pod's directory goes.
fn watch(pod_dir: &Path) -> Result<(), String> {
    let _ = nix::unistd::setsid();
    // Whatever the daemon let this process inherit (a socket-activated listener) stays
    // with the daemon.
    close_from(3);
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    let _ = sigchld.thread_block();
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("create PID namespace: {e}"))?;
    let (ready_read, ready_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let exe = CString::new("/proc/self/exe").expect("no NUL");
    let argv = [
        CString::new("criox").expect("no NUL"),
        CString::new(SUBCOMMAND).expect("no NUL"),
        CString::new(PID1_FLAG).expect("no NUL"),
    ];
    let env: [CString; 0] = [];
    // SAFETY: single-threaded; the child only calls async-signal-safe functions before
    // execve.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            );
            // SAFETY: plain descriptor moves on descriptors this process owns.
            unsafe {
                if let Ok(null) = null {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                }
                if ready_write.as_raw_fd() == READY_FD {
                    libc::fcntl(READY_FD, libc::F_SETFD, 0);
                } else {
                    libc::dup2(ready_write.as_raw_fd(), READY_FD);
                }
            }
            let _ = nix::unistd::execve(&exe, &argv, &env);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_write);
    let mut report = String::new();
    let _ = File::from(ready_read).read_to_string(&mut report);
    if report != "ok" {
        let _ = waitpid(child, None);
        return Err(if report.is_empty() {
            "PID 1 ended before locking itself down".to_string()
        } else {
            report
        });
    }
    let mut out = std::io::stdout();
    writeln!(out, "{child}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    // The daemon waits for the end of this output.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: duplicating a descriptor this process owns onto the standard ones.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let timeout = libc::timespec {
        tv_sec: POD_CHECK_INTERVAL.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: sigtimedwait on a valid, initialised set and timeout.
        unsafe { libc::sigtimedwait(sigchld.as_ref(), std::ptr::null_mut(), &timeout) };
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            _ => return Ok(()),
        }
        if !pod_dir.exists() {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Ok(());
        }
    }
}

/// PID 1: locks itself down, reports on READY_FD, then reaps until told to stop.
fn pid1() -> ! {
    close_from(READY_FD + 1);
    // Named after its job rather than after /proc/self/exe, which it was executed as.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"pod-infra".as_ptr(), 0, 0, 0) };
    // SAFETY: READY_FD was set up by the watcher for this process alone.
    let mut ready = unsafe { File::from_raw_fd(READY_FD) };
    if let Err(message) = lock_down() {
        let _ = ready.write_all(message.as_bytes());
        std::process::exit(1);
    }
    let _ = ready.write_all(b"ok");
    drop(ready);
    for fd in 0..3 {
        // SAFETY: closing the standard descriptors; nothing here writes to them again.
        unsafe { libc::close(fd) };
    }
    reap_forever()
}

/// Empty root, no capabilities, no privileges to regain, nobody's ids, not dumpable.
fn lock_down() -> Result<(), String> {
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(63);
    empty_root()?;
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(format!("drop capability {cap} from the bounding set: {e}"));
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let (gid, uid) = (Gid::from_raw(NOBODY), Uid::from_raw(NOBODY));
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    // Leaving uid 0 cleared the permitted and effective sets; the inheritable one stays.
    criox_runtime::clear_capability_sets().map_err(|e| format!("capset: {e}"))?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(format!("dumpable: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A private mount namespace whose root is an empty, read-only tmpfs; the host's mounts
/// are detached from it.
fn empty_root() -> Result<(), String> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("create mount namespace: {e}"))?;
    let none = None::<&str>;
    nix::mount::mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("make mounts private: {e}"))?;
    // Any directory serves as the mount point: the namespace is private and it is left.
    let base = Path::new("/proc");
    let sealed = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        sealed,
        Some("size=4k,nr_inodes=2,mode=0555"),
    )
    .map_err(|e| format!("mount an empty root: {e}"))?;
    nix::unistd::chdir(base).map_err(|e| format!("enter the empty root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    // The old root now lies on top of the new one at "/"; detaching it leaves the tmpfs.
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| format!("detach the host's root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    nix::mount::mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | sealed,
        none,
    )
    .map_err(|e| format!("make the root read-only: {e}"))
}

/// Closes every descriptor from `first` up.
fn close_from(first: i32) {
    // SAFETY: close_range only closes descriptors; nothing here uses those above `first`.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: the descriptors /proc lists (the listing's own closes last).
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first)
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

fn reap_forever() -> ! {
    let all = SigSet::all();
    let _ = all.thread_block();
    loop {
        // Blocked signals are queued even for a namespace's init, so a TERM from a
        // container ends the pod as it would end a pause process.
        // SAFETY: sigwaitinfo on a valid, initialised set.
        let signal = unsafe { libc::sigwaitinfo(all.as_ref(), std::ptr::null_mut()) };
        if matches!(signal, libc::SIGTERM | libc::SIGINT) {
            std::process::exit(0);
        }
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }
}
