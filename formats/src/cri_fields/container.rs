//! `ContainerConfig` fields: environment names, the working directory, the log path,
//! masked and read-only paths, sysctls, mount destinations and bind mount options.

use std::path::{Component, Path, PathBuf};

use super::FieldError;

/// An environment variable name from `field` (`envs`, the image's `Env`): not empty,
/// without '=' or NUL, which would make the `NAME=value` entry mean something else.
pub fn env_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.contains('\0') || name.contains('=') {
        return Err(FieldError::new(
            field,
            format!("invalid environment variable name {name:?}"),
        ));
    }
    Ok(())
}

/// The CRI `working_dir`, else the image's WorkingDir, else `/`. A relative CRI value is
/// an error; a relative image value is taken from `/`, as Docker does.
pub fn working_dir(cri: &str, image: Option<&str>) -> Result<String, FieldError> {
    if !cri.is_empty() {
        if !cri.starts_with('/') {
            return Err(FieldError::new(
                "working_dir",
                format!("{cri:?} is not an absolute path"),
            ));
        }
        return Ok(cri.to_string());
    }
    match image.map(str::trim).filter(|s| !s.is_empty()) {
        Some(dir) if dir.starts_with('/') => Ok(dir.to_string()),
        Some(dir) => Ok(format!("/{dir}")),
        None => Ok("/".to_string()),
    }
}

/// `log_path`: the pod's log directory joined with the container's relative log path,
/// which must stay inside it. Empty means no log file.
pub fn log_path(directory: Option<&Path>, relative: &str) -> Result<Option<PathBuf>, FieldError> {
    const FIELD: &str = "log_path";
    if relative.is_empty() {
        return Ok(None);
    }
    let relative = Path::new(relative);
    if relative.is_absolute() {
        return Err(FieldError::new(
            FIELD,
            "must be relative to the pod's log directory",
        ));
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(FieldError::new(FIELD, "must not contain '..'"));
    }
    match directory {
        Some(dir) => Ok(Some(dir.join(relative))),
        None => Err(FieldError::new(
            FIELD,
            "is set but the pod has no log_directory",
        )),
    }
}

/// Paths of the container's filesystem listed in `field` (masked_paths,
/// readonly_paths): each must be absolute.
pub fn absolute_paths(field: &str, paths: &[String]) -> Result<(), FieldError> {
    for p in paths {
        if !p.starts_with('/') {
            return Err(FieldError::new(
                field,
                format!("{p:?} is not an absolute path"),
            ));
        }
    }
    Ok(())
}

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    Ipc,
    Uts,
    Net,
}

/// The namespace the sysctl `name` (dotted form) belongs to, or `None` when it is
/// node-wide.
pub fn sysctl_namespace(name: &str) -> Option<SysctlNamespace> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(SysctlNamespace::Ipc)
    } else if name == "kernel.domainname" {
        Some(SysctlNamespace::Uts)
    } else if name.starts_with("net.") {
        Some(SysctlNamespace::Net)
    } else {
        None
    }
}

