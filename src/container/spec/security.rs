//! Masked and read-only paths, AppArmor and sysctls.

use std::collections::{BTreeMap, HashMap};

use criox_formats::cri_fields::container as cri_fields;
use criox_proto::v1;

use super::error::{Result, SpecError};

/// Files of /proc and /sys that reveal or control the host: hidden from containers.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Parts of /proc that containers may read but not change.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn check_paths(field: &str, paths: &[String]) -> Result<Vec<String>> {
    cri_fields::absolute_paths(field, paths)?;
    Ok(paths.to_vec())
}

/// (masked, readonly): none for privileged containers, else the request's lists where it
/// gives them and the defaults where it does not.
pub fn masked_and_readonly(
    privileged: bool,
    sc: Option<&v1::LinuxContainerSecurityContext>,
) -> Result<(Vec<String>, Vec<String>)> {
    if privileged {
        return Ok((Vec::new(), Vec::new()));
    }
    let defaults = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let masked = match sc.map(|s| &s.masked_paths) {
        Some(p) if !p.is_empty() => check_paths("linux.security_context.masked_paths", p)?,
        _ => defaults(DEFAULT_MASKED_PATHS),
    };
    let readonly = match sc.map(|s| &s.readonly_paths) {
        Some(p) if !p.is_empty() => check_paths("linux.security_context.readonly_paths", p)?,
        _ => defaults(DEFAULT_READONLY_PATHS),
    };
    Ok((masked, readonly))
}

/// The AppArmor profile to run under, or `None` for no confinement. Without AppArmor on
/// the host only an explicit Localhost profile is an error: the caller asked for a
/// confinement that cannot be given. With AppArmor on, RuntimeDefault never falls back
/// to unconfined: `default_profile` is the loaded profile's name or why there is none.
pub fn apparmor(
    privileged: bool,
    host_has_apparmor: bool,
    default_profile: &std::result::Result<String, String>,
    sc: Option<&v1::LinuxContainerSecurityContext>,
) -> Result<Option<String>> {
    use v1::security_profile::ProfileType;
    const FIELD: &str = "linux.security_context.apparmor";
    if privileged {
        return Ok(None);
    }
    // Older kubelets still send the string form.
    #[allow(deprecated)]
    let old_profile = sc.map(|s| s.apparmor_profile.as_str()).unwrap_or("");
    let (kind, name) = match sc.and_then(|s| s.apparmor.as_ref()) {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(t) => (t, p.localhost_ref.clone()),
            Err(_) => {
                return Err(SpecError::invalid(
                    format!("{FIELD}.profile_type"),
                    format!("unknown profile type {}", p.profile_type),
                ));
            }
        },
        None => match old_profile {
            "" | "runtime/default" => (ProfileType::RuntimeDefault, String::new()),
            "unconfined" => (ProfileType::Unconfined, String::new()),
            other => match other.strip_prefix("localhost/") {
                Some(name) => (ProfileType::Localhost, name.to_string()),
                None => {
                    return Err(SpecError::invalid(
                        "linux.security_context.apparmor_profile",
                        format!("unknown profile {other:?}"),
                    ));
                }
            },
        },
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault if !host_has_apparmor => Ok(None),
        ProfileType::RuntimeDefault => match default_profile {
            Ok(name) => Ok(Some(name.clone())),
            Err(why) => Err(SpecError::NodeLacks {
                field: FIELD.to_string(),
                reason: format!("RuntimeDefault has no AppArmor profile on this node: {why}"),
            }),
        },
        ProfileType::Localhost => {
            let name = name.trim().trim_start_matches("localhost/").to_string();
            if name.is_empty() {
                return Err(SpecError::invalid(
                    format!("{FIELD}.localhost_ref"),
                    "a Localhost profile needs a name",
                ));
            }
            if !host_has_apparmor {
                return Err(SpecError::invalid(
                    format!("{FIELD}.localhost_ref"),
                    format!("profile {name:?} requested but AppArmor is not enabled on this node"),
                ));
            }
            Ok(Some(name))
        }
    }
}

