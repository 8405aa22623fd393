//! The container's mounts: the kernel filesystems every container has, the pod's files
//! (/etc/hostname, /etc/hosts, /etc/resolv.conf, /dev/shm), and the CRI bind mounts with
//! their propagation. A CRI mount replaces a default one at the same destination.

use std::path::{Path, PathBuf};

use criox_formats::cri_fields::container as cri_fields;
use criox_proto::v1::{self, MountPropagation};
use oci_spec::runtime::{Mount, MountBuilder};

use super::error::{Result, SpecError};

/// How the host side of a bind mount must propagate for the requested mode to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPropagation {
    /// `rshared` (bidirectional): the host mount holding the source must be shared.
    Shared,
    /// `rslave` (host to container): the host mount must be shared or a slave.
    SharedOrSlave,
}

/// A host path whose mount the manager must make shared (or leave shared/slave) before
/// the container starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationRequirement {
    pub host_path: PathBuf,
    pub need: HostPropagation,
}

/// The pod's files that containers bind-mount; `None` means the pod has no such file.
#[derive(Debug, Clone, Default)]
pub struct PodFiles<'a> {
    pub hostname: Option<&'a Path>,
    pub hosts: Option<&'a Path>,
    pub resolv_conf: Option<&'a Path>,
    /// The pod's shared /dev/shm; `None` gives the container a private one.
    pub shm: Option<&'a Path>,
    /// IPC is the node's: /dev/shm is the node's as well.
    pub host_ipc: bool,
}

#[derive(Debug)]
pub struct MountPlan {
    pub mounts: Vec<Mount>,
    pub propagation: Vec<PropagationRequirement>,
    /// `rshared` or `rslave` for the container's root when a mount needs it.
    pub rootfs_propagation: Option<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn kernel_mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(strings(options))
        .build()?)
}

fn bind_mount(dest: &Path, source: &Path, options: Vec<String>) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

/// /proc, /dev, /dev/pts, /dev/mqueue, /sys and /sys/fs/cgroup; sysfs and cgroupfs are
/// writable only for privileged containers.
fn kernel_mounts(privileged: bool) -> Result<Vec<Mount>> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    Ok(vec![
        kernel_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        kernel_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        kernel_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        kernel_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        kernel_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        )?,
        kernel_mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        )?,
    ])
}

fn pod_mounts(files: &PodFiles<'_>, readonly_rootfs: bool) -> Result<Vec<Mount>> {
    let ro = if readonly_rootfs { "ro" } else { "rw" };
    let mut mounts = Vec::new();
    for (dest, source) in [
        ("/etc/hostname", files.hostname),
        ("/etc/hosts", files.hosts),
        ("/etc/resolv.conf", files.resolv_conf),
    ] {
        if let Some(source) = source {
            mounts.push(bind_mount(
                Path::new(dest),
                source,
                strings(&["rbind", "rprivate", ro]),
            )?);
        }
    }
    let shm_options = strings(&["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"]);
    if files.host_ipc {
        mounts.push(bind_mount(
            Path::new("/dev/shm"),
            Path::new("/dev/shm"),
            shm_options,
        )?);
    } else if let Some(shm) = files.shm {
        mounts.push(bind_mount(Path::new("/dev/shm"), shm, shm_options)?);
    } else {
        mounts.push(kernel_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?);
    }
    Ok(mounts)
}

