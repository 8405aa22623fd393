//! The pod's user namespace (KEP-127, `hostUsers: false`): the kubelet's mappings,
//! checked, and a namespace made with them and pinned beside the pod's other namespaces.
//!
//! unshare(CLONE_NEWUSER) and setns into a user namespace are refused to a
//! multi-threaded process, so the namespaces are made by a forked child that does nothing
//! but unshare and wait: the daemon writes its uid_map and gid_map, bind-mounts its
//! namespaces onto the pins and lets it go. The child runs raw system calls only, which
//! is what is safe after forking a threaded process.

use std::path::PathBuf;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::namespaces::NamespaceError;
use super::validate::Invalid;
use super::{NamespaceMode, PodSpec};

/// The unit the kubelet allocates ids in: a pod gets a multiple of it, at a multiple of it.
pub const RANGE: u32 = 65536;

const FIELD: &str = "config.linux.security_context.namespace_options.userns_options";

/// One contiguous id mapping: `container_id..+length` inside is `host_id..+length` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host_id: u32,
    pub container_id: u32,
    pub length: u32,
}

impl IdMap {
    /// The line /proc/<pid>/uid_map and gid_map take.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }

    fn end(v: u32, length: u32) -> u64 {
        u64::from(v) + u64::from(length)
    }

    fn overlaps(&self, other: &IdMap) -> bool {
        let host = u64::from(self.host_id) < Self::end(other.host_id, other.length)
            && u64::from(other.host_id) < Self::end(self.host_id, self.length);
        let inside = u64::from(self.container_id) < Self::end(other.container_id, other.length)
            && u64::from(other.container_id) < Self::end(self.container_id, self.length);
        host || inside
    }
}

/// The pod's user namespace: one uid and one gid mapping, as the kubelet sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    pub uids: IdMap,
    pub gids: IdMap,
}

/// What `userns_options` asked for, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernsMode {
    Pod,
    Node,
    /// CONTAINER or TARGET, which user namespaces do not take.
    Other(i32),
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: format!("{FIELD}.{field}"),
        message: message.into(),
    }
}

/// Checks `userns_options`: NODE without mappings is the host's user namespace (`None`);
/// POD takes exactly the one uid and one gid mapping the kubelet allocates.
pub fn parse(mode: UsernsMode, uids: &[IdMap], gids: &[IdMap]) -> Result<Option<UserNs>, Invalid> {
    match mode {
        UsernsMode::Node => {
            if !uids.is_empty() || !gids.is_empty() {
                let field = if uids.is_empty() { "gids" } else { "uids" };
                return Err(invalid(
                    field,
                    "mode NODE uses the host's user namespace and takes no mappings",
                ));
            }
            Ok(None)
        }
        UsernsMode::Other(value) => Err(invalid(
            "mode",
            format!("{value} is not POD (0) or NODE (2), the modes a user namespace takes"),
        )),
        UsernsMode::Pod => Ok(Some(UserNs {
            uids: one("uids", uids)?,
            gids: one("gids", gids)?,
        })),
    }
}

/// The single mapping of `field`, within the range the kubelet hands out.
fn one(field: &str, maps: &[IdMap]) -> Result<IdMap, Invalid> {
    for (i, a) in maps.iter().enumerate() {
        for (j, b) in maps.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(invalid(
                    &format!("{field}[{j}]"),
                    format!("overlaps {field}[{i}]"),
                ));
            }
        }
    }
    let map = match maps {
        [] => {
            return Err(invalid(
                field,
                "mode POD needs one mapping (the kubelet's allocation for the pod)",
            ));
        }
        [map] => *map,
        _ => {
            return Err(invalid(
                field,
                format!("{} mappings given; a pod takes exactly one", maps.len()),
            ));
        }
    };
    let at = |what: &str| format!("{field}[0].{what}");
    if map.length == 0 {
        return Err(invalid(&at("length"), "must not be 0"));
    }
    if map.length % RANGE != 0 {
        return Err(invalid(
            &at("length"),
            format!("{} is not a multiple of {RANGE}", map.length),
        ));
    }
    if map.container_id != 0 {
        return Err(invalid(
            &at("container_id"),
            format!(
                "{} is not 0: the mapping must start at root",
                map.container_id
            ),
        ));
    }
    if map.host_id < RANGE {
        return Err(invalid(
            &at("host_id"),
            format!(
                "{} is in 0-{}, the ids kept for the host",
                map.host_id,
                RANGE - 1
            ),
        ));
    }
    if map.host_id % RANGE != 0 {
        return Err(invalid(
            &at("host_id"),
            format!("{} is not a multiple of {RANGE}", map.host_id),
        ));
    }
    if IdMap::end(map.host_id, map.length) > u64::from(u32::MAX) {
        return Err(invalid(
            &at("length"),
            format!(
                "host ids {}+{} run past the largest id {}",
                map.host_id,
                map.length,
                u32::MAX - 1
            ),
        ));
    }
    Ok(map)
}

