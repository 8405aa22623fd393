//! ID-mapped mounts (mount_setattr with MOUNT_ATTR_IDMAP): a tree whose files belong to
//! host ids shows them, through the mount, as the ids a user namespace maps them to, and
//! what that namespace's users create is stored with the unmapped ids. A container of a
//! pod with its own user namespace sees its image's root-owned files as root's this way,
//! without a chown of the layers.
//!
//! The mounts are made here rather than by the runtime, so that a runtime without idmap
//! support (runc before 1.2) runs such containers too: the bundle names trees that are
//! mapped already.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};

/// Below the bundle: one ID-mapped bind per volume, by the volume's index.
pub const VOLUMES_DIR: &str = "idmap";

/// Below the bundle: the image's layers, ID-mapped, while the root filesystem's overlay
/// is mounted over them. Overlayfs keeps private clones of its layers' mounts, so these
/// go as soon as it is mounted.
pub const LAYERS_DIR: &str = "idmap-layers";

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("cannot open the user namespace {path}: {source}")]
    Userns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot clone the mount at {path}: {source}")]
    Clone {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot ID-map the mount of {path} (does its filesystem support idmapped mounts?): {source}"
    )]
    SetAttr {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot attach the ID-mapped mount at {path}: {source}")]
    Attach {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// A detached copy of the mount (tree, with `recursive`) at `source`, mapped through
/// the user namespace pinned at `userns`.
fn mapped_clone(source: &Path, userns: &Path, recursive: bool) -> Result<OwnedFd, IdmapError> {
    let ns = std::fs::File::open(userns).map_err(|e| IdmapError::Userns {
        path: userns.to_path_buf(),
        source: e,
    })?;
    let clone_err = |e| IdmapError::Clone {
        path: source.to_path_buf(),
        source: e,
    };
    let path = c_path(source).map_err(clone_err)?;
    let recursive_flag = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree with a NUL-terminated path; the descriptor it returns is owned
    // from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive_flag,
        )
    };
    if fd < 0 {
        return Err(clone_err(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor from open_tree.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }.
    let attr: [u64; 4] = [MOUNT_ATTR_IDMAP, 0, 0, ns.as_raw_fd() as u64];
    let empty = c"";
    // SAFETY: mount_setattr on the descriptor above with an attr of the kernel's size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | recursive_flag,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc < 0 {
        return Err(IdmapError::SetAttr {
            path: source.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(tree)
}

fn attach(tree: &OwnedFd, target: &Path) -> Result<(), IdmapError> {
    let attach_err = |e| IdmapError::Attach {
        path: target.to_path_buf(),
        source: e,
    };
    let to = c_path(target).map_err(attach_err)?;
    let empty = c"";
    // SAFETY: move_mount of a detached tree onto a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(attach_err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes `dir` the own directory of the root of a pod's user namespace (host ids `uid`,
/// `gid`; mode 0700), under a parent others may search but not list. The runtime's init,
/// already in that namespace, walks through these to the container's root filesystem and
/// the pod's namespace files; other host users still cannot look in.
pub fn make_owned_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
    }
    std::fs::create_dir_all(dir)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    // A root or state directory below a private one (mktemp's 0700) is the operator's
    // to fix; say so rather than let the runtime fail with a bare EACCES.
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} (mode {:o}) is not searchable by other users, so the root of a \
                     pod's user namespace cannot reach {} below it",
                    ancestor.display(),
                    mode & 0o7777,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// ID-mapped views of an image's layer directories, mounted at `<bundle>/idmap-layers/<n>`
/// for as long as this lives: the kernel refuses to ID-map an overlay mount itself, but
/// builds one from ID-mapped layers.
#[derive(Debug)]
pub struct MappedLayers {
    dir: PathBuf,
    paths: Vec<PathBuf>,
}

impl MappedLayers {
    /// Mounts each of `layers` (in order) ID-mapped through the user namespace at
    /// `userns`; on failure, what was mounted goes again.
    pub fn attach(bundle: &Path, layers: &[PathBuf], userns: &Path) -> Result<Self, IdmapError> {
        let dir = bundle.join(LAYERS_DIR);
        let mut mapped = MappedLayers {
            dir: dir.clone(),
            paths: Vec::with_capacity(layers.len()),
        };
        std::fs::create_dir_all(&dir).map_err(|source| IdmapError::MountPoint {
            path: dir.clone(),
            source,
        })?;
        for (i, layer) in layers.iter().enumerate() {
            let tree = mapped_clone(layer, userns, false)?;
            let target = dir.join(i.to_string());
            std::fs::create_dir(&target).map_err(|source| IdmapError::MountPoint {
                path: target.clone(),
                source,
            })?;
            mapped.paths.push(target.clone());
            attach(&tree, &target)?;
        }
        Ok(mapped)
    }

    /// Where the layers are mounted, in the order they were given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Drop for MappedLayers {
    fn drop(&mut self) {
        // Only a mount point still mounted can refuse removal; the directories are empty
        // otherwise, and a left one is unmounted before its bundle is deleted.
        for path in &self.paths {
            let _ = umount2(path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(path);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Binds `source` (recursively) ID-mapped at `<bundle>/idmap/<index>` and returns that
/// path, for the container's spec to bind instead of `source`.
pub fn map_volume(
    bundle: &Path,
    index: usize,
    source: &Path,
    userns: &Path,
) -> Result<PathBuf, IdmapError> {
    let dir = bundle.join(VOLUMES_DIR);
    let target = dir.join(index.to_string());
    let point_err = |e| IdmapError::MountPoint {
        path: target.clone(),
        source: e,
    };
    // The runtime's init looks the volume up from inside the user namespace, whose root
    // owns the bundle but not this directory.
    std::fs::create_dir_all(&dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        })
        .map_err(point_err)?;
    let tree = mapped_clone(source, userns, true)?;
    // The mount point takes the kind of what is mounted on it.
    let is_dir = std::fs::metadata(source)
        .map_err(|e| IdmapError::Clone {
            path: source.to_path_buf(),
            source: e,
        })?
        .is_dir();
    if is_dir {
        std::fs::create_dir(&target).map_err(point_err)?;
    } else {
        std::fs::File::create(&target).map_err(point_err)?;
    }
    attach(&tree, &target)?;
    Ok(target)
}

/// Unmounts every ID-mapped volume and layer of the bundle (layers stay mounted only when
/// the daemon died while mounting a root filesystem); what is not mounted is fine, so it
/// can be repeated. Until this succeeds the bundle must not be deleted: what these mounts
/// show is the host's directories and the image's layers.
pub fn unmount_all(bundle: &Path) -> std::io::Result<()> {
    // A volume bind is recursive: each of its submounts goes with MNT_DETACH.
    super::unmount_entries(&bundle.join(VOLUMES_DIR))?;
    super::unmount_entries(&bundle.join(LAYERS_DIR))
}

/// Whether any ID-mapped volume or layer of the bundle is mounted in `mounts`.
pub fn any_mounted(bundle: &Path, mounts: &[criox_runtime::mountinfo::Mount]) -> bool {
    let volumes = bundle.join(VOLUMES_DIR);
    let layers = bundle.join(LAYERS_DIR);
    mounts
        .iter()
        .any(|m| m.mount_point.starts_with(&volumes) || m.mount_point.starts_with(&layers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn an_idmapped_volume_shows_host_root_files_as_the_namespaces_root() {
        crate::test_support::assert_root();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("f"), "x").unwrap();
        let bundle = dir.path().join("bundle");
        let ns = crate::sandbox::userns::tests_support::pinned_userns(dir.path(), 5 * 65536);
        let mapped = map_volume(&bundle, 0, &source, &ns).unwrap();
        // Host root's file shows as the namespace root's host id through the mount.
        assert_eq!(
            std::fs::metadata(mapped.join("f")).unwrap().uid(),
            5 * 65536
        );
        assert!(any_mounted(&bundle, &criox_runtime::mountinfo::current()));
        unmount_all(&bundle).unwrap();
        unmount_all(&bundle).unwrap();
        assert!(!any_mounted(&bundle, &criox_runtime::mountinfo::current()));
        assert_eq!(std::fs::metadata(source.join("f")).unwrap().uid(), 0);
        crate::sandbox::userns::tests_support::unpin(&ns);
    }
}
