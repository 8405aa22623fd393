//! Seccomp: the built-in RuntimeDefault profile and Localhost profile files.
//!
//! RuntimeDefault is an allowlist: everything not named fails with EPERM. Its effect is the
//! one container users expect from Docker and containerd: ordinary programs run, while the
//! calls that reach kernel-wide state (namespaces, mounts, modules, clocks, keyrings, BPF,
//! tracing other processes' memory) are refused unless the container holds the capability
//! that would allow them anyway. Syscalls this kernel or architecture does not know are
//! skipped by the runtimes, so one list serves every architecture.

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::error::{Result, SpecError};

/// Calls any process may make.
const ALLOWED: &[&str] = &[
    // files and directories
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "_llseek",
    "lseek",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "sync_file_range2",
    "arm_sync_file_range",
    "arm_fadvise64_64",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "cachestat",
    // extended attributes
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "setxattr",
    // pipes, polling and events
    "pipe",
    "pipe2",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "_newselect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // asynchronous I/O
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    // memory
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "mseal",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // processes and threads
    "arch_prctl",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "modify_ldt",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "restart_syscall",
    "uretprobe",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "set_tls",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "breakpoint",
    "cacheflush",
    // futexes
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // credentials
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // signals
    "alarm",
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaction",
    "sigaltstack",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "tgkill",
    "tkill",
    // time
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    // sockets (socket itself is conditional, below)
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (confined by the IPC namespace)
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // system information
    "getrandom",
    "sysinfo",
    "uname",
];

/// Calls allowed only to a container that holds one of the capabilities.
const BY_CAPABILITY: &[(&[Capability], &[&str])] = &[
    (
        &[Capability::SysAdmin],
        &[
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (&[Capability::SysAdmin, Capability::Bpf], &["bpf"]),
    (
        &[Capability::SysAdmin, Capability::Perfmon],
        &["perf_event_open"],
    ),
    (&[Capability::SysAdmin, Capability::Syslog], &["syslog"]),
    (&[Capability::SysBoot], &["reboot"]),
    (&[Capability::SysChroot], &["chroot"]),
    (
        &[Capability::SysModule],
        &["delete_module", "finit_module", "init_module"],
    ),
    (&[Capability::SysPacct], &["acct"]),
    (
        &[Capability::SysPtrace],
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (&[Capability::SysRawio], &["ioperm", "iopl"]),
    (
        &[Capability::SysTime],
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (&[Capability::SysTtyConfig], &["vhangup"]),
    (
        &[Capability::SysNice],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (
        &[Capability::DacReadSearch],
        &["name_to_handle_at", "open_by_handle_at"],
    ),
];

/// Namespace-creating clone flags: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// personality(2) domains that only change how the process looks, not what it may do:
/// PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query value.
const HARMLESS_PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// AF_VSOCK: reaches the hypervisor, outside of the container's network namespace.
const AF_VSOCK: u64 = 40;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The architectures a filter covers on this host: the native one and its compat ABIs.
fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn allow(names: Vec<String>, args: Option<Vec<LinuxSeccompArg>>) -> Result<LinuxSyscall> {
    let mut b = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow);
    if let Some(args) = args {
        b = b.args(args);
    }
    Ok(b.build()?)
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    two: Option<u64>,
) -> Result<LinuxSeccompArg> {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    if let Some(two) = two {
        b = b.value_two(two);
    }
    Ok(b.build()?)
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The RuntimeDefault profile for a container holding `caps` (its bounding set).
pub fn runtime_default(caps: &Capabilities) -> Result<LinuxSeccomp> {
    let mut syscalls = vec![allow(strings(ALLOWED), None)?];

    for &domain in HARMLESS_PERSONALITIES {
        syscalls.push(allow(
            strings(&["personality"]),
            Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, domain, None)?]),
        )?);
    }
    syscalls.push(allow(
        strings(&["socket"]),
        Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpNe,
            AF_VSOCK,
            None,
        )?]),
    )?);

    let has = |wanted: &[Capability]| wanted.iter().any(|c| caps.contains(c));
    for (wanted, names) in BY_CAPABILITY {
        if has(wanted) {
            syscalls.push(allow(strings(names), None)?);
        }
    }
    if !has(&[Capability::SysAdmin]) {
        // Plain fork and threads, but no new namespaces. For SCMP_CMP_MASKED_EQ the OCI
        // runtimes read `value` as the mask and `valueTwo` as the expected result.
        syscalls.push(allow(
            strings(&["clone"]),
            Some(vec![arg(
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
            )?]),
        )?);
        // clone3 passes its flags in memory the filter cannot see: answer ENOSYS so that
        // libc falls back to clone, which is checked above.
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(strings(&["clone3"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(ENOSYS)
                .build()?,
        );
    }

    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(native_architectures())
        .syscalls(syscalls)
        .build()?)
}

