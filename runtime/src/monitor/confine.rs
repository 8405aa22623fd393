//! Once the container exists, the monitor only moves bytes, reaps and writes files. An
//! attacker who took over the monitor (through a crafted attach stream, say) must find it
//! holding nothing more: no capabilities, no way to gain privileges through exec, and a
//! seccomp filter that allows only the calls supervising makes.
//!
//! The list was taken from `strace -f -c` of monitors through a container's whole life
//! (output, CRI log, attach with stdin, exec beside it, resize, log reopen after rotation,
//! stop, exit record) with and without a terminal, plus what the allocator, the standard
//! library and an abort may need. Anything else fails with EPERM instead of killing the
//! monitor: a container must not lose its monitor to a call nobody foresaw.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Calls allowed with any arguments.
const ALLOWED: &[i64] = &[
    // Streams, files, the attach socket.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_close,
    libc::SYS_ppoll,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    // Children: the container's init and orphans it leaves behind.
    libc::SYS_wait4,
    libc::SYS_waitid,
    // Signals: the SIGCHLD signalfd, and what the C library does around them.
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    // Memory.
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // Time and identity.
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getrandom,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The same calls under their older names, which only some architectures have.
#[cfg(target_arch = "x86_64")]
const ALLOWED_LEGACY: &[i64] = &[
    libc::SYS_poll,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_rename,
    libc::SYS_unlink,
    libc::SYS_accept,
    libc::SYS_open,
    libc::SYS_time,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_LEGACY: &[i64] = &[];

/// ioctls on descriptors the monitor holds: nonblocking and close-on-exec flags, the
/// terminal's size and the terminal check of the C library.
const IOCTLS: &[u64] = &[
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::TIOCSWINSZ,
    libc::TIOCGWINSZ,
    libc::TCGETS,
];

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("monitor seccomp filter: {0}")]
    Filter(#[from] seccompiler::Error),
    #[error("monitor seccomp filter: {0}")]
    Backend(#[from] seccompiler::BackendError),
    #[error("monitor seccomp filter: unsupported architecture {0}")]
    Arch(&'static str),
    #[error("monitor capabilities: {what}: {source}")]
    Capabilities {
        what: &'static str,
        source: std::io::Error,
    },
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        op,
        value,
    )?)
}

/// The filter: [`ALLOWED`] calls pass, a few more with their arguments checked, everything
/// else fails with EPERM.
pub fn program() -> Result<BpfProgram, ConfineError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| ConfineError::Arch(std::env::consts::ARCH))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_LEGACY)
        .map(|&nr| (nr, Vec::new()))
        .collect();
    // Memory is never made executable: no code can be brought in.
    let no_exec = || -> Result<Vec<SeccompRule>, ConfineError> {
        let prot_without_exec = cond(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)?;
        Ok(vec![SeccompRule::new(vec![prot_without_exec])?])
    };
    rules.insert(libc::SYS_mmap, no_exec()?);
    rules.insert(libc::SYS_mprotect, no_exec()?);
    let ioctls = IOCTLS
        .iter()
        .map(|&request| Ok(SeccompRule::new(vec![cond(1, SeccompCmpOp::Eq, request)?])?))
        .collect::<Result<Vec<_>, ConfineError>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    // Signals only to itself, as abort() sends them: the monitor runs as root and must not
    // reach other processes of that user.
    let me = std::process::id() as u64;
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![cond(0, SeccompCmpOp::Eq, me)?])?],
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?;
    Ok(filter.try_into()?)
}

/// Gives up every capability (bounding, ambient, effective, permitted, inheritable).
fn drop_capabilities() -> Result<(), ConfineError> {
    let fail = |what| ConfineError::Capabilities {
        what,
        source: std::io::Error::last_os_error(),
    };
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes last.
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // Past the kernel's last capability.
                Some(libc::EINVAL) => break,
                // Without CAP_SETPCAP the bounding set stays; with nothing permitted,
                // no_new_privs and no exec, nothing can be gained from it.
                Some(libc::EPERM) => break,
                _ => return Err(fail("dropping from the bounding set")),
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(fail("clearing the ambient set"));
    }
    crate::capset::clear_capability_sets().map_err(|source| ConfineError::Capabilities {
        what: "capset",
        source,
    })
}

/// Confines the calling (only) thread for the rest of the monitor's life: drops every
/// capability, sets no_new_privs and installs the filter. Any failure is an error: a
/// monitor that cannot confine itself must not supervise a container.
pub fn confine() -> Result<(), ConfineError> {
    // Compiled first: building the program allocates and reads nothing the filter forbids,
    // but a build error must leave the process as it was.
    let program = program()?;
    drop_capabilities()?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ConfineError::Capabilities {
            what: "setting no_new_privs",
            source: std::io::Error::last_os_error(),
        });
    }
    seccompiler::apply_filter(&program)?;
    Ok(())
}

#[cfg(test)]
mod tests;