/// The dotted form of a sysctl name. Kubernetes accepts slashes as separators too
/// (net/ipv4/conf/eth0.100/forwarding), where a dot is part of a name: the two swap.
pub fn sysctl_name(raw: &str) -> String {
    if !raw.contains('/') {
        return raw.to_string();
    }
    raw.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// Which of the namespaces sysctls live in the container shares with the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SharedWithNode {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// A sysctl of `linux.sysctls`, in its dotted form: accepted only when it belongs to a
/// namespace the container does not share with the node.
pub fn sysctl(raw: &str, shared: SharedWithNode) -> Result<String, FieldError> {
    const FIELD: &str = "linux.sysctls";
    let name = sysctl_name(raw);
    let shared_with_node = match sysctl_namespace(&name) {
        None => {
            return Err(FieldError::new(
                FIELD,
                format!("{raw:?} is not a namespaced sysctl"),
            ));
        }
        Some(SysctlNamespace::Net) => shared.network,
        Some(SysctlNamespace::Ipc) => shared.ipc,
        Some(SysctlNamespace::Uts) => shared.uts,
    };
    if shared_with_node {
        return Err(FieldError::new(
            FIELD,
            format!("{raw:?} would change the node: the pod shares that namespace with it"),
        ));
    }
    Ok(name)
}

/// `/a/./b/` → `/a/b`; `None` for relative paths or paths with `..`.
pub fn clean_container_path(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `mounts[i].container_path`, cleaned: absolute, without `..`.
pub fn mount_destination(i: usize, path: &str) -> Result<PathBuf, FieldError> {
    clean_container_path(path).ok_or_else(|| {
        FieldError::new(
            format!("mounts[{i}].container_path"),
            format!("{path:?} must be an absolute path without \"..\""),
        )
    })
}

/// `mounts[i].host_path` before it is resolved: given and absolute.
pub fn mount_source(i: usize, path: &str) -> Result<(), FieldError> {
    if path.is_empty() || !Path::new(path).is_absolute() {
        return Err(FieldError::new(
            format!("mounts[{i}].host_path"),
            format!("{path:?} must be an absolute path"),
        ));
    }
    Ok(())
}

/// `Mount.mount_options` a bind mount takes (RuntimeFeatures.mount_options): flags that
/// only restrict what the container can do with the mount. Read-only goes through
/// `readonly`; anything that changes the source or propagation is not an option here.
pub const BIND_OPTIONS: &[&str] = &[
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
    "nodiratime",
    "relatime",
    "strictatime",
];

/// `mounts[i].mount_options[j]`: one of [`BIND_OPTIONS`].
pub fn bind_option(i: usize, j: usize, option: &str) -> Result<(), FieldError> {
    if BIND_OPTIONS.contains(&option) {
        return Ok(());
    }
    Err(FieldError::new(
        format!("mounts[{i}].mount_options[{j}]"),
        format!(
            "{option:?} is not a bind mount option criox applies (one of {})",
            BIND_OPTIONS.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert!(env_name("envs", "PATH").is_ok());
        for bad in ["", "=x", "A=B", "A\0"] {
            assert_eq!(env_name("envs", bad).unwrap_err().field, "envs");
        }
    }

    #[test]
    fn working_dir_rules() {
        assert_eq!(working_dir("", None).unwrap(), "/");
        assert_eq!(working_dir("", Some("/srv")).unwrap(), "/srv");
        assert_eq!(working_dir("", Some("app")).unwrap(), "/app");
        assert_eq!(working_dir("", Some("  ")).unwrap(), "/");
        assert_eq!(working_dir("/w", Some("/srv")).unwrap(), "/w");
        let e = working_dir("rel", None).unwrap_err();
        assert_eq!(e.field, "working_dir");
    }

    #[test]
    fn log_paths_stay_inside_the_pod_log_directory() {
        let dir = Path::new("/var/log/pods/p");
        assert_eq!(
            log_path(Some(dir), "app/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/p/app/0.log"))
        );
        assert_eq!(log_path(Some(dir), "").unwrap(), None);
        for bad in ["../x.log", "app/../../x.log", "/etc/passwd"] {
            assert_eq!(log_path(Some(dir), bad).unwrap_err().field, "log_path");
        }
        assert!(log_path(None, "a.log").is_err());
    }

    #[test]
    fn paths_must_be_absolute() {
        let field = "linux.security_context.masked_paths";
        assert!(absolute_paths(field, &["/proc/x".into()]).is_ok());
        let e = absolute_paths(field, &["/a".into(), "rel".into()]).unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.message.contains("\"rel\""), "{e}");
    }

    #[test]
    fn sysctls_namespaced_only() {
        let own = SharedWithNode::default();
        assert_eq!(
            sysctl("net/ipv4/ip_unprivileged_port_start", own).unwrap(),
            "net.ipv4.ip_unprivileged_port_start"
        );
        assert_eq!(
            sysctl("net/ipv4/conf/eth0.100/forwarding", own).unwrap(),
            "net.ipv4.conf.eth0/100.forwarding"
        );
        let host_net = SharedWithNode {
            network: true,
            ..own
        };
        assert!(sysctl("net.ipv4.ip_forward", host_net).is_err());
        assert!(sysctl("kernel.shm_rmid_forced", host_net).is_ok());
        let host_uts = SharedWithNode { uts: true, ..own };
        assert!(sysctl("kernel.domainname", host_uts).is_err());
        let e = sysctl("vm.swappiness", own).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.sysctls: \"vm.swappiness\""),
            "{e}"
        );
    }

    #[test]
    fn mount_fields() {
        assert_eq!(
            mount_destination(0, "/a/./b/").unwrap(),
            PathBuf::from("/a/b")
        );
        for bad in ["x", "/a/../b", ""] {
            let e = mount_destination(3, bad).unwrap_err();
            assert_eq!(e.field, "mounts[3].container_path");
        }
        assert!(mount_source(0, "/tmp").is_ok());
        assert_eq!(
            mount_source(1, "relative/dir").unwrap_err().field,
            "mounts[1].host_path"
        );
        assert!(bind_option(0, 0, "noexec").is_ok());
        let e = bind_option(0, 1, "suid").unwrap_err();
        assert_eq!(e.field, "mounts[0].mount_options[1]");
        assert!(e.message.contains("suid"), "{e}");
    }
}
