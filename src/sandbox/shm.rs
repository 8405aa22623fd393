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

/// A size such as `67108864`, `64m`, `1G`, `512Ki`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" => 1 << 10,
        "m" | "mb" | "mi" => 1 << 20,
        "g" | "gb" | "gi" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1Gi"), Some(1 << 30));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("12x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn shm_is_a_sized_tmpfs_and_unmounts_twice() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root: run through hack/test"
        );
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shm");
        mount(&target, 2 << 20).unwrap();
        let st = nix::sys::statvfs::statvfs(&target).unwrap();
        assert_eq!(st.blocks() * st.fragment_size(), 2 << 20);
        unmount(&target).unwrap();
        unmount(&target).unwrap();
    }
}