/// The pod's sysctls, accepted only when they belong to a namespace the container does
/// not share with the node.
pub fn sysctls(
    requested: &BTreeMap<String, String>,
    host_network: bool,
    host_ipc: bool,
    own_uts: bool,
) -> Result<HashMap<String, String>> {
    let shared = cri_fields::SharedWithNode {
        network: host_network,
        ipc: host_ipc,
        uts: !own_uts,
    };
    let mut out = HashMap::new();
    for (raw, value) in requested {
        out.insert(cri_fields::sysctl(raw, shared)?, value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::security_profile::ProfileType;

    fn sc() -> v1::LinuxContainerSecurityContext {
        v1::LinuxContainerSecurityContext::default()
    }

    #[test]
    fn defaults_overrides_and_privileged() {
        let (m, r) = masked_and_readonly(false, None).unwrap();
        assert!(m.contains(&"/proc/kcore".to_string()));
        assert!(r.contains(&"/proc/sys".to_string()));
        let mut s = sc();
        s.masked_paths = vec!["/proc/x".into()];
        let (m, r) = masked_and_readonly(false, Some(&s)).unwrap();
        assert_eq!(m, vec!["/proc/x"]);
        assert!(r.contains(&"/proc/sys".to_string()));
        let (m, r) = masked_and_readonly(true, Some(&s)).unwrap();
        assert!(m.is_empty() && r.is_empty());
        s.readonly_paths = vec!["rel".into()];
        assert!(masked_and_readonly(false, Some(&s)).is_err());
    }

    #[test]
    fn apparmor_only_with_host_support() {
        let loaded: std::result::Result<String, String> = Ok("d".into());
        let missing: std::result::Result<String, String> = Err("apparmor_parser failed".into());
        let mut s = sc();
        s.apparmor = Some(v1::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "my-profile".into(),
        });
        assert_eq!(
            apparmor(false, true, &missing, Some(&s))
                .unwrap()
                .as_deref(),
            Some("my-profile")
        );
        let e = apparmor(false, false, &missing, Some(&s)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.security_context.apparmor.localhost_ref")
        );
        assert_eq!(apparmor(true, true, &loaded, Some(&s)).unwrap(), None);
        assert_eq!(apparmor(false, false, &loaded, None).unwrap(), None);
        assert_eq!(
            apparmor(false, true, &loaded, None).unwrap().as_deref(),
            Some("d")
        );
        #[allow(deprecated)]
        let old = v1::LinuxContainerSecurityContext {
            apparmor_profile: "localhost/legacy".into(),
            ..Default::default()
        };
        assert_eq!(
            apparmor(false, true, &missing, Some(&old))
                .unwrap()
                .as_deref(),
            Some("legacy")
        );
    }

    #[test]
    fn runtime_default_is_refused_rather_than_unconfined_where_its_profile_is_missing() {
        let missing: std::result::Result<String, String> = Err("apparmor_parser failed".into());
        let e = apparmor(false, true, &missing, None).unwrap_err();
        assert!(!e.is_invalid_argument(), "the node is at fault: {e}");
        assert!(
            e.to_string().starts_with("linux.security_context.apparmor")
                && e.to_string().contains("apparmor_parser failed"),
            "{e}"
        );
        let mut s = sc();
        s.apparmor = Some(v1::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
        assert_eq!(apparmor(false, true, &missing, Some(&s)).unwrap(), None);
        assert_eq!(apparmor(true, true, &missing, None).unwrap(), None);
    }

    #[test]
    fn sysctls_namespaced_only() {
        let mut req = BTreeMap::new();
        req.insert(
            "net/ipv4/ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        );
        req.insert("kernel.shm_rmid_forced".to_string(), "1".to_string());
        let got = sysctls(&req, false, false, true).unwrap();
        assert_eq!(got["net.ipv4.ip_unprivileged_port_start"], "0");
        assert!(sysctls(&req, true, false, true).is_err());
        let mut vlan = BTreeMap::new();
        vlan.insert(
            "net/ipv4/conf/eth0.100/forwarding".to_string(),
            "1".to_string(),
        );
        let got = sysctls(&vlan, false, false, true).unwrap();
        assert_eq!(got["net.ipv4.conf.eth0/100.forwarding"], "1");
        assert!(sysctls(&req, false, true, true).is_err());
        let mut bad = BTreeMap::new();
        bad.insert("vm.swappiness".to_string(), "1".to_string());
        let e = sysctls(&bad, false, false, true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.sysctls: \"vm.swappiness\"")
        );
    }
}
