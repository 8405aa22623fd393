//! Devices: the CRI's requested host devices, every host device for privileged
//! containers, and the device cgroup rules that go with them.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use criox_proto::v1;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::error::{Result, SpecError};

/// Parts of /dev that are not devices of their own or belong to the host's session.
const SKIPPED_IN_DEV: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// Deny everything, then allow the devices every container has (null, zero, full, random,
/// urandom, tty, the pty master and its slaves) and mknod of any node, which is harmless
/// without read/write access.
pub fn default_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{A, B, C};
    Ok(vec![
        rule(false, A, None, None, "rwm")?,
        rule(true, C, None, None, "m")?,
        rule(true, B, None, None, "m")?,
        rule(true, C, Some(1), Some(3), "rwm")?,
        rule(true, C, Some(1), Some(5), "rwm")?,
        rule(true, C, Some(1), Some(7), "rwm")?,
        rule(true, C, Some(1), Some(8), "rwm")?,
        rule(true, C, Some(1), Some(9), "rwm")?,
        rule(true, C, Some(5), Some(0), "rwm")?,
        rule(true, C, Some(5), Some(2), "rwm")?,
        rule(true, C, Some(136), None, "rwm")?,
    ])
}

pub fn allow_all_rule() -> Result<LinuxDeviceCgroup> {
    rule(true, LinuxDeviceType::A, None, None, "rwm")
}

/// The device node at `host`, to appear at `container` in the container. `None` when the
/// file is not a device.
fn device_at(host: &Path, container: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::metadata(host)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let device = LinuxDeviceBuilder::default()
        .path(container)
        .typ(typ)
        .major(libc::major(rdev) as i64)
        .minor(libc::minor(rdev) as i64)
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map_err(std::io::Error::other)?;
    Ok(Some(device))
}

/// Every device node under `dir`, each at the same path in the container.
fn walk(dir: &Path, top: bool, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if top && SKIPPED_IN_DEV.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            continue;
        }
        if ft.is_dir() {
            walk(&path, false, out);
        } else if let Ok(Some(dev)) = device_at(&path, &path) {
            out.push(dev);
        }
    }
}

/// All device nodes of the host's /dev, for privileged containers.
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk(dev, true, &mut out);
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

fn access(field: &str, permissions: &str) -> Result<String> {
    if permissions.is_empty() {
        return Ok("rwm".to_string());
    }
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::invalid(
            field,
            format!("{permissions:?} is not a combination of r, w and m"),
        ));
    }
    Ok(permissions.to_string())
}

/// The CRI's devices: a device node or a directory of them (mapped below the container
/// path), each with a cgroup rule granting the requested access.
pub fn requested(devices: &[v1::Device]) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let field = |name: &str| format!("devices[{i}].{name}");
        let host = Path::new(&d.host_path);
        if !host.is_absolute() {
            return Err(SpecError::invalid(
                field("host_path"),
                format!("{:?} must be an absolute path", d.host_path),
            ));
        }
        let container = if d.container_path.is_empty() {
            host.to_path_buf()
        } else {
            PathBuf::from(&d.container_path)
        };
        if !container.is_absolute() {
            return Err(SpecError::invalid(
                field("container_path"),
                format!("{:?} must be an absolute path", d.container_path),
            ));
        }
        let access = access(&field("permissions"), &d.permissions)?;
        let meta = std::fs::metadata(host).map_err(|e| {
            SpecError::invalid(field("host_path"), format!("{:?}: {e}", d.host_path))
        })?;
        let mut found = Vec::new();
        if meta.is_dir() {
            let mut under = Vec::new();
            walk(host, false, &mut under);
            for dev in under {
                let rel = dev
                    .path()
                    .strip_prefix(host)
                    .unwrap_or(dev.path())
                    .to_path_buf();
                let mut dev = dev;
                dev.set_path(container.join(rel));
                found.push(dev);
            }
        } else {
            let dev = device_at(host, &container)
                .map_err(|e| SpecError::invalid(field("host_path"), e.to_string()))?
                .ok_or_else(|| {
                    SpecError::invalid(
                        field("host_path"),
                        format!("{:?} is not a device", d.host_path),
                    )
                })?;
            found.push(dev);
        }
        for dev in found {
            rules.push(rule(
                true,
                dev.typ(),
                Some(dev.major()),
                Some(dev.minor()),
                &access,
            )?);
            nodes.push(dev);
        }
    }
    Ok((nodes, rules))
}

/// Requested devices win over host devices at the same container path.
pub fn merge(host: Vec<LinuxDevice>, requested: Vec<LinuxDevice>) -> Vec<LinuxDevice> {
    let mut out: Vec<_> = host
        .into_iter()
        .filter(|h| requested.iter().all(|r| r.path() != h.path()))
        .collect();
    out.extend(requested);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host: &str, container: &str, perms: &str) -> v1::Device {
        v1::Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn requested_device_keeps_numbers_and_access() {
        let (nodes, rules) = requested(&[dev("/dev/null", "/dev/mynull", "rw")]).unwrap();
        assert_eq!(nodes[0].path(), Path::new("/dev/mynull"));
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(nodes[0].typ(), LinuxDeviceType::C);
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        assert!(rules[0].allow());
    }

    #[test]
    fn bad_devices_name_the_field() {
        let e = requested(&[dev("/nonexistent/dev", "/dev/x", "")]).unwrap_err();
        assert!(e.to_string().starts_with("devices[0].host_path"), "{e}");
        let e = requested(&[dev("/etc/hostname", "/dev/x", "")]).unwrap_err();
        assert!(e.to_string().contains("not a device"), "{e}");
        let e = requested(&[dev("/dev/null", "dev/x", "")]).unwrap_err();
        assert!(
            e.to_string().starts_with("devices[0].container_path"),
            "{e}"
        );
        let e = requested(&[dev("/dev/null", "/dev/x", "rwx")]).unwrap_err();
        assert!(e.to_string().starts_with("devices[0].permissions"), "{e}");
    }

    #[test]
    fn host_devices_include_null_and_skip_pts() {
        let all = host_devices(Path::new("/dev"));
        assert!(all.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(all.iter().all(|d| !d.path().starts_with("/dev/pts")));
    }

    #[test]
    fn default_rules_deny_first() {
        let rules = default_rules().unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
    }
}
