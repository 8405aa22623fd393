//! The ID-mapped volumes of a container in a pod with its own user namespace (its root
//! filesystem is built from ID-mapped layers by [`crate::storage::rootfs`]): each volume the kubelet sent with `uidMappings`/`gidMappings`
//! (KEP-127: it sends the pod's mappings for the volumes that support idmap mounts). A
//! volume without mappings stays a plain bind: what the container writes there belongs
//! to its host ids.

use std::path::Path;

use criox_proto::v1;

use super::manager::{ContainerError, invalid};
use super::spec::{IdRange, PodSpecContext};
use crate::storage::idmap;

/// Whether pods may have user namespaces here: ID-mapped mounts (Linux 5.12) of the
/// filesystems layers live on, and overlayfs over ID-mapped layers (5.19).
pub fn user_namespaces_supported() -> bool {
    true
}

/// Replaces the host path of each mount with mappings by an ID-mapped bind of it in the
/// bundle, and clears the mappings, which the spec's bind then no longer needs.
pub(super) fn map_volumes(
    id: &str,
    bundle: &Path,
    config: &mut v1::ContainerConfig,
    pod: &PodSpecContext,
) -> Result<(), ContainerError> {
    for (i, mount) in config.mounts.iter_mut().enumerate() {
        if mount.uid_mappings.is_empty() && mount.gid_mappings.is_empty() {
            continue;
        }
        let Some(userns) = &pod.userns else {
            return Err(invalid(
                &format!("mounts[{i}].uidMappings"),
                "the pod has no user namespace of its own to map the mount to",
            ));
        };
        for (field, given, pod_map) in [
            ("uidMappings", &mount.uid_mappings, &userns.uids),
            ("gidMappings", &mount.gid_mappings, &userns.gids),
        ] {
            if !same(given, pod_map) {
                return Err(invalid(
                    &format!("mounts[{i}].{field}"),
                    format!(
                        "must be the pod's user namespace mapping ({} {} {})",
                        pod_map.container_id, pod_map.host_id, pod_map.length
                    ),
                ));
            }
        }
        if mount.host_path.is_empty() {
            return Err(invalid(
                &format!("mounts[{i}].host_path"),
                "an ID-mapped mount needs a host path",
            ));
        }
        let mapped = idmap::map_volume(bundle, i, Path::new(&mount.host_path), &userns.path)
            .map_err(|e| ContainerError::Internal {
                id: id.to_string(),
                message: format!("mounts[{i}]: {e}"),
            })?;
        mount.host_path = mapped.display().to_string();
        mount.uid_mappings.clear();
        mount.gid_mappings.clear();
    }
    Ok(())
}

fn same(given: &[v1::IdMapping], pod: &IdRange) -> bool {
    matches!(given, [m] if m.host_id == pod.host_id
        && m.container_id == pod.container_id
        && m.length == pod.length)
}
