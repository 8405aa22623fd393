//! The daemon mounts a container's root filesystem on the host `nosuid,nodev`, so that
//! nothing a container plants in it can be run with privileges through the host path. A
//! runtime binds that mount as the container's `/`, and a bind keeps those flags; inside,
//! the root must behave as on any runtime (setuid programs in images work). So once the
//! container exists, before its process runs, its `/` is remounted without them, in its
//! own mount namespace only: the host's mount keeps them.

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statvfs::{FsFlags, statvfs};

#[derive(Debug, thiserror::Error)]
pub enum RootFlagsError {
    #[error("open the mount namespace of pid {pid}: {source}")]
    Namespace { pid: i32, source: std::io::Error },
    #[error("enter the mount namespace of pid {pid}: {source}")]
    Enter { pid: i32, source: nix::Error },
    #[error("read the flags of the root of pid {pid}: {source}")]
    Stat { pid: i32, source: nix::Error },
    #[error("remount the root of pid {pid} without nosuid,nodev: {source}")]
    Remount { pid: i32, source: nix::Error },
    #[error("root remount thread panicked")]
    Panicked,
}

/// The remount flags that keep every per-mount flag of `current` except nosuid and nodev.
fn remount_flags(current: FsFlags) -> Option<MsFlags> {
    if !current.intersects(FsFlags::ST_NOSUID | FsFlags::ST_NODEV) {
        return None;
    }
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    Some(flags)
}

/// Clears nosuid and nodev from the root mount of the container whose init is `pid`.
pub fn restore(pid: i32) -> Result<(), RootFlagsError> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|source| RootFlagsError::Namespace { pid, source })?;
    // Entering a mount namespace moves the caller's root and working directory; a thread
    // with its own filesystem context does it so the monitor keeps the host's view.
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_FS)
            .and_then(|()| setns(&ns, CloneFlags::CLONE_NEWNS))
            .map_err(|source| RootFlagsError::Enter { pid, source })?;
        let current = statvfs("/").map_err(|source| RootFlagsError::Stat { pid, source })?;
        let Some(flags) = remount_flags(current.flags()) else {
            return Ok(());
        };
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|source| RootFlagsError::Remount { pid, source })
    })
    .join()
    .map_err(|_| RootFlagsError::Panicked)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nosuid_and_nodev_are_dropped() {
        assert_eq!(remount_flags(FsFlags::ST_RELATIME), None);
        assert_eq!(
            remount_flags(FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RELATIME),
            Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RELATIME)
        );
        assert_eq!(
            remount_flags(FsFlags::ST_NOSUID | FsFlags::ST_RDONLY | FsFlags::ST_NOEXEC),
            Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC)
        );
    }
}