fn cri_mount(
    i: usize,
    m: &v1::Mount,
    rro_supported: bool,
) -> Result<(Mount, Option<PropagationRequirement>)> {
    let field = |name: &str| format!("mounts[{i}].{name}");
    if m.image.as_ref().is_some_and(|img| !img.image.is_empty()) {
        return Err(SpecError::invalid(
            field("image"),
            "image volume mounts are not supported",
        ));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(SpecError::invalid(
            field("uidMappings"),
            "id-mapped mounts are not supported",
        ));
    }
    let dest = cri_fields::mount_destination(i, &m.container_path)?;
    cri_fields::mount_source(i, &m.host_path)?;
    // The CRI asks for symlinks in the host path to be followed; the runtime then mounts
    // the real file, and the existence check comes for free.
    let source = std::fs::canonicalize(&m.host_path).map_err(|e| {
        SpecError::invalid(
            field("host_path"),
            format!(
                "{:?} does not exist or cannot be resolved: {e}",
                m.host_path
            ),
        )
    })?;

    let propagation = MountPropagation::try_from(m.propagation).map_err(|_| {
        SpecError::invalid(
            field("propagation"),
            format!("unknown propagation {}", m.propagation),
        )
    })?;
    let (mode, need) = match propagation {
        MountPropagation::PropagationPrivate => ("rprivate", None),
        MountPropagation::PropagationHostToContainer => {
            ("rslave", Some(HostPropagation::SharedOrSlave))
        }
        MountPropagation::PropagationBidirectional => ("rshared", Some(HostPropagation::Shared)),
    };
    let mut options = strings(&["rbind", mode, if m.readonly { "ro" } else { "rw" }]);
    for (j, option) in m.mount_options.iter().enumerate() {
        cri_fields::bind_option(i, j, option)?;
        if !options.contains(option) {
            options.push(option.clone());
        }
    }
    if m.recursive_read_only {
        if !m.readonly {
            return Err(SpecError::invalid(
                field("recursive_read_only"),
                "requires readonly to be set",
            ));
        }
        if propagation != MountPropagation::PropagationPrivate {
            return Err(SpecError::invalid(
                field("recursive_read_only"),
                "requires private propagation",
            ));
        }
        if !rro_supported {
            return Err(SpecError::invalid(
                field("recursive_read_only"),
                "the runtime handler does not support recursive read-only mounts",
            ));
        }
        options.push("rro".to_string());
    }
    let requirement = need.map(|need| PropagationRequirement {
        host_path: source.clone(),
        need,
    });
    Ok((bind_mount(&dest, &source, options)?, requirement))
}

