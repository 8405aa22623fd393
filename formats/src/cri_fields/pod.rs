//! `PodSandboxConfig` fields: metadata, hostname, log directory, cgroup parent, port
//! mappings, sysctls and the annotations that size /dev/shm and shape bandwidth.

use std::path::{Component, Path};

use super::FieldError;
use super::{quantity, slice};

/// Annotation that sets the size of the pod's /dev/shm.
pub const SHM_SIZE_ANNOTATION: &str = "io.criox.shm-size";
/// Annotations of the bandwidth CNI plugin, in bits per second.
pub const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

/// `config.metadata.name`, `.namespace` or `.uid` (given as `field`): these make up
/// paths and names of files, so they may not be empty or hold '/', NUL or newline.
pub fn metadata(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.contains(['/', '\0', '\n']) {
        return Err(FieldError::new(
            field,
            format!("{value:?} contains '/', NUL or newline"),
        ));
    }
    Ok(())
}

/// `config.hostname`; empty means the runtime picks one.
pub fn hostname(name: &str) -> Result<(), FieldError> {
    if name.is_empty() || valid_hostname(name) {
        return Ok(());
    }
    Err(FieldError::new(
        "config.hostname",
        format!(
            "{name:?} is not a valid hostname (at most 64 characters: letters, digits, '-' and '.')"
        ),
    ))
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

/// `config.log_directory`: the kubelet's directory for the pod's container logs; empty
/// means none.
pub fn log_directory(dir: &str) -> Result<(), FieldError> {
    const FIELD: &str = "config.log_directory";
    if dir.is_empty() {
        return Ok(());
    }
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(FieldError::new(
            FIELD,
            format!("{dir:?} is not an absolute path"),
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(FieldError::new(FIELD, format!("{dir:?} contains '..'")));
    }
    Ok(())
}

/// `config.linux.cgroup_parent` as a cgroupfs path (the systemd driver takes a slice
/// name instead); empty means the runtime's default.
pub fn cgroup_path(parent: &str) -> Result<(), FieldError> {
    if parent.is_empty()
        || parent.starts_with('/')
            && !Path::new(parent)
                .components()
                .any(|c| c == Component::ParentDir)
    {
        return Ok(());
    }
    Err(FieldError::new(
        "config.linux.cgroup_parent",
        format!("{parent:?} must be an absolute cgroup path without '..'"),
    ))
}

/// `config.linux.cgroup_parent` as a systemd slice name, for the systemd cgroup driver;
/// empty means the runtime's default.
pub fn cgroup_slice(parent: &str) -> Result<(), FieldError> {
    if parent.is_empty() {
        return Ok(());
    }
    slice::check_slice(parent).map_err(|e| {
        FieldError::new(
            "config.linux.cgroup_parent",
            format!("{e} (runtime.cgroup_manager is systemd)"),
        )
    })
}

/// `config.port_mappings[i]`: ports in range (a host port of 0 asks for none), a host IP
/// that is an address when given.
pub fn port_mapping(
    i: usize,
    container_port: i32,
    host_port: i32,
    host_ip: &str,
) -> Result<(), FieldError> {
    let field = |name: &str| format!("config.port_mappings[{i}].{name}");
    if !(1..=65535).contains(&container_port) {
        return Err(FieldError::new(
            field("container_port"),
            format!("{container_port} is not a port"),
        ));
    }
    if !(0..=65535).contains(&host_port) {
        return Err(FieldError::new(
            field("host_port"),
            format!("{host_port} is not a port"),
        ));
    }
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(FieldError::new(
            field("host_ip"),
            format!("{host_ip:?} is not an IP address"),
        ));
    }
    Ok(())
}

/// The kind of a pod sysctl that may be set: one living in a namespace the pod can own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlKind {
    Ipc,
    Net,
}

/// `config.linux.sysctls[key]`: only sysctls of a namespace the pod owns may be set:
/// net.* needs its own network namespace, the IPC ones its own IPC namespace. Node-wide
/// ones are refused.
pub fn sysctl(
    key: &str,
    value: &str,
    host_network: bool,
    host_ipc: bool,
) -> Result<SysctlKind, FieldError> {
    let field = format!("config.linux.sysctls[{key}]");
    let well_formed = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !well_formed {
        return Err(FieldError::new(field, "is not a sysctl name"));
    }
    if value.contains(['\n', '\0']) || value.is_empty() {
        return Err(FieldError::new(
            field,
            "value is empty or contains a newline",
        ));
    }
    let ipc = key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.");
    if ipc {
        if host_ipc {
            return Err(FieldError::new(
                field,
                "is an IPC sysctl but the pod uses the host IPC namespace",
            ));
        }
        return Ok(SysctlKind::Ipc);
    }
    if key.starts_with("net.") {
        if host_network {
            return Err(FieldError::new(
                field,
                "is a network sysctl but the pod uses the host network",
            ));
        }
        return Ok(SysctlKind::Net);
    }
    Err(FieldError::new(
        field,
        "is not a namespaced sysctl; it would change the whole node",
    ))
}