/// What a pod with its own user namespace may not have besides: host namespaces (a
/// namespace of the host is owned by the host's user namespace, which the pod's
/// containers cannot act in) and privileged containers.
pub fn check_pod(spec: &PodSpec) -> Result<(), Invalid> {
    if spec.userns.is_none() {
        return Ok(());
    }
    let ns = "config.linux.security_context.namespace_options";
    let host = |field: &str| Invalid {
        field: format!("{ns}.{field}"),
        message: "NODE cannot be combined with a user namespace of the pod's own \
                  (userns_options mode POD); this runtime reports \
                  user_namespaces_host_network false"
            .to_string(),
    };
    if spec.network_mode == NamespaceMode::Node {
        return Err(host("network"));
    }
    if spec.ipc_mode == NamespaceMode::Node {
        return Err(host("ipc"));
    }
    if spec.pid_mode == NamespaceMode::Node {
        return Err(host("pid"));
    }
    if spec.privileged {
        return Err(Invalid {
            field: "config.linux.security_context.privileged".to_string(),
            message: "a privileged pod cannot have a user namespace of its own".to_string(),
        });
    }
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
    let result = write_maps(child.as_raw(), maps).and_then(|()| pin_all(child.as_raw(), pins));
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

fn pin_all(pid: i32, pins: &[(&str, PathBuf)]) -> Result<(), NamespaceError> {
    for (kind, target) in pins {
        let source = format!("/proc/{pid}/ns/{kind}");
        nix::mount::mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NamespaceError::Pin {
            path: target.clone(),
            source,
        })?;
    }
    Ok(())
}

/// A user namespace of its own for tests elsewhere that need one pinned.
#[cfg(test)]
pub mod tests_support {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn map(host_id: u32, length: u32) -> IdMap {
        IdMap {
            host_id,
            container_id: 0,
            length,
        }
    }

    #[test]
    fn the_kubelets_mappings_are_taken() {
        let m = map(3 * RANGE, RANGE);
        let ns = parse(UsernsMode::Pod, &[m], &[m]).unwrap().unwrap();
        assert_eq!(ns.uids.map_line(), "0 196608 65536\n");
        assert_eq!(parse(UsernsMode::Node, &[], &[]).unwrap(), None);
    }

    #[test]
    fn bad_mappings_name_the_field() {
        let good = map(RANGE, RANGE);
        let err = |uids: &[IdMap]| parse(UsernsMode::Pod, uids, &[good]).unwrap_err();
        assert!(err(&[]).field.ends_with("userns_options.uids"));
        assert!(err(&[map(RANGE, 0)]).field.ends_with("uids[0].length"));
        assert!(err(&[map(0, RANGE)]).field.ends_with("uids[0].host_id"));
        assert!(err(&[map(RANGE + 1, RANGE)]).field.ends_with("host_id"));
        assert!(
            err(&[map(u32::MAX - RANGE + 1, RANGE)])
                .field
                .ends_with("length")
        );
        assert!(err(&[map(RANGE, 100)]).field.ends_with("length"));
        let e = err(&[map(RANGE, 2 * RANGE), map(2 * RANGE, RANGE)]);
        assert!(e.field.ends_with("uids[1]"), "{e}");
        assert!(e.message.contains("overlaps"), "{e}");
        let mut second = map(2 * RANGE, RANGE);
        second.container_id = RANGE;
        let e = err(&[map(RANGE, RANGE), second]);
        assert!(e.message.contains("exactly one"), "{e}");
        let mut shifted = good;
        shifted.container_id = 1;
        assert!(err(&[shifted]).field.ends_with("container_id"));
        let e = parse(UsernsMode::Node, &[good], &[]).unwrap_err();
        assert!(e.field.ends_with("userns_options.uids"), "{e}");
        let e = parse(UsernsMode::Other(1), &[], &[]).unwrap_err();
        assert!(e.field.ends_with("userns_options.mode"), "{e}");
    }
}