/// All mounts of the container, parents before children.
pub fn plan(
    cri: &[v1::Mount],
    files: &PodFiles<'_>,
    privileged: bool,
    readonly_rootfs: bool,
    rro_supported: bool,
) -> Result<MountPlan> {
    let mut user_mounts = Vec::new();
    let mut propagation = Vec::new();
    for (i, m) in cri.iter().enumerate() {
        let (mount, need) = cri_mount(i, m, rro_supported)?;
        propagation.extend(need);
        user_mounts.push(mount);
    }
    // Mount parents first: a bind over /data/logs must come after one over /data.
    user_mounts.sort_by_key(|m| m.destination().components().count());

    let overridden = |m: &Mount| {
        user_mounts
            .iter()
            .any(|u| u.destination() == m.destination())
    };
    let mut mounts: Vec<Mount> = kernel_mounts(privileged)?
        .into_iter()
        .chain(pod_mounts(files, readonly_rootfs)?)
        .filter(|m| !overridden(m))
        .collect();
    mounts.extend(user_mounts);

    let rootfs_propagation = if propagation
        .iter()
        .any(|p| p.need == HostPropagation::Shared)
    {
        Some("rshared".to_string())
    } else if !propagation.is_empty() {
        Some("rslave".to_string())
    } else {
        None
    };
    Ok(MountPlan {
        mounts,
        propagation,
        rootfs_propagation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(container: &str, host: &str) -> v1::Mount {
        v1::Mount {
            container_path: container.to_string(),
            host_path: host.to_string(),
            ..Default::default()
        }
    }

    fn find<'a>(plan: &'a MountPlan, dest: &str) -> Vec<&'a Mount> {
        plan.mounts
            .iter()
            .filter(|m| m.destination() == Path::new(dest))
            .collect()
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn defaults_are_present_and_read_only_for_sysfs() {
        let plan = plan(&[], &PodFiles::default(), false, false, true).unwrap();
        for dest in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/shm",
        ] {
            assert_eq!(find(&plan, dest).len(), 1, "{dest}");
        }
        assert!(options(find(&plan, "/sys")[0]).contains(&"ro".to_string()));
        assert!(plan.propagation.is_empty());
        assert_eq!(plan.rootfs_propagation, None);
    }

    #[test]
    fn privileged_gets_writable_sysfs_and_cgroupfs() {
        let plan = plan(&[], &PodFiles::default(), true, false, true).unwrap();
        assert!(options(find(&plan, "/sys")[0]).contains(&"rw".to_string()));
        assert!(options(find(&plan, "/sys/fs/cgroup")[0]).contains(&"rw".to_string()));
    }

    #[test]
    fn pod_files_are_bound_and_follow_readonly_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let shm = dir.path().join("shm");
        let files = PodFiles {
            hostname: Some(&hosts),
            hosts: Some(&hosts),
            resolv_conf: Some(&hosts),
            shm: Some(&shm),
            host_ipc: false,
        };
        let plan = plan(&[], &files, false, true, true).unwrap();
        let h = find(&plan, "/etc/hosts")[0];
        assert_eq!(h.source().as_deref(), Some(hosts.as_path()));
        assert!(options(h).contains(&"ro".to_string()));
        let s = find(&plan, "/dev/shm")[0];
        assert_eq!(s.source().as_deref(), Some(shm.as_path()));
        assert!(options(s).contains(&"rw".to_string()));
    }

    #[test]
    fn host_ipc_uses_the_node_shm() {
        let files = PodFiles {
            host_ipc: true,
            ..Default::default()
        };
        let plan = plan(&[], &files, false, false, true).unwrap();
        assert_eq!(
            find(&plan, "/dev/shm")[0].source().as_deref(),
            Some(Path::new("/dev/shm"))
        );
    }

    #[test]
    fn cri_mount_propagation_readonly_and_ordering() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let mut deep = mount("/data/logs", b.to_str().unwrap());
        deep.propagation = MountPropagation::PropagationHostToContainer as i32;
        let mut top = mount("/data/", a.to_str().unwrap());
        top.propagation = MountPropagation::PropagationBidirectional as i32;
        top.readonly = true;
        let plan = plan(&[deep, top], &PodFiles::default(), false, false, true).unwrap();
        let n = plan.mounts.len();
        assert_eq!(plan.mounts[n - 2].destination(), Path::new("/data"));
        assert_eq!(plan.mounts[n - 1].destination(), Path::new("/data/logs"));
        assert_eq!(options(&plan.mounts[n - 2]), vec!["rbind", "rshared", "ro"]);
        assert_eq!(options(&plan.mounts[n - 1]), vec!["rbind", "rslave", "rw"]);
        assert_eq!(plan.rootfs_propagation.as_deref(), Some("rshared"));
        assert_eq!(
            plan.propagation,
            vec![
                PropagationRequirement {
                    host_path: std::fs::canonicalize(&b).unwrap(),
                    need: HostPropagation::SharedOrSlave
                },
                PropagationRequirement {
                    host_path: std::fs::canonicalize(&a).unwrap(),
                    need: HostPropagation::Shared
                },
            ]
        );
    }

    #[test]
    fn cri_mount_replaces_pod_file_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real-hosts");
        std::fs::write(&real, "127.0.0.1 x\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let pod_hosts = dir.path().join("pod-hosts");
        let files = PodFiles {
            hosts: Some(&pod_hosts),
            ..Default::default()
        };
        let plan = plan(
            &[mount("/etc/hosts", link.to_str().unwrap())],
            &files,
            false,
            false,
            true,
        )
        .unwrap();
        let hosts = find(&plan, "/etc/hosts");
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(std::fs::canonicalize(&real).unwrap().as_path())
        );
    }

    #[test]
    fn recursive_read_only_rules() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = mount("/ro", dir.path().to_str().unwrap());
        m.recursive_read_only = true;
        let e = plan(&[m.clone()], &PodFiles::default(), false, false, true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("mounts[0].recursive_read_only: requires readonly")
        );
        m.readonly = true;
        let p = plan(&[m.clone()], &PodFiles::default(), false, false, true).unwrap();
        assert!(options(p.mounts.last().unwrap()).contains(&"rro".to_string()));
        let e = plan(&[m], &PodFiles::default(), false, false, false).unwrap_err();
        assert!(e.to_string().contains("does not support"));
    }

    #[test]
    fn bind_options_are_added_from_the_allowlist_only() {
        let mut m = mount("/data", "/tmp");
        m.mount_options = vec!["noexec".into(), "nosuid".into(), "noexec".into()];
        let (made, _) = cri_mount(0, &m, false).unwrap();
        assert_eq!(
            options(&made),
            vec!["rbind", "rprivate", "rw", "noexec", "nosuid"]
        );
        m.mount_options = vec!["nodev".into(), "suid".into()];
        let e = cri_mount(0, &m, false).unwrap_err().to_string();
        assert!(
            e.contains("mounts[0].mount_options[1]") && e.contains("suid"),
            "{e}"
        );
    }

    #[test]
    fn bad_mounts_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let dir = dir.path().to_str().unwrap();
        for (container_path, host_path, field) in [
            ("/x", missing.to_str().unwrap(), "mounts[0].host_path: "),
            ("x", dir, "mounts[0].container_path: "),
            ("/a/../b", dir, "mounts[0].container_path: "),
            ("/x", "relative/dir", "mounts[0].host_path: "),
        ] {
            let e = plan(
                &[mount(container_path, host_path)],
                &PodFiles::default(),
                false,
                false,
                true,
            )
            .unwrap_err();
            assert!(e.to_string().starts_with(field), "{container_path}: {e}");
        }
    }
}