/// A profile file in the OCI (`LinuxSeccomp`) or Docker JSON format. Docker's extras
/// (`archMap`, per-rule `includes`/`excludes`, the old single `name`) are evaluated here
/// against the container's capabilities and this host's architecture.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: serde_json::Value,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<ProfileSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: serde_json::Value,
    #[serde(default)]
    sub_architectures: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSyscall {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: serde_json::Value,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<ProfileArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileArg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's names for this host's architectures, as Docker profiles use them in `arches`.
fn go_arches() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["amd64", "x86", "x32"]
    } else if cfg!(target_arch = "aarch64") {
        &["arm64", "arm"]
    } else {
        &[]
    }
}

/// The running kernel's (major, minor); (0, 0) when it cannot be read.
pub(crate) fn kernel_version() -> (u64, u64) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Loads and validates the profile at `path` for a container holding `caps`.
pub fn load_localhost(field: &str, path: &str, caps: &Capabilities) -> Result<LinuxSeccomp> {
    if !Path::new(path).is_absolute() {
        return Err(SpecError::invalid(
            field,
            format!("seccomp profile path {path:?} is not absolute"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        field: field.to_string(),
        path: path.into(),
        source,
    })?;
    parse_profile(&text, caps, kernel_version())
        .map_err(|reason| SpecError::invalid(field, format!("seccomp profile {path}: {reason}")))
}

fn enum_value<T: serde::de::DeserializeOwned>(
    what: &str,
    v: &serde_json::Value,
) -> std::result::Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|_| format!("unknown {what} {v}"))
}

