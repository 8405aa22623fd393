//! The pod's network, IPC and UTS namespaces, created once and pinned by bind-mounting
//! them onto files under the pod's state directory.
//!
//! Namespaces are created on a dedicated short-lived thread: unshare(2) of net, IPC and
//! UTS namespaces affects only the calling thread, so the daemon's other threads are never
//! moved, and the thread ends once the namespaces are pinned. This avoids both forking the
//! multi-threaded daemon and the cost of executing a helper process per pod.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::userns::UserNs;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot create pin file {path}: {source}")]
    PinFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {kinds} namespaces: {source}")]
    Unshare { kinds: String, source: nix::Error },
    #[error("cannot pin namespace at {path}: {source}")]
    Pin { path: PathBuf, source: nix::Error },
    #[error("cannot set hostname {hostname:?}: {source}")]
    Hostname {
        hostname: String,
        source: nix::Error,
    },
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    #[error("cannot bring the loopback interface up: {0}")]
    Loopback(std::io::Error),
    #[error("cannot unmount pinned namespace {path}: {source}")]
    Unpin { path: PathBuf, source: nix::Error },
    #[error("namespace thread failed: {0}")]
    Thread(String),
    #[error("cannot write the id mapping {path}: {source}")]
    IdMap {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot join the pod's {kind} namespace {path}: {source}")]
    Join {
        kind: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
}

/// Which namespaces a pod gets of its own; the others are the host's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// What to set inside the new namespaces before they are pinned.
#[derive(Debug)]
pub struct Setup<'a> {
    /// Applied only when the pod has its own UTS namespace.
    pub hostname: &'a str,
    /// Namespaced sysctls, already validated against the namespaces requested.
    pub sysctls: &'a BTreeMap<String, String>,
    /// The pod's user namespace: made first, and owner of the others.
    pub userns: Option<&'a UserNs>,
}

/// Pinned paths, one for each namespace that was created.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pinned {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod's user namespace (`hostUsers: false`).
    #[serde(default)]
    pub user: Option<PathBuf>,
}

impl Pinned {
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.network, &self.ipc, &self.uts, &self.user]
            .into_iter()
            .flatten()
    }
}

