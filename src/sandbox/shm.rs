//! The pod's /dev/shm: a size-limited tmpfs shared by its containers, or the host's when
//! the pod shares the host IPC namespace.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

pub const DEFAULT_SIZE: u64 = 64 * 1024 * 1024;

pub fn mount(target: &Path, size: u64) -> Result<(), nix::Error> {
    std::fs::create_dir_all(target)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    nix::mount::mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={size}").as_str()),
    )
}

/// Unmounts if mounted; repeating it is harmless.
pub fn unmount(target: &Path) -> Result<(), nix::Error> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_is_a_sized_tmpfs_and_unmounts_twice() {
        crate::test_support::assert_root();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shm");
        mount(&target, 2 << 20).unwrap();
        let st = nix::sys::statvfs::statvfs(&target).unwrap();
        assert_eq!(st.blocks() * st.fragment_size(), 2 << 20);
        unmount(&target).unwrap();
        unmount(&target).unwrap();
    }
}