fn parse_profile(
    text: &str,
    caps: &Capabilities,
    kernel: (u64, u64),
) -> std::result::Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let default_action: LinuxSeccompAction = enum_value("action", &file.default_action)?;
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err("SCMP_ACT_NOTIFY cannot be the default action".to_string());
    }

    let mut arches: Vec<Arch> = Vec::new();
    for a in file.architectures.iter().flatten() {
        arches.push(enum_value("architecture", a)?);
    }
    for entry in file.arch_map.iter().flatten() {
        let main: Arch = enum_value("architecture", &entry.architecture)?;
        if native_architectures().first() == Some(&main) {
            arches.push(main);
            for sub in &entry.sub_architectures {
                arches.push(enum_value("architecture", sub)?);
            }
        }
    }
    arches.dedup();

    let mut flags = Vec::new();
    for f in file.flags.iter().flatten() {
        flags.push(enum_value("flag", f)?);
    }

    let cap_names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
    let applies = |rule: &ProfileSyscall| -> bool {
        if let Some(inc) = &rule.includes {
            if !inc
                .caps
                .iter()
                .all(|c| cap_names.contains(&c.to_ascii_uppercase()))
            {
                return false;
            }
            if !inc.arches.is_empty()
                && !inc.arches.iter().any(|a| go_arches().contains(&a.as_str()))
            {
                return false;
            }
            if let Some(min) = inc.min_kernel.as_deref().and_then(parse_version)
                && kernel < min
            {
                return false;
            }
        }
        if let Some(exc) = &rule.excludes {
            if exc
                .caps
                .iter()
                .any(|c| cap_names.contains(&c.to_ascii_uppercase()))
            {
                return false;
            }
            if exc.arches.iter().any(|a| go_arches().contains(&a.as_str())) {
                return false;
            }
            if let Some(min) = exc.min_kernel.as_deref().and_then(parse_version)
                && kernel >= min
            {
                return false;
            }
        }
        true
    };

    let mut syscalls = Vec::new();
    for (i, rule) in file.syscalls.iter().flatten().enumerate() {
        let action: LinuxSeccompAction =
            enum_value("action", &rule.action).map_err(|e| format!("syscalls[{i}]: {e}"))?;
        let mut names = rule.names.clone().unwrap_or_default();
        names.extend(rule.name.clone());
        if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
            return Err(format!("syscalls[{i}]: a rule needs syscall names"));
        }
        let mut args = Vec::new();
        for (j, a) in rule.args.iter().flatten().enumerate() {
            if a.index >= 6 {
                return Err(format!(
                    "syscalls[{i}].args[{j}]: index {} is not a syscall argument (0 to 5)",
                    a.index
                ));
            }
            let op: LinuxSeccompOperator = enum_value("operator", &a.op)
                .map_err(|e| format!("syscalls[{i}].args[{j}]: {e}"))?;
            args.push(arg(a.index, op, a.value, a.value_two).map_err(|e| e.to_string())?);
        }
        if !applies(rule) {
            continue;
        }
        let mut b = LinuxSyscallBuilder::default().names(names).action(action);
        if let Some(errno) = rule.errno_ret {
            b = b.errno_ret(errno);
        }
        if !args.is_empty() {
            b = b.args(args);
        }
        syscalls.push(b.build().map_err(|e| e.to_string())?);
    }

    let mut b = LinuxSeccompBuilder::default()
        .default_action(default_action)
        .syscalls(syscalls);
    if let Some(errno) = file.default_errno_ret {
        b = b.default_errno_ret(errno);
    }
    if !arches.is_empty() {
        b = b.architectures(arches);
    }
    if !flags.is_empty() {
        b = b.flags(flags);
    }
    if let Some(p) = file.listener_path {
        b = b.listener_path(p);
    }
    if let Some(m) = file.listener_metadata {
        b = b.listener_metadata(m);
    }
    b.build().map_err(|e| e.to_string())
}

