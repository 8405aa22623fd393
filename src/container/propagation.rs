//! Host mount propagation that rshared and rslave container mounts depend on: the host
//! mount holding the source must itself be shared (or a slave, for rslave), or the
//! container would never see mounts appear beneath it.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use super::spec::mounts::{HostPropagation, PropagationRequirement};

#[derive(Debug, thiserror::Error)]
pub enum PropagationError {
    #[error("no mount holds {0}")]
    NoMount(PathBuf),
    #[error("cannot make {mountpoint} shared for {path}: {source}")]
    MakeShared {
        mountpoint: PathBuf,
        path: PathBuf,
        source: nix::Error,
    },
}

/// The mount point holding `path` and its propagation flags.
fn holding_mount(
    mounts: &[criox_runtime::mountinfo::Mount],
    path: &Path,
) -> Option<(PathBuf, bool, bool)> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .map(|m| {
            let shared = m.optional.iter().any(|f| f.starts_with("shared:"));
            let slave = m.optional.iter().any(|f| f.starts_with("master:"));
            (m.mount_point.clone(), shared, slave)
        })
        // The last, longest match is the mount that is visible at the path.
        .max_by_key(|(mountpoint, _, _)| mountpoint.components().count())
}

pub fn ensure(requirement: &PropagationRequirement) -> Result<(), PropagationError> {
    let mounts = criox_runtime::mountinfo::current();
    let path = requirement
        .host_path
        .canonicalize()
        .unwrap_or_else(|_| requirement.host_path.clone());
    let (mountpoint, shared, slave) =
        holding_mount(&mounts, &path).ok_or_else(|| PropagationError::NoMount(path.clone()))?;
    let satisfied = match requirement.need {
        HostPropagation::Shared => shared,
        HostPropagation::SharedOrSlave => shared || slave,
    };
    if satisfied {
        return Ok(());
    }
    mount(
        None::<&str>,
        &mountpoint,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|source| PropagationError::MakeShared {
        mountpoint,
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /var/lib/data rw,relatime - ext4 /dev/vdb rw
31 22 0:27 / /mnt/slave rw,relatime master:5 - ext4 /dev/vdc rw
";

    #[test]
    fn the_longest_mount_prefix_holds_the_path() {
        let (mp, shared, slave) = holding_mount(
            &criox_runtime::mountinfo::parse(MOUNTINFO),
            Path::new("/var/lib/data/vol"),
        )
        .unwrap();
        assert_eq!(
            (mp, shared, slave),
            (PathBuf::from("/var/lib/data"), false, false)
        );
        let (mp, shared, _) = holding_mount(
            &criox_runtime::mountinfo::parse(MOUNTINFO),
            Path::new("/etc"),
        )
        .unwrap();
        assert_eq!((mp, shared), (PathBuf::from("/"), true));
        let (_, _, slave) = holding_mount(
            &criox_runtime::mountinfo::parse(MOUNTINFO),
            Path::new("/mnt/slave/x"),
        )
        .unwrap();
        assert!(slave);
    }
}
