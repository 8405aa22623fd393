//! Image volumes: an image's file tree mounted read-only into a container (a CRI mount
//! with `image` set). The image's unpacked layers are stacked by a lower-only overlay
//! (read-only by nature) below the container's bundle, and the container gets a read-only
//! bind of that tree or of one directory of it (`image_sub_path`).

use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::rootfs_path::resolve_in_root;

/// Where the image volumes of a container are mounted, inside its bundle.
const DIR: &str = "image-volumes";

/// One image volume of a container: the CRI mount it stands for and the image's layers.
#[derive(Debug, Clone)]
pub struct ImageVolume {
    /// Index of the mount in the container config.
    pub index: usize,
    /// The image id, reported back as the mount's `image.image_ref`.
    pub image_id: String,
    /// Unpacked layer directories, topmost first.
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageVolumeError {
    #[error("mounts[{index}].image_sub_path: {sub_path:?} must be a relative path without \"..\"")]
    BadSubPath { index: usize, sub_path: String },
    #[error("mounts[{index}].image_sub_path: {sub_path:?} does not exist in the image")]
    MissingSubPath { index: usize, sub_path: String },
    #[error("mounts[{index}].image: the image has no layers")]
    NoLayers { index: usize },
    #[error("mounts[{index}].image: layer directory {0} cannot be stacked", layer.display())]
    BadLayerPath { index: usize, layer: PathBuf },
    #[error("mounts[{index}].image: cannot mount the image at {}: {source}", target.display())]
    Mount {
        index: usize,
        target: PathBuf,
        source: std::io::Error,
    },
}

impl ImageVolumeError {
    /// Errors in what the request asked for, as opposed to failures of this host.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            ImageVolumeError::BadSubPath { .. } | ImageVolumeError::MissingSubPath { .. }
        )
    }
}

/// Mounts `volume` below `bundle` and returns the host path to bind into the container:
/// the image's root, or `sub_path` inside it when one is given.
pub fn mount_volume(
    bundle: &Path,
    volume: &ImageVolume,
    sub_path: &str,
) -> Result<PathBuf, ImageVolumeError> {
    let index = volume.index;
    let relative = clean_sub_path(sub_path).ok_or_else(|| ImageVolumeError::BadSubPath {
        index,
        sub_path: sub_path.to_string(),
    })?;
    let target = bundle.join(DIR).join(index.to_string());
    let io_error = |source: std::io::Error| ImageVolumeError::Mount {
        index,
        target: target.clone(),
        source,
    };
    // Searchable, as the runtime's init in a pod's user namespace looks it up.
    std::fs::create_dir_all(&target)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bundle.join(DIR), std::fs::Permissions::from_mode(0o711))
        })
        .map_err(io_error)?;
    let nix_error = |e: nix::Error| io_error(std::io::Error::from(e));
    match volume.layers.as_slice() {
        [] => return Err(ImageVolumeError::NoLayers { index }),
        // Overlay wants two lower directories when there is no upper one.
        [only] => {
            mount(
                Some(only),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(nix_error)?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) = mount(None::<&str>, &target, None::<&str>, flags, None::<&str>) {
                let _ = umount2(&target, MntFlags::MNT_DETACH);
                return Err(nix_error(e));
            }
        }
        layers => {
            let mut lower = Vec::with_capacity(layers.len());
            for layer in layers {
                let text = layer.display().to_string();
                if text.contains(',') || text.contains(':') {
                    return Err(ImageVolumeError::BadLayerPath {
                        index,
                        layer: layer.clone(),
                    });
                }
                lower.push(text);
            }
            let data = format!("lowerdir={},index=off,xino=off", lower.join(":"));
            mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(data.as_str()),
            )
            .map_err(nix_error)?;
        }
    }
    if relative.as_os_str().is_empty() {
        return Ok(target);
    }
    // Symlinks in the sub-path resolve inside the image, as they would in a container.
    let source = resolve_in_root(&target, &relative).map_err(io_error)?;
    if !source.exists() {
        let _ = umount2(&target, MntFlags::MNT_DETACH);
        return Err(ImageVolumeError::MissingSubPath {
            index,
            sub_path: sub_path.to_string(),
        });
    }
    Ok(source)
}

/// Unmounts every image volume below `bundle`; what is not mounted is skipped, so this
/// can run again after a crash.
pub fn unmount_all(bundle: &Path) -> std::io::Result<()> {
    crate::storage::unmount_entries(&bundle.join(DIR))
}

/// `etc/./ssl/` → `etc/ssl`; `None` when absolute or with `..`.
fn clean_sub_path(sub_path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(sub_path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_relative_and_inside() {
        assert_eq!(clean_sub_path(""), Some(PathBuf::new()));
        assert_eq!(clean_sub_path("etc/./ssl/"), Some(PathBuf::from("etc/ssl")));
        assert_eq!(clean_sub_path("/etc"), None);
        assert_eq!(clean_sub_path("etc/../.."), None);
    }
}
