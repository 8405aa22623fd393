//! The pod's user namespace (KEP-127, `hostUsers: false`): the kubelet's mappings as the
//! pod spec holds them. The namespace itself is made and pinned in
//! [`super::namespaces`], beside the pod's other namespaces.

pub use criox_formats::cri_fields::userns::{IdMap, UserNs, UsernsMode, parse};

/// A user namespace of its own for tests elsewhere that need one pinned.
#[cfg(test)]
pub mod tests_support {
    use std::path::PathBuf;

    use criox_formats::cri_fields::userns::RANGE;
    use nix::sched::CloneFlags;

    use super::super::namespaces::make_userns_and_pin;
    use super::*;

    /// Pins a namespace mapping 0..65536 to `host_id..` at `dir/user`.
    pub fn pinned_userns(dir: &std::path::Path, host_id: u32) -> PathBuf {
        let pin = dir.join("user");
        std::fs::File::create(&pin).unwrap();
        let map = IdMap {
            host_id,
            container_id: 0,
            length: RANGE,
        };
        make_userns_and_pin(
            CloneFlags::empty(),
            &UserNs {
                uids: map,
                gids: map,
            },
            &[("user", pin.clone())],
        )
        .unwrap();
        pin
    }

    pub fn unpin(pin: &std::path::Path) {
        nix::mount::umount2(pin, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
}