/// The seccomp profile the container's security context asks for; `None` is unconfined.
pub fn select(
    profile: Option<&criox_proto::v1::SecurityProfile>,
    deprecated_path: &str,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>> {
    use criox_proto::v1::security_profile::ProfileType;
    const FIELD: &str = "linux.security_context.seccomp";
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => runtime_default(caps).map(Some),
            Ok(ProfileType::Unconfined) => Ok(None),
            Ok(ProfileType::Localhost) => {
                load_localhost(&format!("{FIELD}.localhost_ref"), &p.localhost_ref, caps).map(Some)
            }
            Err(_) => Err(SpecError::invalid(
                format!("{FIELD}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    const OLD: &str = "linux.security_context.seccomp_profile_path";
    match deprecated_path {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => runtime_default(caps).map(Some),
        other => match other.strip_prefix("localhost/") {
            Some(path) => load_localhost(OLD, path, caps).map(Some),
            None => Err(SpecError::invalid(
                OLD,
                format!("unknown profile {other:?}"),
            )),
        },
    }
}

/// For reports: which syscall names a profile allows unconditionally.
pub fn unconditionally_allowed(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
        .flat_map(|s| s.names().iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert_eq!(parse_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_version("5.12.3"), Some((5, 12)));
        assert!(parse_version("5.4.0").unwrap() < (5, 12));
        assert_eq!(parse_version("weird"), None);
    }
    use crate::container::capabilities;

    fn default_caps() -> Capabilities {
        capabilities::DEFAULT.iter().copied().collect()
    }

    #[test]
    fn default_profile_denies_with_eperm_and_allows_basics() {
        let p = runtime_default(&default_caps()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        let allowed = unconditionally_allowed(&p);
        for name in [
            "pipe2",
            "read",
            "write",
            "execve",
            "openat",
            "mmap",
            "exit_group",
            "chown",
        ] {
            assert!(allowed.contains(name), "{name} must be allowed");
        }
        for name in [
            "unshare",
            "mount",
            "setns",
            "clone",
            "bpf",
            "reboot",
            "init_module",
            "kexec_load",
            "keyctl",
            "add_key",
        ] {
            assert!(!allowed.contains(name), "{name} must not be allowed");
        }
        // sys_chroot is in the default capability set, so chroot is allowed
        assert!(allowed.contains("chroot"));
    }

    #[test]
    fn clone_is_restricted_without_sys_admin() {
        let p = runtime_default(&default_caps()).unwrap();
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone".to_string()])
            .unwrap();
        let a = &clone.args().as_ref().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(a.value(), 2114060288);
        assert_eq!(a.value_two(), Some(0));
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
    }

    #[test]
    fn sys_admin_opens_namespaces_and_mounts() {
        let mut caps = default_caps();
        caps.insert(Capability::SysAdmin);
        let p = runtime_default(&caps).unwrap();
        let allowed = unconditionally_allowed(&p);
        for name in ["unshare", "mount", "setns", "clone", "clone3"] {
            assert!(allowed.contains(name), "{name}");
        }
    }

    #[test]
    fn dropping_sys_chroot_removes_chroot() {
        let mut caps = default_caps();
        caps.remove(&Capability::SysChroot);
        let allowed = unconditionally_allowed(&runtime_default(&caps).unwrap());
        assert!(!allowed.contains("chroot"));
    }

    #[test]
    fn docker_format_profile_with_includes() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
                {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }"#;
        let p = parse_profile(text, &default_caps(), (6, 1)).unwrap();
        let names: Vec<String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        assert_eq!(names, vec!["read", "write", "ptrace", "personality"]);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                p.architectures().as_ref().unwrap(),
                &vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
            );
        }
        let old = parse_profile(text, &default_caps(), (4, 4)).unwrap();
        assert_eq!(old.syscalls().as_ref().unwrap().len(), 2);
    }

    #[test]
    fn oci_format_profile_round_trips() {
        let p = runtime_default(&default_caps()).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        let back = parse_profile(&text, &default_caps(), (6, 1)).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn invalid_profiles_say_what_is_wrong() {
        let caps = default_caps();
        let bad_json = parse_profile("{", &caps, (6, 1)).unwrap_err();
        assert!(bad_json.starts_with("invalid JSON"), "{bad_json}");
        let bad_action =
            parse_profile(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, &caps, (6, 1)).unwrap_err();
        assert!(bad_action.contains("unknown action"), "{bad_action}");
        let bad_index = parse_profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
            &caps,
            (6, 1),
        )
        .unwrap_err();
        assert!(bad_index.contains("syscalls[0].args[0]"), "{bad_index}");
        let no_names = parse_profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
            &caps,
            (6, 1),
        )
        .unwrap_err();
        assert!(no_names.contains("names"), "{no_names}");
    }

    #[test]
    fn localhost_errors_name_the_field_and_file() {
        let caps = default_caps();
        let e = load_localhost("f", "relative.json", &caps)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f: "), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction": 5}"#).unwrap();
        let e = load_localhost("f", path.to_str().unwrap(), &caps)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(path.to_str().unwrap()) && e.contains("unknown action"),
            "{e}"
        );
        let missing = dir.path().join("missing.json");
        let e = load_localhost("f", missing.to_str().unwrap(), &caps)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f: cannot read"), "{e}");
    }

    #[test]
    fn select_by_profile_type_and_deprecated_path() {
        use criox_proto::v1::{SecurityProfile, security_profile::ProfileType};
        let caps = default_caps();
        let rd = SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        };
        assert!(select(Some(&rd), "", &caps).unwrap().is_some());
        let un = SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        };
        assert!(
            select(Some(&un), "runtime/default", &caps)
                .unwrap()
                .is_none()
        );
        assert!(select(None, "", &caps).unwrap().is_none());
        assert!(select(None, "runtime/default", &caps).unwrap().is_some());
        let e = select(None, "weird", &caps).unwrap_err().to_string();
        assert!(e.starts_with("linux.security_context.seccomp_profile_path"));
    }
}
