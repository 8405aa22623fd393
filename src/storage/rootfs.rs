//! A container's root filesystem: the image's unpacked layers as overlay lower
//! directories, with a writable upper directory of the container's own.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::idmap::{IdmapError, MappedLayers};

/// The mount data of one overlay must fit in a page.
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "overlay options for {target} are {len} bytes, over the kernel's limit of {MAX_MOUNT_DATA}: too many layers"
    )]
    TooManyLayers { target: PathBuf, len: usize },
    #[error(
        "layer directory {0} contains a character overlayfs cannot take in a path (',' or ':')"
    )]
    BadLayerPath(PathBuf),
    #[error("cannot open layer directory {path}: {source}")]
    OpenLayer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount the root filesystem at {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("cannot ID-map the image's layers: {0}")]
    MapLayers(#[from] IdmapError),
    #[error("cannot unmount the root filesystem at {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
}

/// A root filesystem for a container in its own user namespace: the layers are mounted
/// ID-mapped through it, and the writable layer belongs to the namespace's root.
#[derive(Debug, Clone, Copy)]
pub struct UsernsRoot<'a> {
    /// The pinned user namespace.
    pub userns: &'a Path,
    /// The host ids of the namespace's root.
    pub uid: u32,
    pub gid: u32,
}

/// The directories of one container's root filesystem, all under `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// Where the merged tree is mounted; the bundle's `root.path`.
    pub target: PathBuf,
    /// The container's writes: what writable-layer statistics measure.
    pub upper: PathBuf,
    work: PathBuf,
    /// A lower directory for images without layers, since overlay needs at least one.
    empty: PathBuf,
    /// The bundle, below which ID-mapped layers are mounted while the overlay is made.
    dir: PathBuf,
}

impl Rootfs {
    pub fn new(dir: &Path) -> Rootfs {
        Rootfs {
            target: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            empty: dir.join("empty"),
            dir: dir.to_path_buf(),
        }
    }

