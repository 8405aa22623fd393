//! Starting a program from the daemon, a multi-threaded process, optionally born in a
//! cgroup2 cgroup.
//!
//! `clone3` with `CLONE_INTO_CGROUP` places the child in its cgroup as it is created. A
//! write to `cgroup.procs` after the fact takes the kernel's global threadgroup lock for
//! writing, which waits for an RCU grace period (several milliseconds) whenever no other
//! migration ran just before; a container start would pay that wait every time.
//!
//! Between `clone3` and `execve` the child, a copy of one thread of a multi-threaded
//! process, makes only async-signal-safe calls: everything it needs is built before.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

/// `CLONE_INTO_CGROUP` (Linux 5.7), not in every libc crate release.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Runs `exe` with `argv` (program name first) and this process's environment, its
/// standard streams on /dev/null and each `(from, to)` of `fds` duplicated onto `to`,
/// in the cgroup2 directory `cgroup` when given. Returns its pid once `exe` runs.
pub(crate) fn spawn(
    exe: &CStr,
    argv: &[CString],
    fds: &[(RawFd, RawFd)],
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<libc::pid_t> {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let null = open_fd(std::path::Path::new("/dev/null"), OFlag::O_RDWR)?;
    // Closed on exec: end of file tells the parent the program runs; an errno comes
    // through it otherwise.
    let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut plan = ChildPlan {
        exe: exe.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        null: null.as_raw_fd(),
        fds,
        err: err_write.as_raw_fd(),
        procs: None,
    };
    let pid = match cgroup {
        Some(dir) => match clone3(CLONE_INTO_CGROUP, Some(dir.as_raw_fd()), &plan) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
                ) =>
            {
                // A kernel before 5.7: the child writes itself into the cgroup, and waits.
                let procs = open_fd_at(dir, c"cgroup.procs", OFlag::O_WRONLY)?;
                plan.procs = Some(procs.as_raw_fd());
                clone3(0, None, &plan)?
            }
            other => other?,
        },
        None => clone3(0, None, &plan)?,
    };
    drop(err_write);
    let mut errno = [0u8; 4];
    let read = read_full(&err_read, &mut errno);
    if read == 4 {
        // SAFETY: waiting for the child this call made.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(pid)
}

/// What the child does, prepared before the clone.
struct ChildPlan<'a> {
    exe: *const libc::c_char,
    argv: *const *const libc::c_char,
    null: RawFd,
    fds: &'a [(RawFd, RawFd)],
    err: RawFd,
    /// A `cgroup.procs` file to write "0" to, where `CLONE_INTO_CGROUP` is missing.
    procs: Option<RawFd>,
}

fn clone3(flags: u64, cgroup: Option<RawFd>, plan: &ChildPlan<'_>) -> io::Result<libc::pid_t> {
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the child runs `child` alone, which makes
    // only async-signal-safe calls and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => child(plan),
        pid => Ok(pid as libc::pid_t),
    }
}

fn child(plan: &ChildPlan<'_>) -> ! {
    // SAFETY: async-signal-safe calls only (dup2, sigprocmask, sigaction, execve, write,
    // _exit); nothing allocates or takes a lock.
    unsafe {
        let fail = |plan: &ChildPlan<'_>| -> ! {
            let errno = *libc::__errno_location();
            libc::write(plan.err, errno.to_ne_bytes().as_ptr().cast(), 4);
            libc::_exit(127)
        };
        if let Some(procs) = plan.procs
            && libc::write(procs, c"0".as_ptr().cast(), 1) != 1
        {
            fail(plan);
        }
        for (from, to) in plan.fds {
            if libc::dup2(*from, *to) < 0 {
                fail(plan);
            }
        }
        for to in 0..3 {
            if libc::dup2(plan.null, to) < 0 {
                fail(plan);
            }
        }
        // As std::process::Command does: the program starts with no signal blocked and
        // SIGPIPE at its default, whatever this thread had.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        unsafe extern "C" {
            static environ: *const *const libc::c_char;
        }
        libc::execve(plan.exe, plan.argv, environ);
        fail(plan)
    }
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled part of `buf`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    got
}

/// Opens a cgroup2 directory for [`spawn`].
pub(crate) fn open_cgroup(dir: &std::path::Path) -> io::Result<OwnedFd> {
    open_fd(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

fn open_fd_at(dir: BorrowedFd<'_>, name: &CStr, flags: OFlag) -> io::Result<OwnedFd> {
    // SAFETY: openat with a descriptor borrowed for the call and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            (flags | OFlag::O_CLOEXEC).bits(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_fd(path: &std::path::Path, flags: OFlag) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn run(argv: &[&str], cgroup: Option<BorrowedFd<'_>>) -> io::Result<(libc::pid_t, String)> {
        let (out_read, out_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let argv: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
        let pid = spawn(&argv[0], &argv, &[(out_write.as_raw_fd(), 3)], cgroup)?;
        drop(out_write);
        let mut out = String::new();
        std::fs::File::from(out_read)
            .read_to_string(&mut out)
            .unwrap();
        let mut status = 0;
        // SAFETY: waiting for the child just started.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        Ok((pid, out))
    }

    #[test]
    fn the_program_gets_its_descriptors_and_empty_stdio() {
        let (_, out) = run(
            &[
                "/bin/sh",
                "-c",
                "echo to-three >&3; readlink /proc/self/fd/0 >&3",
            ],
            None,
        )
        .unwrap();
        assert_eq!(out, "to-three\n/dev/null\n");
    }

    #[test]
    fn a_missing_program_is_the_exec_error() {
        let argv = [CString::new("/nonexistent/criox-spawn-test").unwrap()];
        let err = spawn(&argv[0], &argv, &[], None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn the_program_is_born_in_the_cgroup2_cgroup() {
        let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| {
                nix::sys::statfs::statfs(*p)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            })
            .expect("a cgroup2 hierarchy");
        let name = format!("criox-spawn-test-{}", std::process::id());
        let dir = unified.join(&name);
        std::fs::create_dir(&dir).unwrap();
        let cg = open_cgroup(&dir).unwrap();
        let result = run(
            &["/bin/sh", "-c", "cat /proc/self/cgroup >&3"],
            Some(cg.as_fd()),
        );
        std::fs::remove_dir(&dir).unwrap();
        let (_, out) = result.unwrap();
        assert!(
            out.lines().any(|l| l == format!("0::/{name}")),
            "the child's cgroups: {out}"
        );
    }
}
