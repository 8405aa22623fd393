//! Checks of a pod request: each failure names the field. The checks of single fields
//! live in [`criox_formats::cri_fields`]; here they are applied to a [`PodSpec`] along
//! with those that depend on the node's configuration.

use criox_formats::cri_fields::{FieldError, pod};

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

impl From<FieldError> for Invalid {
    fn from(e: FieldError) -> Invalid {
        Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

pub fn spec(spec: &PodSpec) -> Result<(), Invalid> {
    for (field, value) in [
        ("config.metadata.name", &spec.name),
        ("config.metadata.namespace", &spec.namespace),
        ("config.metadata.uid", &spec.uid),
    ] {
        pod::metadata(field, value)?;
    }
    pod::hostname(&spec.hostname)?;
    pod::log_directory(&spec.log_directory)?;
    // Under the systemd driver the kubelet names a slice (kubepods-besteffort-pod<uid>.slice).
    if crate::cgroup_driver::is_systemd() {
        pod::cgroup_slice(&spec.cgroup_parent)?;
    } else {
        pod::cgroup_path(&spec.cgroup_parent)?;
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
    check_userns(spec)?;
    for (i, port) in spec.port_mappings.iter().enumerate() {
        pod::port_mapping(i, port.container_port, port.host_port, &port.host_ip)?;
    }
    for (key, value) in &spec.sysctls {
        pod::sysctl(
            key,
            value,
            spec.network_mode == NamespaceMode::Node,
            spec.ipc_mode == NamespaceMode::Node,
        )?;
    }
    Ok(())
}

/// What a pod with its own user namespace may not have besides (host namespaces,
/// privilege): see [`criox_formats::cri_fields::userns::check_pod`].
fn check_userns(spec: &PodSpec) -> Result<(), Invalid> {
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