    /// Mounts `layers` (topmost first, the order `lowerdir=` takes) under the upper
    /// directory; with `userns`, the layers ID-mapped through it.
    pub fn mount(&self, layers: &[PathBuf], userns: Option<UsernsRoot>) -> Result<(), RootfsError> {
        // `empty` only stands in for an image without layers.
        let empty = layers.is_empty().then_some(&self.empty);
        for dir in [&self.target, &self.upper, &self.work]
            .into_iter()
            .chain(empty)
        {
            std::fs::create_dir_all(dir).map_err(|source| RootfsError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        // The overlay's root directory takes the upper directory's mode: it is the
        // container's `/`, which its non-root users must be able to search, whatever the
        // daemon's umask. Its parent keeps other host users out.
        std::fs::set_permissions(&self.upper, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| RootfsError::Create {
                path: self.upper.clone(),
                source,
            },
        )?;
        // The layers' files show as the namespace's through ID-mapped mounts; the upper
        // directory is not mapped (the kernel copies up and makes overlay's work files as
        // the daemon's root, which has no id in the namespace), so what the container
        // writes is stored as its host ids, and `/` is its root's to write in.
        let mapped = match userns {
            Some(root) => {
                std::os::unix::fs::chown(&self.upper, Some(root.uid), Some(root.gid)).map_err(
                    |source| RootfsError::Create {
                        path: self.upper.clone(),
                        source,
                    },
                )?;
                let lower = if layers.is_empty() {
                    std::slice::from_ref(&self.empty)
                } else {
                    layers
                };
                Some(MappedLayers::attach(&self.dir, lower, root.userns)?)
            }
            None => None,
        };
        let layers = mapped.as_ref().map_or(layers, MappedLayers::paths);
        // Long layer paths overflow the page the mount data must fit in: the same
        // directories, opened here and named through their descriptors, take about 18
        // bytes each, enough for the most layers an image may have.
        let (data, _held) = match self.options(layers) {
            Ok(data) => (data, Vec::new()),
            Err(RootfsError::TooManyLayers { .. }) => {
                let held = open_layers(layers)?;
                let short: Vec<PathBuf> = held
                    .iter()
                    .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
                    .collect();
                (self.options(&short)?, held)
            }
            Err(e) => return Err(e),
        };
        // A writable layer never outlives its container (a restarted container gets a new
        // one), so syncing it buys nothing: `volatile` spares the unmount's flush of the
        // upper directory and makes the container's own fsync calls cheap. Kernels before
        // 5.10 refuse the option; they get the plain mount.
        let volatile = format!("{data},volatile");
        // A container in its own user namespace could never have nosuid taken off its `/`
        // (the kernel locks a mount's flags for a less privileged namespace), so its
        // setuid programs would not work. Nothing in its tree can give a host user more
        // than that namespace's ids (every file shows as a mapped id, and its root cannot
        // chown to others), and the bundle it is in is that root's own, mode 0700. nodev
        // stays: an image's device nodes open nothing, there or inside.
        let flags = if userns.is_some() {
            MsFlags::MS_NODEV
        } else {
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        };
        let result = if volatile.len() > MAX_MOUNT_DATA {
            overlay(&self.target, &data, flags)
        } else {
            match overlay(&self.target, &volatile, flags) {
                Err(nix::Error::EINVAL) => overlay(&self.target, &data, flags),
                other => other,
            }
        };
        result.map_err(|source| RootfsError::Mount {
            target: self.target.clone(),
            source,
        })
    }

    fn options(&self, layers: &[PathBuf]) -> Result<String, RootfsError> {
        let mut lower: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
        if lower.is_empty() {
            lower.push(&self.empty);
        }
        for dir in lower
            .iter()
            .copied()
            .chain([self.upper.as_path(), self.work.as_path()])
        {
            let text = dir.to_string_lossy();
            if text.contains(',') || text.contains(':') {
                return Err(RootfsError::BadLayerPath(dir.to_path_buf()));
            }
        }
        let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        // index=off and xino=off keep the mount independent of which layer directories
        // other containers mount at the same time.
        let data = format!(
            "lowerdir={},upperdir={},workdir={},index=off,xino=off",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        if data.len() > MAX_MOUNT_DATA {
            return Err(RootfsError::TooManyLayers {
                target: self.target.clone(),
                len: data.len(),
            });
        }
        Ok(data)
    }

    /// Whether the merged tree is mounted in `mounts`.
    pub fn is_mounted(&self, mounts: &[criox_runtime::mountinfo::Mount]) -> bool {
        criox_runtime::mountinfo::is_mount_point(mounts, &self.target)
    }

    /// Unmounts the merged tree; unmounting what is not mounted succeeds, so removal can
    /// be retried after a crash.
    pub fn unmount(&self) -> Result<(), RootfsError> {
        match umount2(&self.target, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(nix::Error::EBUSY) => {
                umount2(&self.target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
                    target: self.target.clone(),
                    source,
                })
            }
            Err(source) => Err(RootfsError::Unmount {
                target: self.target.clone(),
                source,
            }),
        }
    }
}

fn open_layers(layers: &[PathBuf]) -> Result<Vec<OwnedFd>, RootfsError> {
    layers
        .iter()
        .map(|path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(path)
                .map(OwnedFd::from)
                .map_err(|source| RootfsError::OpenLayer {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// On the host the tree is only ever read by the daemon and the runtime: `flags` are
/// nosuid,nodev, so that a setuid binary or a device node that a container planted in it
/// gives nobody anything there, unless the caller has said why it need not be.
fn overlay(target: &Path, data: &str, flags: MsFlags) -> nix::Result<()> {
    mount(Some("overlay"), target, Some("overlay"), flags, Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_mounted(path: &Path) -> bool {
        mount_line(path).is_some()
    }

    fn mount_line(path: &Path) -> Option<String> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        text.lines()
            .find(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
            .map(str::to_string)
    }

    #[test]
    fn layers_stack_with_the_top_layer_winning_and_writes_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("layers/base");
        let top = dir.path().join("layers/top");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        std::fs::write(base.join("etc/os"), "base").unwrap();
        std::fs::write(base.join("etc/only-base"), "b").unwrap();
        std::fs::write(top.join("etc/os"), "top").unwrap();

        let rootfs = Rootfs::new(&dir.path().join("ctr"));
        rootfs.mount(&[top.clone(), base.clone()], None).unwrap();
        struct Unmount<'a>(&'a Rootfs);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = self.0.unmount();
            }
        }
        let guard = Unmount(&rootfs);
        let line = mount_line(&rootfs.target).expect("the root filesystem is not mounted");
        assert!(
            line.contains("volatile"),
            "the writable layer is synced on unmount: {line}"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.target.join("etc/os")).unwrap(),
            "top"
        );
        assert!(rootfs.target.join("etc/only-base").exists());

        std::fs::write(rootfs.target.join("new-file"), "x").unwrap();
        std::fs::remove_file(rootfs.target.join("etc/only-base")).unwrap();
        assert!(rootfs.upper.join("new-file").exists());
        assert!(base.join("etc/only-base").exists(), "a layer was modified");

        drop(guard);
        assert!(!is_mounted(&rootfs.target));
        // Unmounting twice is fine.
        rootfs.unmount().unwrap();
    }

    #[test]
    fn an_image_without_layers_still_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = Rootfs::new(dir.path());
        rootfs.mount(&[], None).unwrap();
        std::fs::write(rootfs.target.join("f"), "x").unwrap();
        rootfs.unmount().unwrap();
        assert!(rootfs.upper.join("f").exists());
    }

    #[test]
    fn many_layers_with_long_paths_still_mount() {
        // Paths as long as the daemon's: 128 of them are far more than a page.
        let dir = tempfile::tempdir().unwrap();
        let layers_dir = dir.path().join("layers");
        let layers: Vec<PathBuf> = (0..128)
            .map(|i| {
                let layer = layers_dir.join(format!("{i:064}"));
                std::fs::create_dir_all(&layer).unwrap();
                std::fs::write(layer.join(format!("f{i}")), i.to_string()).unwrap();
                layer
            })
            .collect();
        let rootfs = Rootfs::new(&dir.path().join("ctr"));
        assert!(matches!(
            rootfs.options(&layers),
            Err(RootfsError::TooManyLayers { .. })
        ));
        rootfs.mount(&layers, None).unwrap();
        struct Unmount<'a>(&'a Rootfs);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = self.0.unmount();
            }
        }
        let _guard = Unmount(&rootfs);
        for i in [0, 64, 127] {
            assert_eq!(
                std::fs::read_to_string(rootfs.target.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
        std::fs::write(rootfs.target.join("new"), "x").unwrap();
        assert!(rootfs.upper.join("new").exists());
    }

    #[test]
    fn layers_mapped_into_a_user_namespace_show_its_ids_and_leave_no_mount() {
        use std::os::unix::fs::MetadataExt;
        crate::test_support::assert_root();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("layers/base");
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::write(base.join("etc/os"), "base").unwrap();
        let host_id = 6 * 65536;
        let ns = crate::sandbox::userns::tests_support::pinned_userns(dir.path(), host_id);
        let rootfs = Rootfs::new(&dir.path().join("ctr"));
        let root = UsernsRoot {
            userns: &ns,
            uid: host_id,
            gid: host_id + 1,
        };
        rootfs
            .mount(std::slice::from_ref(&base), Some(root))
            .unwrap();
        struct Unmount<'a>(&'a Rootfs, &'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = self.0.unmount();
                crate::sandbox::userns::tests_support::unpin(self.1);
            }
        }
        let _guard = Unmount(&rootfs, &ns);
        // The layer's root-owned file is the namespace root's through the overlay, and the
        // layer itself is untouched.
        let meta = std::fs::metadata(rootfs.target.join("etc/os")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (host_id, host_id));
        assert_eq!(std::fs::metadata(base.join("etc/os")).unwrap().uid(), 0);
        // `/` is the namespace root's to write in.
        let top = std::fs::metadata(&rootfs.target).unwrap();
        assert_eq!((top.uid(), top.gid()), (host_id, host_id + 1));
        // A copy-up keeps the owner the container saw.
        std::fs::write(rootfs.target.join("etc/os"), "changed").unwrap();
        assert_eq!(
            std::fs::metadata(rootfs.upper.join("etc/os"))
                .unwrap()
                .uid(),
            host_id
        );
        assert_eq!(
            std::fs::read_to_string(base.join("etc/os")).unwrap(),
            "base"
        );
        // Only the overlay stays mounted: the mapped layers went with their directory.
        let mounts = criox_runtime::mountinfo::current();
        let below: Vec<_> = mounts
            .iter()
            .filter(|m| m.mount_point.starts_with(dir.path().join("ctr")))
            .map(|m| m.mount_point.clone())
            .collect();
        assert_eq!(below, std::slice::from_ref(&rootfs.target));
        // nodev, but setuid programs work: the kernel would lock nosuid inside.
        let line = mount_line(&rootfs.target).unwrap();
        assert!(line.contains("nodev") && !line.contains("nosuid"), "{line}");
        assert!(
            !dir.path()
                .join("ctr")
                .join(super::super::idmap::LAYERS_DIR)
                .exists()
        );
    }

    #[test]
    fn too_many_layers_is_a_clear_error() {
        let rootfs = Rootfs::new(Path::new("/var/lib/criox/containers/abc"));
        let layers: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/criox/layers/{i:064}")))
            .collect();
        let err = rootfs.options(&layers).unwrap_err();
        assert!(matches!(err, RootfsError::TooManyLayers { .. }), "{err}");
    }
}