/// The size of /dev/shm the annotation `io.criox.shm-size` asks for, in bytes.
pub fn shm_size(text: &str) -> Result<u64, FieldError> {
    quantity::parse(text)
        .map_err(|e| format!("not a size such as 64Mi: {e}"))
        .and_then(|size| match size {
            0 => Err("a /dev/shm of 0 bytes".to_string()),
            size => Ok(size),
        })
        .map_err(|message| FieldError::new(annotation(SHM_SIZE_ANNOTATION), message))
}

/// The rate, in bits per second, of the bandwidth annotation `key` whose value is `text`.
pub fn bandwidth(key: &str, text: &str) -> Result<u64, FieldError> {
    quantity::parse(text).map_err(|e| {
        FieldError::new(
            annotation(key),
            format!("not a bandwidth such as 10M (bits per second): {e}"),
        )
    })
}

fn annotation(key: &str) -> String {
    format!("config.annotations[{key}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            metadata("config.metadata.name", "").unwrap_err().field,
            "config.metadata.name"
        );
        assert!(metadata("config.metadata.uid", "a/b").is_err());
        assert!(metadata("config.metadata.uid", "u1").is_ok());
        assert_eq!(hostname("bad_host!").unwrap_err().field, "config.hostname");
        assert!(hostname("").is_ok() && hostname("web-0.example").is_ok());
        assert!(hostname(&"a".repeat(65)).is_err());
        for dir in ["logs/x", "/var/log/../etc"] {
            assert_eq!(
                log_directory(dir).unwrap_err().field,
                "config.log_directory"
            );
        }
        assert!(cgroup_path("/kubepods/pod1").is_ok());
        for parent in ["kubepods", "/a/../b"] {
            assert_eq!(
                cgroup_path(parent).unwrap_err().field,
                "config.linux.cgroup_parent"
            );
        }
        assert!(cgroup_slice("kubepods-besteffort-pod1.slice").is_ok());
        let e = cgroup_slice("/kubepods").unwrap_err();
        assert_eq!(e.field, "config.linux.cgroup_parent");
        assert!(
            e.message.ends_with("(runtime.cgroup_manager is systemd)"),
            "{e}"
        );
        assert_eq!(
            port_mapping(0, 0, 80, "").unwrap_err().field,
            "config.port_mappings[0].container_port"
        );
        assert_eq!(
            port_mapping(1, 80, 65536, "").unwrap_err().field,
            "config.port_mappings[1].host_port"
        );
        assert_eq!(
            port_mapping(2, 80, 0, "localhost").unwrap_err().field,
            "config.port_mappings[2].host_ip"
        );
        assert!(port_mapping(0, 80, 8080, "::1").is_ok());
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        assert_eq!(
            sysctl("net.ipv4.ip_forward", "1", false, false),
            Ok(SysctlKind::Net)
        );
        assert_eq!(
            sysctl("kernel.shmmax", "100000", false, false),
            Ok(SysctlKind::Ipc)
        );
        let e = sysctl("vm.swappiness", "1", false, false).unwrap_err();
        assert_eq!(e.field, "config.linux.sysctls[vm.swappiness]");
        let e = sysctl("net.ipv4.ip_forward", "1", true, false).unwrap_err();
        assert!(e.message.contains("host network"), "{e}");
        assert!(sysctl("kernel.sem", "1", false, true).is_err());
        assert!(sysctl("net..x", "1", false, false).is_err());
        assert!(sysctl("net.x", "", false, false).is_err());
    }

    #[test]
    fn annotations_name_their_key() {
        assert_eq!(shm_size("64Mi"), Ok(64 << 20));
        let e = shm_size("0").unwrap_err();
        assert_eq!(e.field, "config.annotations[io.criox.shm-size]");
        assert!(e.message.contains("0 bytes"), "{e}");
        assert!(shm_size("64m").unwrap_err().message.contains("64Mi"));
        assert_eq!(bandwidth(INGRESS_BANDWIDTH, "10M"), Ok(10_000_000));
        let e = bandwidth(EGRESS_BANDWIDTH, "fast").unwrap_err();
        assert_eq!(
            e.field,
            "config.annotations[kubernetes.io/egress-bandwidth]"
        );
    }
}
