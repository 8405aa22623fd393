//! The pod's user namespace (KEP-127, `hostUsers: false`): the kubelet's mappings,
//! checked, and a namespace made with them and pinned beside the pod's other namespaces.
//!
//! unshare(CLONE_NEWUSER) and setns into a user namespace are refused to a
//! multi-threaded process, so the namespaces are made by a forked child that does nothing
//! but unshare and wait: the daemon writes its uid_map and gid_map, bind-mounts its
//! namespaces onto the pins and lets it go. The child runs raw system calls only, which
//! is what is safe after forking a threaded process.

use std::path::PathBuf;

use nix::sched::CloneFlags;

pub use criox_formats::cri_fields::userns::{IdMap, UserNs, UsernsMode, parse};

use super::namespaces::{NamespaceError, pin_namespaces};
use super::validate::Invalid;
use super::{NamespaceMode, PodSpec};

/// What a pod with its own user namespace may not have besides (host namespaces,
/// privilege): see [`criox_formats::cri_fields::userns::check_pod`].
pub fn check_pod(spec: &PodSpec) -> Result<(), Invalid> {
    if spec.userns.is_none() {
        return Ok(());
    }
    criox_formats::cri_fields::userns::check_pod(
        spec.network_mode == NamespaceMode::Node,
        spec.ipc_mode == NamespaceMode::Node,
        spec.pid_mode == NamespaceMode::Node,
        spec.privileged,
    )?;
    Ok(())
}

/// Makes a user namespace with `maps` and, owned by it, the namespaces in `flags`; pins
/// each `(kind, path)` of `pins` (kinds as in /proc/<pid>/ns: "user", "net", …). The
/// pin files exist already. On failure nothing is mounted.
pub(super) fn make_and_pin(
    flags: CloneFlags,
    maps: &UserNs,
    pins: &[(&str, PathBuf)],
) -> Result<(), NamespaceError> {
    let unshare_err = |source| NamespaceError::Unshare {
        kinds: pins.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","),
        source,
    };
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(unshare_err)?;
    let (release_r, release_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(unshare_err)?;
    let all = (flags | CloneFlags::CLONE_NEWUSER).bits();
    use std::os::fd::AsRawFd;
    let (rr, rw, lr, lw) = (
        ready_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        release_r.as_raw_fd(),
        release_w.as_raw_fd(),
    );
    // SAFETY: the child only makes raw system calls on descriptors it owns and leaves
    // with _exit, so nothing of the parent's other threads' state (locks, allocator) is
    // touched in it.
    let child = match unsafe { nix::unistd::fork() }.map_err(unshare_err)? {
        nix::unistd::ForkResult::Child => unsafe {
            libc::close(rr);
            libc::close(lw);
            let ok: u8 = u8::from(libc::unshare(all) == 0);
            libc::write(rw, (&ok as *const u8).cast(), 1);
            libc::close(rw);
            // Returns when the parent lets go (or dies): the pins keep the namespaces.
            let mut buf = 0u8;
            libc::read(lr, (&mut buf as *mut u8).cast(), 1);
            libc::_exit(0)
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(release_r);
    let finish = |release: std::os::fd::OwnedFd| {
        drop(release);
        let _ = nix::sys::wait::waitpid(child, None);
    };
    let mut ok = [0u8];
    let answered = nix::unistd::read(rr, &mut ok);
    drop(ready_r);
    if answered != Ok(1) || ok[0] != 1 {
        finish(release_w);
        return Err(unshare_err(nix::Error::EPERM));
    }
    let result = write_maps(child.as_raw(), maps)
        .and_then(|()| pin_namespaces(&format!("/proc/{}/ns", child.as_raw()), pins));
    finish(release_w);
    if result.is_err() {
        for (_, path) in pins {
            let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    result
}

fn write_maps(pid: i32, maps: &UserNs) -> Result<(), NamespaceError> {
    for (file, map) in [("uid_map", maps.uids), ("gid_map", maps.gids)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, map.map_line())
            .map_err(|source| NamespaceError::IdMap { path, source })?;
    }
    Ok(())
}

/// A user namespace of its own for tests elsewhere that need one pinned.
#[cfg(test)]
pub mod tests_support {
    use criox_formats::cri_fields::userns::RANGE;

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
        make_and_pin(
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
