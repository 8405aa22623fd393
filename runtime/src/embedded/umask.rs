//! The daemon and its monitors run with a private umask, so that what they write on the
//! host is theirs alone. A container's own side must not inherit it: its processes start
//! with the 022 that runc gives and images expect, and the directories libcontainer makes
//! inside the root filesystem for mount points must be searchable by the container's
//! non-root users. libcontainer forks the container while it builds, so the build runs
//! under 022, and what it wrote for itself on the host meanwhile (its state directory and
//! sockets) is then masked with the caller's umask, as if that had been in force.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::stat::{Mode, umask};

const CONTAINER_UMASK: u32 = 0o022;

/// Runs `build` (a libcontainer build that forks a container process) under the umask a
/// container starts from, then masks what appeared in `state_dir` with the caller's.
pub fn container_side<T>(state_dir: &Path, build: impl FnOnce() -> T) -> T {
    let caller = umask(Mode::from_bits_truncate(CONTAINER_UMASK));
    let out = build();
    umask(caller);
    let extra = caller.bits() as u32 & !CONTAINER_UMASK;
    if extra != 0 {
        mask_tree(state_dir, extra);
    }
    out
}

/// Takes the `extra` bits off `dir` and every entry below it, without following links.
fn mask_tree(dir: &Path, extra: u32) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & extra != 0 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !extra));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    // One test only: the umask is the whole process's, and tests run on threads.
    #[test]
    fn builds_under_022_and_leaves_the_state_masked_with_the_callers_umask() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let before = umask(Mode::from_bits_truncate(0o077));
        let seen = container_side(&state, || {
            std::fs::create_dir(&state).unwrap();
            std::fs::write(state.join("state.json"), "{}").unwrap();
            std::fs::create_dir(state.join("sub")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", state.join("link")).unwrap();
            let inner = umask(Mode::from_bits_truncate(0o022));
            umask(inner);
            inner.bits()
        });
        let after = umask(before);
        assert_eq!((seen, after.bits()), (0o022, 0o077));
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("sub")), 0o700);
        assert_eq!(mode(&state.join("state.json")), 0o600);
        assert_eq!(mode(Path::new("/etc/passwd")) & 0o044, 0o044);
    }
}