/// Creates the wanted namespaces, applies `setup` inside them, and pins each under `dir`
/// (`dir/net`, `dir/ipc`, `dir/uts`). On failure nothing stays mounted.
pub fn create(dir: &Path, wanted: Wanted, setup: &Setup<'_>) -> Result<Pinned, NamespaceError> {
    let mut flags = CloneFlags::empty();
    let mut targets = Vec::new();
    if wanted.network {
        flags |= CloneFlags::CLONE_NEWNET;
        targets.push(("net", dir.join("net")));
    }
    if wanted.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        targets.push(("ipc", dir.join("ipc")));
    }
    if wanted.uts {
        flags |= CloneFlags::CLONE_NEWUTS;
        targets.push(("uts", dir.join("uts")));
    }
    if setup.userns.is_some() {
        targets.push(("user", dir.join("user")));
    }
    if targets.is_empty() {
        return Ok(Pinned::default());
    }
    std::fs::create_dir_all(dir).map_err(|source| NamespaceError::PinFile {
        path: dir.to_path_buf(),
        source,
    })?;
    for (_, path) in &targets {
        File::create(path).map_err(|source| NamespaceError::PinFile {
            path: path.clone(),
            source,
        })?;
    }
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| match setup.userns {
                None => unshare_and_pin(flags, &targets, wanted, setup),
                Some(maps) => make_userns_and_pin(flags, maps, &targets)
                    .and_then(|()| join_and_set_up(&targets, wanted, setup)),
            })
            .join()
            .map_err(|_| NamespaceError::Thread("panicked".to_string()))?
    });
    if let Err(e) = result {
        for (_, path) in &targets {
            let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    let find = |kind: &str| {
        targets
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
    };
    Ok(Pinned {
        network: find("net"),
        ipc: find("ipc"),
        uts: find("uts"),
        user: find("user"),
    })
}

/// Enters the pinned net, IPC and UTS namespaces (the daemon's root may: they belong to a
/// user namespace below its own) and sets them up as [`unshare_and_pin`] does.
fn join_and_set_up(
    targets: &[(&str, PathBuf)],
    wanted: Wanted,
    setup: &Setup<'_>,
) -> Result<(), NamespaceError> {
    for (kind, path) in targets {
        let (kind, flag) = match *kind {
            "net" => ("net", CloneFlags::CLONE_NEWNET),
            "ipc" => ("ipc", CloneFlags::CLONE_NEWIPC),
            "uts" => ("uts", CloneFlags::CLONE_NEWUTS),
            _ => continue,
        };
        let join = |source| NamespaceError::Join {
            kind,
            path: path.clone(),
            source,
        };
        let file = File::open(path)
            .map_err(|e| join(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        nix::sched::setns(file, flag).map_err(join)?;
    }
    set_up(wanted, setup)
}

/// Runs on its own thread, which ends right after: its namespaces stay alive only
/// through the bind mounts.
fn unshare_and_pin(
    flags: CloneFlags,
    targets: &[(&str, PathBuf)],
    wanted: Wanted,
    setup: &Setup<'_>,
) -> Result<(), NamespaceError> {
    nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare {
        kinds: targets
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(","),
        source,
    })?;
    set_up(wanted, setup)?;
    pin_namespaces("/proc/thread-self/ns", targets)
}

/// Hostname, loopback and sysctls of the calling thread's new namespaces.
fn set_up(wanted: Wanted, setup: &Setup<'_>) -> Result<(), NamespaceError> {
    if wanted.uts && !setup.hostname.is_empty() {
        nix::unistd::sethostname(setup.hostname).map_err(|source| NamespaceError::Hostname {
            hostname: setup.hostname.to_string(),
            source,
        })?;
    }
    if wanted.network {
        loopback_up().map_err(NamespaceError::Loopback)?;
    }
    // /proc/sys resolves net and ipc entries through the opening thread's namespaces.
    for (key, value) in setup.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| NamespaceError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Bind-mounts each namespace `kind` found under `ns_dir` (a `/proc/…/ns` directory) onto
/// its target, so the namespace outlives the thread or process that made it.
pub(super) fn pin_namespaces(
    ns_dir: &str,
    targets: &[(&str, PathBuf)],
) -> Result<(), NamespaceError> {
    for (kind, target) in targets {
        let source = format!("{ns_dir}/{kind}");
        nix::mount::mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NamespaceError::Pin {
            path: target.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a descriptor owned here and a zeroed ifreq
    // whose name is NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            result = Err(std::io::Error::last_os_error());
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}

/// Unmounts and deletes each pin file; missing ones are fine, so this can be repeated.
pub fn remove(pinned: &Pinned) -> Result<(), NamespaceError> {
    for path in pinned.paths() {
        unpin(path)?;
    }
    Ok(())
}

/// Unmounts one pin (if mounted) and deletes its file.
pub fn unpin(path: &Path) -> Result<(), NamespaceError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(NamespaceError::Unpin {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NamespaceError::Unpin {
            path: path.to_path_buf(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }),
        _ => Ok(()),
    }
}

/// True when `path` is a mounted namespace file (nsfs), i.e. the pin is alive.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Keeps the PID namespace of `pid` (the pod's infra process) alive at `pin`, so
/// containers can join it by path.
pub fn pin_pid_namespace(pid: i32, pin: &Path) -> Result<(), String> {
    std::fs::File::create(pin).map_err(|e| format!("create {}: {e}", pin.display()))?;
    nix::mount::mount(
        Some(format!("/proc/{pid}/ns/pid").as_str()),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("pin PID namespace of {pid} at {}: {e}", pin.display()))
}

/// unshare(CLONE_NEWUSER) and setns into a user namespace are refused to a
/// multi-threaded process, so the namespaces are made by a forked child that does nothing
/// but unshare and wait: the daemon writes its uid_map and gid_map, bind-mounts its
/// namespaces onto the pins and lets it go. The child runs raw system calls only, which
/// is what is safe after forking a threaded process.
///
/// Makes a user namespace with `maps` and, owned by it, the namespaces in `flags`; pins
/// each `(kind, path)` of `pins` (kinds as in /proc/<pid>/ns: "user", "net", …). The
/// pin files exist already. On failure nothing is mounted.
pub(super) fn make_userns_and_pin(
    flags: CloneFlags,
    maps: &UserNs,
    pins: &[(&str, PathBuf)],
) -> Result<(), NamespaceError> {
    let unshare_err = |source| NamespaceError::Unshare {
        kinds: pins.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","),
        source,
    };
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(unshare_err)?;
    let (release_r, release_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(unshare_err)?;
    let all = (flags | CloneFlags::CLONE_NEWUSER).bits();
    use std::os::fd::AsRawFd;
    let (rr, rw, lr, lw) = (
        ready_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        release_r.as_raw_fd(),
        release_w.as_raw_fd(),
    );
    // SAFETY: the child only makes raw system calls on descriptors it owns and leaves
    // with _exit, so nothing of the parent's other threads' state (locks, allocator) is
    // touched in it.
    let child = match unsafe { nix::unistd::fork() }.map_err(unshare_err)? {
        nix::unistd::ForkResult::Child => unsafe {
            libc::close(rr);
            libc::close(lw);
            let ok: u8 = u8::from(libc::unshare(all) == 0);
            libc::write(rw, (&ok as *const u8).cast(), 1);
            libc::close(rw);
            // Returns when the parent lets go (or dies): the pins keep the namespaces.
            let mut buf = 0u8;
            libc::read(lr, (&mut buf as *mut u8).cast(), 1);
            libc::_exit(0)
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(release_r);
    let finish = |release: std::os::fd::OwnedFd| {
        drop(release);
        let _ = nix::sys::wait::waitpid(child, None);
    };
    let mut ok = [0u8];
    let answered = nix::unistd::read(rr, &mut ok);
    drop(ready_r);
    if answered != Ok(1) || ok[0] != 1 {
        finish(release_w);
        return Err(unshare_err(nix::Error::EPERM));
    }
    let result = write_maps(child.as_raw(), maps)
        .and_then(|()| pin_namespaces(&format!("/proc/{}/ns", child.as_raw()), pins));
    finish(release_w);
    if result.is_err() {
        for (_, path) in pins {
            let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    result
}

fn write_maps(pid: i32, maps: &UserNs) -> Result<(), NamespaceError> {
    for (file, map) in [("uid_map", maps.uids), ("gid_map", maps.gids)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, map.map_line())
            .map_err(|source| NamespaceError::IdMap { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn pinned_namespaces_differ_from_the_hosts_and_are_removed() {
        crate::test_support::assert_root();
        let dir = tempfile::tempdir().unwrap();
        let sysctls = BTreeMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "80".to_string(),
        )]);
        let wanted = Wanted {
            network: true,
            ipc: true,
            uts: true,
        };
        let pinned = create(
            dir.path(),
            wanted,
            &Setup {
                hostname: "pod-host-a",
                sysctls: &sysctls,
                userns: None,
            },
        )
        .unwrap();
        let host_net = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let net = pinned.network.clone().unwrap();
        assert!(is_pinned(&net));
        assert_ne!(std::fs::metadata(&net).unwrap().ino(), host_net);
        // The daemon's own namespaces are untouched.
        assert_eq!(
            std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
            host_net
        );
        let seen = std::thread::spawn(move || {
            let uts = File::open(pinned.uts.clone().unwrap()).unwrap();
            let netf = File::open(pinned.network.clone().unwrap()).unwrap();
            nix::sched::setns(uts, CloneFlags::CLONE_NEWUTS).unwrap();
            nix::sched::setns(netf, CloneFlags::CLONE_NEWNET).unwrap();
            let host = nix::unistd::gethostname().unwrap();
            let port =
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
            // lo is up: a socket bound to 127.0.0.1 accepts a connection.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            (host, port, pinned)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, "pod-host-a");
        assert_eq!(seen.1.trim(), "80");
        remove(&seen.2).unwrap();
        remove(&seen.2).unwrap();
        assert!(!net.exists());
    }

    #[test]
    fn a_failing_setup_leaves_no_pin() {
        crate::test_support::assert_root();
        let dir = tempfile::tempdir().unwrap();
        let sysctls = BTreeMap::from([("net.no.such.key".to_string(), "1".to_string())]);
        let err = create(
            dir.path(),
            Wanted {
                network: true,
                ipc: false,
                uts: false,
            },
            &Setup {
                hostname: "",
                sysctls: &sysctls,
                userns: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, NamespaceError::Sysctl { .. }), "{err}");
        assert!(!dir.path().join("net").exists());
    }
}
