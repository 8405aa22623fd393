//! Resolving a path inside an image root filesystem the way the container will see it:
//! symlinks are followed relative to the rootfs, and neither `..` nor an absolute link
//! target can lead outside of it.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux gives up after 40 links in one lookup; so do we.
const MAX_SYMLINKS: usize = 40;

/// The host path of `path` (absolute or relative to `/`) inside `root`, with every symlink
/// on the way resolved as if `root` were `/`. Components that do not exist are kept as
/// they are, so the result may name a file that is not there.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    // Pending components, last to visit first.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        let host = root.join(&candidate);
        match std::fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("too many levels of symbolic links at {}", host.display()),
                    ));
                }
                let target = std::fs::read_link(&host)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(resolved))
}

/// Queues the components of `path` so that its first component is popped next.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(parts.into_iter().rev());
}

/// Creates directory `path` of the image and its missing parents, resolved as the container
/// will see it, owned by `owner` (host uid, gid) when given: the root of the container's
/// user namespace, which must own what the daemon makes for it. Runtimes differ on a
/// working directory the image lacks (runc makes it, libcontainer fails with a bare "unix
/// syscall" error), so it is made before either runs.
pub fn create_dir_in_root(root: &Path, path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let target = resolve_in_root(root, path)?;
    let missing: Vec<&Path> = target
        .ancestors()
        .take_while(|dir| *dir != root && std::fs::symlink_metadata(dir).is_err())
        .collect();
    std::fs::create_dir_all(&target)?;
    if let Some((uid, gid)) = owner {
        for dir in missing {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_path_joins_root() {
        let root = tempfile::tempdir().unwrap();
        let got = resolve_in_root(root.path(), Path::new("/etc/passwd")).unwrap();
        assert_eq!(got, root.path().join("etc/passwd"));
    }

    #[test]
    fn dotdot_stops_at_root() {
        let root = tempfile::tempdir().unwrap();
        let got = resolve_in_root(root.path(), Path::new("/../../etc/../../passwd")).unwrap();
        assert_eq!(got, root.path().join("passwd"));
    }

    #[test]
    fn absolute_symlink_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real")).unwrap();
        std::fs::write(root.path().join("real/passwd"), "x").unwrap();
        symlink("/real", root.path().join("etc")).unwrap();
        let got = resolve_in_root(root.path(), Path::new("/etc/passwd")).unwrap();
        assert_eq!(got, root.path().join("real/passwd"));
    }

    #[test]
    fn relative_symlink_escaping_upwards_is_clamped() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        symlink("../../../../../etc/shadow", root.path().join("etc/passwd")).unwrap();
        let got = resolve_in_root(root.path(), Path::new("/etc/passwd")).unwrap();
        assert_eq!(got, root.path().join("etc/shadow"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        symlink("/b", root.path().join("a")).unwrap();
        symlink("/a", root.path().join("b")).unwrap();
        assert!(resolve_in_root(root.path(), Path::new("/a/x")).is_err());
    }

    #[test]
    fn created_directories_stay_inside_root() {
        let root = tempfile::tempdir().unwrap();
        symlink("/elsewhere", root.path().join("work")).unwrap();
        create_dir_in_root(root.path(), Path::new("/work/sub"), None).unwrap();
        assert!(root.path().join("elsewhere/sub").is_dir());
        create_dir_in_root(root.path(), Path::new("/../../up"), None).unwrap();
        assert!(root.path().join("up").is_dir());
    }

    #[test]
    fn only_the_directories_made_take_the_owner() {
        use std::os::unix::fs::MetadataExt;
        crate::test_support::assert_root();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("srv")).unwrap();
        create_dir_in_root(root.path(), Path::new("/srv/app/data"), Some((4242, 4343))).unwrap();
        let owner = |p: &str| {
            let m = std::fs::metadata(root.path().join(p)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("srv"), (0, 0));
        assert_eq!(owner("srv/app"), (4242, 4343));
        assert_eq!(owner("srv/app/data"), (4242, 4343));
    }
}
