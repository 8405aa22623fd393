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

/// The remount flags that keep every per-mount flag of `current` except those in `clear`
/// (nosuid, nodev or both); `None` when there is nothing to clear.
fn remount_flags(current: FsFlags, clear: FsFlags) -> Option<MsFlags> {
    if !current.intersects(clear) {
        return None;
    }
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
    ] {
        if current.contains(st) && !clear.contains(st) {
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
        let remount = |clear| match remount_flags(current.flags(), clear) {
            None => Ok(()),
            Some(flags) => mount(None::<&str>, "/", None::<&str>, flags, None::<&str>),
        };
        // The root of a container in its own user namespace is mounted nodev only, and the
        // kernel locks that flag for the namespace: it stays.
        match remount(FsFlags::ST_NOSUID | FsFlags::ST_NODEV) {
            Err(nix::Error::EPERM) => remount(FsFlags::ST_NOSUID),
            other => other,
        }
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
        let both = FsFlags::ST_NOSUID | FsFlags::ST_NODEV;
        assert_eq!(remount_flags(FsFlags::ST_RELATIME, both), None);
        assert_eq!(
            remount_flags(
                FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_RELATIME,
                both
            ),
            Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RELATIME)
        );
        assert_eq!(
            remount_flags(
                FsFlags::ST_NOSUID | FsFlags::ST_RDONLY | FsFlags::ST_NOEXEC,
                both
            ),
            Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC)
        );
    }

    #[test]
    fn a_locked_nodev_is_kept() {
        assert_eq!(remount_flags(FsFlags::ST_NODEV, FsFlags::ST_NOSUID), None);
        assert_eq!(
            remount_flags(FsFlags::ST_NODEV | FsFlags::ST_NOSUID, FsFlags::ST_NOSUID),
            Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NODEV)
        );
    }
}
