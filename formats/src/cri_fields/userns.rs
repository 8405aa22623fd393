//! `NamespaceOption.userns_options` (KEP-127, `hostUsers: false`): the id mappings the
//! kubelet allocates for a pod with a user namespace of its own, checked, and what such
//! a pod may not combine it with.

use serde::{Deserialize, Serialize};

use super::FieldError;

/// The unit the kubelet allocates ids in (a pod gets a multiple of it, at a multiple of
/// it), and the fewest ids a pod's namespace maps: root to nobody (65534) and 65535.
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

fn invalid(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(format!("{FIELD}.{field}"), message)
}

/// Checks `userns_options`: NODE without mappings is the host's user namespace (`None`);
/// POD takes exactly the one uid and one gid mapping the kubelet allocates.
pub fn parse(
    mode: UsernsMode,
    uids: &[IdMap],
    gids: &[IdMap],
) -> Result<Option<UserNs>, FieldError> {
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
fn one(field: &str, maps: &[IdMap]) -> Result<IdMap, FieldError> {
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
    if map.length < RANGE {
        return Err(invalid(
            &at("length"),
            format!(
                "{} is below {RANGE}: every id an image may use, root to nobody (65534), \
                 needs a host id",
                map.length
            ),
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
    // Where the range lies is the kubelet's choice (it hands out multiples of 65536 from
    // 65536 up; other clients choose otherwise), except that the host's root is never
    // the pod's.
    if map.host_id == 0 {
        return Err(invalid(
            &at("host_id"),
            "0 is the host's root, which a pod's user namespace must not map",
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
/// containers cannot act in) and privileged containers. The `host_*` flags say which of
/// the pod's namespaces are the node's.
pub fn check_pod(
    host_network: bool,
    host_ipc: bool,
    host_pid: bool,
    privileged: bool,
) -> Result<(), FieldError> {
    let ns = "config.linux.security_context.namespace_options";
    let host = |field: &str| {
        FieldError::new(
            format!("{ns}.{field}"),
            "NODE cannot be combined with a user namespace of the pod's own \
             (userns_options mode POD); this runtime reports \
             user_namespaces_host_network false",
        )
    };
    if host_network {
        return Err(host("network"));
    }
    if host_ipc {
        return Err(host("ipc"));
    }
    if host_pid {
        return Err(host("pid"));
    }
    if privileged {
        return Err(FieldError::new(
            "config.linux.security_context.privileged",
            "a privileged pod cannot have a user namespace of its own",
        ));
    }
    Ok(())
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
        // critest's: neither aligned nor a multiple of the kubelet's unit.
        let m = map(1000, 100_000);
        let ns = parse(UsernsMode::Pod, &[m], &[m]).unwrap().unwrap();
        assert_eq!(ns.gids.map_line(), "0 1000 100000\n");
    }

    #[test]
    fn host_namespaces_and_privilege_are_refused_with_a_pod_user_namespace() {
        assert!(check_pod(false, false, false, false).is_ok());
        let field = |e: FieldError| e.field;
        assert!(field(check_pod(true, false, false, false).unwrap_err()).ends_with(".network"));
        assert!(field(check_pod(false, true, false, false).unwrap_err()).ends_with(".ipc"));
        assert!(field(check_pod(false, false, true, false).unwrap_err()).ends_with(".pid"));
        assert_eq!(
            field(check_pod(false, false, false, true).unwrap_err()),
            "config.linux.security_context.privileged"
        );
    }

    #[test]
    fn bad_mappings_name_the_field() {
        let good = map(RANGE, RANGE);
        let err = |uids: &[IdMap]| parse(UsernsMode::Pod, uids, &[good]).unwrap_err();
        assert!(err(&[]).field.ends_with("userns_options.uids"));
        assert!(err(&[map(RANGE, 0)]).field.ends_with("uids[0].length"));
        assert!(err(&[map(0, RANGE)]).field.ends_with("uids[0].host_id"));
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
