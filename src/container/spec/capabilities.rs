//! The container's capability sets: the default set containerd and Docker give, adjusted by
//! the CRI's add/drop lists (each may say `ALL`), or every capability when privileged.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

use super::error::{Result, SpecError};

const FIELD_ADD: &str = "linux.security_context.capabilities.add_capabilities";
const FIELD_DROP: &str = "linux.security_context.capabilities.drop_capabilities";
const FIELD_AMBIENT: &str = "linux.security_context.capabilities.add_ambient_capabilities";

/// What a container gets unless told otherwise.
pub const DEFAULT: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability this build knows.
pub fn all() -> Capabilities {
    (0..64).filter_map(by_number).collect()
}

fn by_number(n: u32) -> Option<Capability> {
    Capability::from_str(cap_name_by_number(n)?).ok()
}

/// The capabilities in a `/proc/<pid>/status` mask such as `CapBnd:\t000001ffffffffff`.
pub fn from_mask(mask: u64) -> Capabilities {
    (0..64)
        .filter(|n| mask & (1u64 << n) != 0)
        .filter_map(by_number)
        .collect()
}

/// The bounding set of this process: a container can hold no capability outside it
/// (runc fails with "unable to apply caps"), so privileged and `ALL` mean these.
pub fn own_bounding_set() -> Capabilities {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                let hex = l.strip_prefix("CapBnd:")?.trim();
                u64::from_str_radix(hex, 16).ok()
            })
        })
        .map(from_mask)
        .unwrap_or_else(all)
}

/// Names as the kernel numbers them (see capability.h), for the ones oci-spec knows.
fn cap_name_by_number(n: u32) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES.get(n as usize).copied()
}

/// Parses `CHOWN`, `cap_chown` or `CAP_CHOWN`.
pub fn parse(field: &str, name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare)
        .map_err(|_| SpecError::invalid(field, format!("unknown capability {name:?}")))
}

/// The capability sets of the container's process. Inheritable stays empty: a non-empty
/// inheritable set lets file capabilities of programs in the image raise privileges.
///
/// `available` is what the node can give (the runtime's bounding set): privileged and
/// `ALL` mean all of it, and naming a capability outside it is an error.
pub fn build(
    privileged: bool,
    requested: Option<&criox_proto::v1::Capability>,
    available: &Capabilities,
) -> Result<(LinuxCapabilities, Capabilities)> {
    let mut caps: Capabilities = DEFAULT
        .iter()
        .copied()
        .filter(|c| available.contains(c))
        .collect();
    let mut ambient: Capabilities = HashSet::new();
    let grantable = |field: &str, name: &str| -> Result<Capability> {
        let cap = parse(field, name)?;
        if !available.contains(&cap) {
            return Err(SpecError::invalid(
                field,
                format!("capability {name:?} is not available on this node"),
            ));
        }
        Ok(cap)
    };
    if privileged {
        caps = available.clone();
    } else if let Some(req) = requested {
        let is_all = |v: &String| v.trim().eq_ignore_ascii_case("ALL");
        if req.add_capabilities.iter().any(is_all) {
            caps = available.clone();
        }
        if req.drop_capabilities.iter().any(is_all) {
            caps.clear();
        }
        for name in req.add_capabilities.iter().filter(|v| !is_all(v)) {
            caps.insert(grantable(FIELD_ADD, name)?);
        }
        for name in req.drop_capabilities.iter().filter(|v| !is_all(v)) {
            caps.remove(&parse(FIELD_DROP, name)?);
        }
        for name in &req.add_ambient_capabilities {
            let cap = grantable(FIELD_AMBIENT, name)?;
            ambient.insert(cap);
            caps.insert(cap);
        }
    }
    let sets = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(Capabilities::new())
        .ambient(ambient)
        .build()?;
    Ok((sets, caps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use criox_proto::v1;

    fn req(add: &[&str], drop: &[&str]) -> v1::Capability {
        v1::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            add_ambient_capabilities: vec![],
        }
    }

    #[test]
    fn default_set_has_fourteen_and_no_sys_admin() {
        let (sets, caps) = build(false, None, &all()).unwrap();
        assert_eq!(caps.len(), 14);
        assert!(!caps.contains(&Capability::SysAdmin));
        assert_eq!(sets.inheritable().as_ref().unwrap().len(), 0);
        assert_eq!(sets.bounding().as_ref().unwrap(), &caps);
    }

    #[test]
    fn add_and_drop() {
        let (_, caps) = build(
            false,
            Some(&req(&["NET_ADMIN", "cap_sys_time"], &["CHOWN"])),
            &all(),
        )
        .unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysTime));
        assert!(!caps.contains(&Capability::Chown));
    }

    #[test]
    fn drop_all_then_add_one() {
        let (_, caps) = build(false, Some(&req(&["NET_BIND_SERVICE"], &["ALL"])), &all()).unwrap();
        assert_eq!(
            caps.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );
    }

    #[test]
    fn add_all_then_drop_one() {
        let (_, caps) = build(false, Some(&req(&["ALL"], &["SYS_ADMIN"])), &all()).unwrap();
        assert_eq!(caps.len(), all().len() - 1);
        assert!(!caps.contains(&Capability::SysAdmin));
    }

    #[test]
    fn privileged_gets_everything() {
        let (_, caps) = build(true, Some(&req(&[], &["ALL"])), &all()).unwrap();
        assert_eq!(caps.len(), 41);
    }

    #[test]
    fn ambient_goes_to_all_sets() {
        let mut r = req(&[], &[]);
        r.add_ambient_capabilities = vec!["NET_ADMIN".into()];
        let (sets, caps) = build(false, Some(&r), &all()).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(
            sets.ambient()
                .as_ref()
                .unwrap()
                .contains(&Capability::NetAdmin)
        );
    }

    #[test]
    fn node_without_a_capability_limits_privileged_and_refuses_adding_it() {
        let mut available = all();
        available.remove(&Capability::SysResource);
        let (_, caps) = build(true, None, &available).unwrap();
        assert!(!caps.contains(&Capability::SysResource));
        assert_eq!(caps.len(), all().len() - 1);
        let e = build(false, Some(&req(&["SYS_RESOURCE"], &[])), &available).unwrap_err();
        assert!(e.to_string().contains("not available on this node"), "{e}");
    }

    #[test]
    fn status_masks_decode() {
        let caps = from_mask(0x1fffeffffff);
        assert!(!caps.contains(&Capability::SysResource));
        assert!(caps.contains(&Capability::CheckpointRestore));
        assert_eq!(caps.len(), 40);
        assert!(own_bounding_set().contains(&Capability::Kill));
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let e = build(false, Some(&req(&["FLY"], &[])), &all()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.security_context.capabilities.add_capabilities: unknown capability \"FLY\""
        );
    }
}
