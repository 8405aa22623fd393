//! Checks of a pod request that need no kernel: each failure names the field.

use std::path::{Component, Path};

use super::{NamespaceMode, PodSpec};

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub fn spec(spec: &PodSpec) -> Result<(), Invalid> {
    for (field, value) in [
        ("metadata.name", &spec.name),
        ("metadata.namespace", &spec.namespace),
        ("metadata.uid", &spec.uid),
    ] {
        if value.is_empty() {
            return Err(invalid(format!("config.{field}"), "must not be empty"));
        }
        if value.contains(['/', '\0', '\n']) {
            return Err(invalid(
                format!("config.{field}"),
                format!("{value:?} contains '/', NUL or newline"),
            ));
        }
    }
    if !spec.hostname.is_empty() && !valid_hostname(&spec.hostname) {
        return Err(invalid(
            "config.hostname",
            format!(
                "{:?} is not a valid hostname (at most 64 characters: letters, digits, '-' and '.')",
                spec.hostname
            ),
        ));
    }
    if !spec.log_directory.is_empty() {
        let dir = Path::new(&spec.log_directory);
        if !dir.is_absolute() {
            return Err(invalid(
                "config.log_directory",
                format!("{:?} is not an absolute path", spec.log_directory),
            ));
        }
        if dir.components().any(|c| c == Component::ParentDir) {
            return Err(invalid(
                "config.log_directory",
                format!("{:?} contains '..'", spec.log_directory),
            ));
        }
    }
    // Under the systemd driver the kubelet names a slice (kubepods-besteffort-pod<uid>.slice).
    if !spec.cgroup_parent.is_empty() && crate::cgroup_driver::is_systemd() {
        crate::cgroup_driver::check_slice(&spec.cgroup_parent).map_err(|e| {
            invalid(
                "config.linux.cgroup_parent",
                format!("{e} (runtime.cgroup_manager is systemd)"),
            )
        })?;
    } else if !spec.cgroup_parent.is_empty()
        && (!spec.cgroup_parent.starts_with('/')
            || Path::new(&spec.cgroup_parent)
                .components()
                .any(|c| c == Component::ParentDir))
    {
        return Err(invalid(
            "config.linux.cgroup_parent",
            format!(
                "{:?} must be an absolute cgroup path without '..'",
                spec.cgroup_parent
            ),
        ));
    }
    if spec.pid_mode == NamespaceMode::Target {
        return Err(invalid(
            "config.linux.security_context.namespace_options.pid",
            "TARGET applies to containers, not pods",
        ));
    }
    for mode in [spec.network_mode, spec.ipc_mode] {
        if matches!(mode, NamespaceMode::Container | NamespaceMode::Target) {
            return Err(invalid(
                "config.linux.security_context.namespace_options",
                "network and ipc must be POD or NODE",
            ));
        }
    }
    super::userns::check_pod(spec)?;
    for (i, port) in spec.port_mappings.iter().enumerate() {
        if !(1..=65535).contains(&port.container_port) {
            return Err(invalid(
                format!("config.port_mappings[{i}].container_port"),
                format!("{} is not a port", port.container_port),
            ));
        }
        if !(0..=65535).contains(&port.host_port) {
            return Err(invalid(
                format!("config.port_mappings[{i}].host_port"),
                format!("{} is not a port", port.host_port),
            ));
        }
        if !port.host_ip.is_empty() && port.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                format!("config.port_mappings[{i}].host_ip"),
                format!("{:?} is not an IP address", port.host_ip),
            ));
        }
    }
    for (key, value) in &spec.sysctls {
        sysctl(key, value, spec)?;
    }
    Ok(())
}

fn valid_hostname(name: &str) -> bool {
    name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Only sysctls that live in a namespace the pod owns may be set: net.* needs its own
/// network namespace, the IPC ones its own IPC namespace. Node-wide ones are refused.
fn sysctl(key: &str, value: &str, spec: &PodSpec) -> Result<(), Invalid> {
    let field = format!("config.linux.sysctls[{key}]");
    let well_formed = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !well_formed {
        return Err(invalid(field, "is not a sysctl name"));
    }
    if value.contains(['\n', '\0']) || value.is_empty() {
        return Err(invalid(field, "value is empty or contains a newline"));
    }
    let ipc = key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.");
    if ipc {
        if spec.ipc_mode == NamespaceMode::Node {
            return Err(invalid(
                field,
                "is an IPC sysctl but the pod uses the host IPC namespace",
            ));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if spec.network_mode == NamespaceMode::Node {
            return Err(invalid(
                field,
                "is a network sysctl but the pod uses the host network",
            ));
        }
        return Ok(());
    }
    Err(invalid(
        field,
        "is not a namespaced sysctl; it would change the whole node",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::PortMapping;

    fn pod() -> PodSpec {
        PodSpec {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            ..PodSpec::default()
        }
    }

    fn field_of(spec: &PodSpec) -> String {
        super::spec(spec).unwrap_err().field
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(super::spec(&pod()).is_ok());
        let mut p = pod();
        p.name.clear();
        assert_eq!(field_of(&p), "config.metadata.name");
        let mut p = pod();
        p.hostname = "bad_host!".into();
        assert_eq!(field_of(&p), "config.hostname");
        let mut p = pod();
        p.log_directory = "logs/x".into();
        assert_eq!(field_of(&p), "config.log_directory");
        p.log_directory = "/var/log/../etc".into();
        assert_eq!(field_of(&p), "config.log_directory");
        let mut p = pod();
        p.port_mappings.push(PortMapping {
            protocol: "TCP".into(),
            container_port: 0,
            host_port: 80,
            host_ip: String::new(),
        });
        assert_eq!(field_of(&p), "config.port_mappings[0].container_port");
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        let mut p = pod();
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        p.sysctls.insert("kernel.shmmax".into(), "100000".into());
        assert!(super::spec(&p).is_ok());
        p.sysctls.insert("vm.swappiness".into(), "1".into());
        assert_eq!(field_of(&p), "config.linux.sysctls[vm.swappiness]");
        let mut p = pod();
        p.network_mode = NamespaceMode::Node;
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        assert!(
            super::spec(&p)
                .unwrap_err()
                .message
                .contains("host network")
        );
        let mut p = pod();
        p.sysctls.insert("net..x".into(), "1".into());
        assert!(super::spec(&p).is_err());
    }
}
