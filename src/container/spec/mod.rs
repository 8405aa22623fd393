//! CRI container config + image config + pod → OCI runtime spec.
//!
//! This is the one place outside the server that reads CRI messages: the container config
//! has too many fields for a copy into our own types to be worth it. Everything else the
//! translation needs comes in as [`PodSpecContext`] (filled by the pod manager) and
//! [`NodeFacts`] (what this node and the chosen runtime handler can do).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use criox_proto::v1;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxDeviceCgroup, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::error::Result;
pub use super::error::SpecError;
pub use super::mounts::PropagationRequirement;
pub use super::namespaces::{PodNamespace, PodPid};
use super::process::{DEFAULT_PATH, Environment};
pub use super::user::ResolvedUser;
use super::user::{ImageUsers, UserRequest};
use super::{capabilities, devices, mounts, namespaces, process, resources, seccomp, security};

/// The OCI runtime-spec version the produced spec follows.
pub const OCI_VERSION: &str = "1.0.2";

/// Spec annotation keys, as containerd's CRI plugin writes them.
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const CONTAINER_TYPE_CONTAINER: &str = "container";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// Ours: the pod's runtime handler (RuntimeClass) that runs the container.
    pub const RUNTIME_HANDLER: &str = "io.criox.runtime-handler";
    /// Ours: the container's CRI labels as a JSON object, so that the spec alone says
    /// which container it describes.
    pub const LABELS: &str = "io.criox.labels";
}

/// What the pod contributes to each of its containers. The pod manager fills it when the
/// pod is created and keeps it with the pod.
#[derive(Debug, Clone)]
pub struct PodSpecContext {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The pod's hostname; set in the spec when the container has the pod's UTS namespace.
    pub hostname: String,
    pub network: PodNamespace,
    pub ipc: PodNamespace,
    /// The node's when the pod is on the host network.
    pub uts: PodNamespace,
    pub pid: PodPid,
    /// Host files bind-mounted at /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub hostname_path: Option<PathBuf>,
    pub hosts_path: Option<PathBuf>,
    pub resolv_conf_path: Option<PathBuf>,
    /// The pod's shared /dev/shm (a tmpfs the pod mounted); `None`: one per container.
    pub shm_path: Option<PathBuf>,
    /// Absolute cgroupfs path of the pod's cgroup, e.g. `/kubepods/besteffort/pod<uid>`;
    /// empty puts containers under `/criox`.
    pub cgroup_parent: String,
    /// The pod's `linux.sysctls`.
    pub sysctls: BTreeMap<String, String>,
    pub runtime_handler: String,
    /// The pod's `security_context.privileged`: privileged containers need it.
    pub privileged: bool,
}

/// What this node and the pod's runtime handler support. [`NodeFacts::detect`] reads the
/// node; the runtime handler's features are the caller's to set.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The unified (v2-only) cgroup hierarchy is in use.
    pub cgroup_v2: bool,
    /// Swap accounting is on (memsw / memory.swap.max exist).
    pub swap_accounting: bool,
    /// Containers' cgroups have the hugetlb controller. The kubelet sends a limit for
    /// every huge page size the kernel knows, and the runtime refuses to create a
    /// container with a limit it cannot set.
    pub hugetlb: bool,
    pub apparmor: bool,
    /// The AppArmor profile for RuntimeDefault, when one is loaded on the node.
    pub apparmor_default_profile: Option<String>,
    /// The daemon's own oom_score_adj: without CAP_SYS_RESOURCE nothing can go lower.
    pub oom_score_adj_floor: i32,
    /// The runtime handler supports `rro` (recursive read-only) mount options.
    pub recursive_read_only: bool,
    /// Where the host's device nodes are, for privileged containers.
    pub dev_dir: PathBuf,
    /// The capabilities containers can be given: the runtime's own bounding set.
    pub capabilities: Capabilities,
}

impl NodeFacts {
    /// Reads what the node offers. `recursive_read_only` starts false: the caller knows
    /// the runtime handler.
    pub fn detect() -> Self {
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let swap_accounting = if cgroup_v2 {
            Path::new("/sys/fs/cgroup/memory.swap.max").exists()
                || std::fs::read_dir("/sys/fs/cgroup")
                    .map(|d| {
                        d.flatten()
                            .any(|e| e.path().join("memory.swap.max").exists())
                    })
                    .unwrap_or(false)
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        let oom_score_adj_floor = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        NodeFacts {
            cgroup_v2,
            swap_accounting,
            hugetlb: hugetlb_controller(cgroup_v2),
            apparmor,
            apparmor_default_profile: None,
            oom_score_adj_floor,
            recursive_read_only: false,
            dev_dir: PathBuf::from("/dev"),
            capabilities: capabilities::own_bounding_set(),
        }
    }
}

/// Whether the hugetlb controller serves containers: in the unified hierarchy's
/// controllers on a v2 node, or as a mounted v1 hierarchy otherwise (a hybrid node may
/// list it only in its cgroup2 mount, where a v1 cgroup manager cannot use it).
fn hugetlb_controller(cgroup_v2: bool) -> bool {
    if cgroup_v2 {
        return std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|n| n == "hugetlb"));
    }
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| {
        text.lines().any(|line| {
            let Some((_, right)) = line.split_once(" - ") else {
                return false;
            };
            let mut fields = right.split(' ');
            fields.next() == Some("cgroup")
                && fields
                    .nth(1)
                    .is_some_and(|opts| opts.split(',').any(|o| o == "hugetlb"))
        })
    })
}

/// Everything about one container the spec is built from.
#[derive(Debug, Clone, Copy)]
pub struct ContainerSpecInput<'a> {
    pub id: &'a str,
    /// The container's root filesystem on the host (the mounted overlay).
    pub rootfs: &'a Path,
    pub config: &'a v1::ContainerConfig,
    pub image: &'a ImageConfiguration,
    /// The image reference reported as the container's image (for the annotation).
    pub image_name: &'a str,
    pub pod: &'a PodSpecContext,
    /// The PID namespace of the container `namespace_options.target_id` names, when the
    /// PID mode is TARGET (for example `/proc/<its pid>/ns/pid`).
    pub target_pid_namespace: Option<&'a Path>,
}

/// The built spec and what the manager must do or know besides writing it out.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub spec: Spec,
    /// Host paths whose mounts must be shared (or shared/slave) before the start.
    pub propagation: Vec<PropagationRequirement>,
    /// The signal StopContainer sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
    pub user: ResolvedUser,
}

/// Builds the OCI spec of a container.
pub fn build_container_spec(
    input: &ContainerSpecInput<'_>,
    node: &NodeFacts,
) -> Result<ContainerSpec> {
    let config = input.config;
    let pod = input.pod;
    let image = input.image.config().as_ref();
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !pod.privileged {
        return Err(SpecError::invalid(
            "linux.security_context.privileged",
            "a privileged container needs a privileged pod",
        ));
    }
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);

    // Process: argv, environment, user, working directory.
    let empty = Vec::new();
    let argv = process::argv(
        &config.command,
        &config.args,
        image
            .and_then(|c| c.entrypoint().as_ref())
            .unwrap_or(&empty),
        image.and_then(|c| c.cmd().as_ref()).unwrap_or(&empty),
    )?;

    let users = ImageUsers::load(input.rootfs)?;
    let user = users.resolve(&UserRequest {
        run_as_user: sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
        run_as_username: sc.map_or("", |s| s.run_as_username.as_str()),
        run_as_group: sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
        image_user: image.and_then(|c| c.user().as_deref()).unwrap_or_default(),
        supplemental_groups: sc.map_or(&[], |s| s.supplemental_groups.as_slice()),
        strict_groups: sc.is_some_and(|s| {
            s.supplemental_groups_policy == v1::SupplementalGroupsPolicy::Strict as i32
        }),
    })?;

    let ns = namespaces::plan(
        sc.and_then(|s| s.namespace_options.as_ref()),
        &namespaces::PodNamespaces {
            network: &pod.network,
            ipc: &pod.ipc,
            uts: &pod.uts,
            pid: &pod.pid,
        },
        input.target_pid_namespace,
        node.cgroup_v2,
    )?;

    let mut env = Environment::default();
    env.set("PATH", DEFAULT_PATH);
    if ns.own_uts && !pod.hostname.is_empty() {
        env.set("HOSTNAME", &pod.hostname);
    }
    if config.tty {
        env.set("TERM", "xterm");
    }
    env.set_entries(
        "image config Env",
        image.and_then(|c| c.env().as_ref()).unwrap_or(&empty),
    )?;
    for (i, kv) in config.envs.iter().enumerate() {
        process::validate_name(&format!("envs[{i}].key"), &kv.key)?;
        env.set(&kv.key, &kv.value);
    }
    // Without HOME the runtime would look the user up through the image's NSS, which
    // can load a library from the image into the runtime's process.
    if !env.contains("HOME") {
        env.set("HOME", &user.home);
    }
    let cwd = process::working_dir(
        &config.working_dir,
        image.and_then(|c| c.working_dir().as_deref()),
    )?;
    let stop_signal = process::stop_signal(image.and_then(|c| c.stop_signal().as_deref()))?;

    // Security.
    let (caps, cap_set) = capabilities::build(
        privileged,
        sc.and_then(|s| s.capabilities.as_ref()),
        &node.capabilities,
    )?;
    let seccomp_profile = if privileged {
        None
    } else {
        // Older kubelets still send the string form.
        #[allow(deprecated)]
        let old_path = sc.map_or("", |s| s.seccomp_profile_path.as_str());
        seccomp::select(sc.and_then(|s| s.seccomp.as_ref()), old_path, &cap_set)?
    };
    let apparmor = security::apparmor(
        privileged,
        node.apparmor,
        node.apparmor_default_profile.as_deref(),
        sc,
    )?;
    let (masked, readonly_paths) = security::masked_and_readonly(privileged, sc)?;
    let sysctls = security::sysctls(&pod.sysctls, ns.host_network, ns.host_ipc, ns.own_uts)?;
    let oom_score_adj = resources::oom_score_adj(
        linux
            .and_then(|l| l.resources.as_ref())
            .map_or(0, |r| r.oom_score_adj),
        node.oom_score_adj_floor,
    )?;

    let user_builder = UserBuilder::default()
        .uid(user.uid)
        .gid(user.gid)
        .additional_gids(user.additional_gids.clone());
    // The oci-spec builders start from `Default`, which is a sample container (rlimits,
    // no_new_privileges, a hostname): every such field is set or cleared here.
    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(user_builder.build()?)
        .args(argv)
        .env(env.into_entries())
        .cwd(cwd)
        .capabilities(caps)
        .oom_score_adj(oom_score_adj)
        .build()?;
    // Only ever written as true: libcontainer with seccomp fails on an explicit false.
    process.set_no_new_privileges(sc.is_some_and(|s| s.no_new_privs).then_some(true));
    // Resource limits are inherited from the runtime, as CRI-O does by default.
    process.set_rlimits(None);
    process.set_apparmor_profile(apparmor);

    // Mounts and devices.
    let files = mounts::PodFiles {
        hostname: pod.hostname_path.as_deref(),
        hosts: pod.hosts_path.as_deref(),
        resolv_conf: pod.resolv_conf_path.as_deref(),
        shm: pod.shm_path.as_deref(),
        host_ipc: ns.host_ipc,
    };
    let mount_plan = mounts::plan(
        &config.mounts,
        &files,
        privileged,
        readonly_rootfs,
        node.recursive_read_only,
    )?;

    let (mut device_nodes, requested_rules) = devices::requested(&config.devices)?;
    let mut device_rules: Vec<LinuxDeviceCgroup> = if privileged {
        device_nodes = merge_devices(devices::host_devices(&node.dev_dir), device_nodes);
        vec![devices::allow_all_rule()?]
    } else {
        devices::default_rules()?
    };
    device_rules.extend(requested_rules);

    let mut res = resources::build(
        linux.and_then(|l| l.resources.as_ref()),
        resources::CgroupSupport {
            unified: node.cgroup_v2,
            swap: node.swap_accounting,
        },
    )?;
    if !node.hugetlb {
        res.set_hugepage_limits(None);
    }
    res.set_devices(Some(device_rules));

    let mut linux_builder = LinuxBuilder::default()
        .namespaces(ns.namespaces)
        .resources(res)
        .cgroups_path(cgroups_path(&pod.cgroup_parent, input.id)?)
        .devices(device_nodes)
        .masked_paths(masked)
        .readonly_paths(readonly_paths)
        .sysctl(sysctls);
    if let Some(profile) = seccomp_profile {
        linux_builder = linux_builder.seccomp(profile);
    }
    if let Some(p) = &mount_plan.rootfs_propagation {
        linux_builder = linux_builder.rootfs_propagation(p.clone());
    }

    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(readonly_rootfs)
        .build()?;

    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(root)
        .process(process)
        .mounts(mount_plan.mounts)
        .annotations(spec_annotations(input)?)
        .linux(linux_builder.build()?)
        .build()?;
    spec.set_hostname((ns.own_uts && !pod.hostname.is_empty()).then(|| pod.hostname.clone()));
    spec.set_domainname(None);
    spec.set_hooks(None);

    Ok(ContainerSpec {
        spec,
        propagation: mount_plan.propagation,
        stop_signal,
        user,
    })
}

/// Requested devices win over host devices at the same container path.
fn merge_devices(
    host: Vec<oci_spec::runtime::LinuxDevice>,
    requested: Vec<oci_spec::runtime::LinuxDevice>,
) -> Vec<oci_spec::runtime::LinuxDevice> {
    let mut out: Vec<_> = host
        .into_iter()
        .filter(|h| requested.iter().all(|r| r.path() != h.path()))
        .collect();
    out.extend(requested);
    out
}

/// `<parent>/<id>` in cgroupfs form.
fn cgroups_path(parent: &str, id: &str) -> Result<PathBuf> {
    let parent = if parent.is_empty() { "/criox" } else { parent };
    if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(
            "pod cgroup_parent",
            format!("{parent:?} is not an absolute cgroupfs path"),
        ));
    }
    if id.is_empty() || id.contains('/') || id == ".." {
        return Err(SpecError::invalid(
            "container id",
            format!("{id:?} cannot name a cgroup"),
        ));
    }
    Ok(Path::new(parent).join(id))
}

/// The CRI annotations of the container unchanged, then the keys that say which pod,
/// container and image the spec belongs to.
fn spec_annotations(input: &ContainerSpecInput<'_>) -> Result<HashMap<String, String>> {
    use annotations::*;
    let config = input.config;
    let pod = input.pod;
    let mut out: HashMap<String, String> = config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    for (k, v) in [
        (CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER.to_string()),
        (SANDBOX_ID, pod.id.clone()),
        (SANDBOX_NAME, pod.name.clone()),
        (SANDBOX_NAMESPACE, pod.namespace.clone()),
        (SANDBOX_UID, pod.uid.clone()),
        (CONTAINER_NAME, name),
        (IMAGE_NAME, input.image_name.to_string()),
        (RUNTIME_HANDLER, pod.runtime_handler.clone()),
    ] {
        out.insert(k.to_string(), v);
    }
    if !config.labels.is_empty() {
        let labels: BTreeMap<&String, &String> = config.labels.iter().collect();
        let json = serde_json::to_string(&labels)
            .map_err(|e| SpecError::invalid("labels", format!("cannot be written as JSON: {e}")))?;
        out.insert(LABELS.to_string(), json);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::container::user::tests::image_rootfs;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
    use oci_spec::runtime::{Capability, LinuxNamespaceType};

    pub fn pod() -> PodSpecContext {
        PodSpecContext {
            id: "pod0123".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-1".into(),
            hostname: "web-host".into(),
            network: PodNamespace::Node,
            ipc: PodNamespace::New,
            uts: PodNamespace::New,
            pid: PodPid::Container,
            hostname_path: None,
            hosts_path: None,
            resolv_conf_path: None,
            shm_path: None,
            cgroup_parent: "/kubepods/pod-uid-1".into(),
            sysctls: BTreeMap::new(),
            runtime_handler: "runc".into(),
            privileged: false,
        }
    }

    pub fn node() -> NodeFacts {
        NodeFacts {
            cgroup_v2: false,
            swap_accounting: false,
            hugetlb: true,
            apparmor: false,
            apparmor_default_profile: None,
            oom_score_adj_floor: 0,
            recursive_read_only: false,
            dev_dir: PathBuf::from("/dev"),
            capabilities: crate::container::capabilities::all(),
        }
    }

    pub fn image(user: &str, env: &[&str]) -> ImageConfiguration {
        let config = ConfigBuilder::default()
            .user(user.to_string())
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .entrypoint(vec!["/bin/sh".to_string(), "-c".to_string()])
            .cmd(vec!["echo image".to_string()])
            .working_dir("/srv".to_string())
            .stop_signal("SIGQUIT".to_string())
            .build()
            .unwrap();
        ImageConfigurationBuilder::default()
            .config(config)
            .build()
            .unwrap()
    }

    pub fn security(f: impl FnOnce(&mut v1::LinuxContainerSecurityContext)) -> v1::ContainerConfig {
        let mut sc = v1::LinuxContainerSecurityContext {
            namespace_options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                pid: v1::NamespaceMode::Container as i32,
                ipc: v1::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        f(&mut sc);
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            linux: Some(v1::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            }),
            ..Default::default()
        }
    }

    fn build(
        config: &v1::ContainerConfig,
        img: &ImageConfiguration,
        pod: &PodSpecContext,
    ) -> Result<ContainerSpec> {
        let root = image_rootfs();
        build_container_spec(
            &ContainerSpecInput {
                id: "c1",
                rootfs: root.path(),
                config,
                image: img,
                image_name: "example.com/app:1",
                pod,
                target_pid_namespace: None,
            },
            &node(),
        )
    }

    fn env_of(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn image_defaults_flow_into_the_process() {
        let out = build(&security(|_| {}), &image("alice", &["A=1"]), &pod()).unwrap();
        let p = out.spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo image"]);
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(
            p.user().additional_gids().as_ref().unwrap(),
            &[1000, 10, 29]
        );
        assert_eq!(out.stop_signal, libc::SIGQUIT);
        let env = env_of(&out.spec);
        assert!(env.contains(&"A=1".to_string()));
        assert!(env.contains(&"HOME=/home/alice".to_string()));
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"HOSTNAME=web-host".to_string()));
        assert_eq!(out.spec.hostname().as_deref(), Some("web-host"));
    }

    #[test]
    fn cri_env_wins_and_home_is_kept_when_given() {
        let mut cfg = security(|_| {});
        cfg.envs = vec![
            v1::KeyValue {
                key: "A".into(),
                value: "cri".into(),
            },
            v1::KeyValue {
                key: "HOME".into(),
                value: "/data".into(),
            },
        ];
        let out = build(&cfg, &image("", &["A=1", "PATH=/bin"]), &pod()).unwrap();
        let env = env_of(&out.spec);
        assert!(env.contains(&"A=cri".to_string()));
        assert!(!env.contains(&"A=1".to_string()));
        assert!(env.contains(&"HOME=/data".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn unknown_uid_gets_home_slash() {
        let cfg = security(|s| s.run_as_user = Some(v1::Int64Value { value: 4242 }));
        let out = build(&cfg, &image("alice", &[]), &pod()).unwrap();
        assert!(env_of(&out.spec).contains(&"HOME=/".to_string()));
        assert_eq!(out.user.uid, 4242);
    }

    #[test]
    fn missing_user_error_names_the_field() {
        let cfg = security(|s| s.run_as_username = "x".into());
        let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.security_context.run_as_username: user \"x\" not found in image /etc/passwd"
        );
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn no_new_privs_is_omitted_when_false() {
        let out = build(&security(|_| {}), &image("", &[]), &pod()).unwrap();
        assert_eq!(
            out.spec.process().as_ref().unwrap().no_new_privileges(),
            None
        );
        let json = serde_json::to_string(&out.spec).unwrap();
        assert!(!json.contains("noNewPrivileges"));
        let out = build(
            &security(|s| s.no_new_privs = true),
            &image("", &[]),
            &pod(),
        )
        .unwrap();
        assert_eq!(
            out.spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
    }

    #[test]
    fn privileged_needs_privileged_pod_and_opens_everything() {
        let cfg = security(|s| {
            s.privileged = true;
            s.seccomp = Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            });
        });
        let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.security_context.privileged")
        );
        let mut p = pod();
        p.privileged = true;
        let out = build(&cfg, &image("", &[]), &p).unwrap();
        let linux = out.spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
        let devs = linux.devices().as_ref().unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        let caps = out
            .spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(
            caps.bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
    }

    #[test]
    fn seccomp_runtime_default_and_readonly_rootfs() {
        let cfg = security(|s| {
            s.readonly_rootfs = true;
            s.seccomp = Some(v1::SecurityProfile {
                profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            });
        });
        let out = build(&cfg, &image("", &[]), &pod()).unwrap();
        assert_eq!(out.spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(out.spec.linux().as_ref().unwrap().seccomp().is_some());
    }

    #[test]
    fn namespaces_cgroups_and_annotations() {
        let mut cfg = security(|_| {});
        cfg.annotations.insert("team".into(), "blue".into());
        cfg.labels.insert("app".into(), "web".into());
        let mut p = pod();
        p.network = PodNamespace::Path("/run/criox/netns/pod0123".into());
        let mut cfg_pod_net = cfg.clone();
        if let Some(sc) = cfg_pod_net
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.namespace_options.as_mut().unwrap().network = v1::NamespaceMode::Pod as i32;
        }
        let out = build(&cfg_pod_net, &image("", &[]), &p).unwrap();
        let linux = out.spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/kubepods/pod-uid-1/c1"))
        );
        let net = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(Path::new("/run/criox/netns/pod0123"))
        );
        let a = out.spec.annotations().as_ref().unwrap();
        assert_eq!(a["team"], "blue");
        assert_eq!(a[annotations::CONTAINER_TYPE], "container");
        assert_eq!(a[annotations::SANDBOX_ID], "pod0123");
        assert_eq!(a[annotations::SANDBOX_NAME], "web");
        assert_eq!(a[annotations::SANDBOX_NAMESPACE], "default");
        assert_eq!(a[annotations::CONTAINER_NAME], "app");
        assert_eq!(a[annotations::IMAGE_NAME], "example.com/app:1");
        assert_eq!(a[annotations::LABELS], r#"{"app":"web"}"#);
    }

    #[test]
    fn host_uts_has_no_hostname() {
        let mut p = pod();
        p.uts = PodNamespace::Node;
        let out = build(&security(|_| {}), &image("", &[]), &p).unwrap();
        assert!(out.spec.hostname().is_none());
        assert!(!env_of(&out.spec).iter().any(|e| e.starts_with("HOSTNAME=")));
    }

    #[test]
    fn bad_cgroup_parent_and_resources() {
        let mut p = pod();
        p.cgroup_parent = "kubepods.slice".into();
        let e = build(&security(|_| {}), &image("", &[]), &p).unwrap_err();
        assert!(e.to_string().starts_with("pod cgroup_parent"));
        let mut cfg = security(|_| {});
        cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        });
        let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.memory_limit_in_bytes")
        );
    }

    #[test]
    fn oom_score_adj_is_clamped() {
        let mut cfg = security(|_| {});
        cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
            oom_score_adj: -997,
            ..Default::default()
        });
        let out = build(&cfg, &image("", &[]), &pod()).unwrap();
        assert_eq!(
            out.spec.process().as_ref().unwrap().oom_score_adj(),
            Some(0)
        );
    }

    #[test]
    fn hugepage_limits_are_left_out_without_the_hugetlb_controller() {
        let mut cfg = security(|_| {});
        cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
            hugepage_limits: vec![v1::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            ..Default::default()
        });
        let hugepages = |spec: &Spec| {
            spec.linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| r.hugepage_limits().clone())
        };
        let out = build(&cfg, &image("", &[]), &pod()).unwrap();
        assert_eq!(hugepages(&out.spec).map(|h| h.len()), Some(1));
        let root = image_rootfs();
        let mut without = node();
        without.hugetlb = false;
        let out = build_container_spec(
            &ContainerSpecInput {
                id: "c1",
                rootfs: root.path(),
                config: &cfg,
                image: &image("", &[]),
                image_name: "example.com/app:1",
                pod: &pod(),
                target_pid_namespace: None,
            },
            &without,
        )
        .unwrap();
        assert_eq!(hugepages(&out.spec), None);
    }

    #[test]
    fn sysctls_from_the_pod() {
        let mut p = pod();
        p.sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        let out = build(&security(|_| {}), &image("", &[]), &p).unwrap();
        assert_eq!(
            out.spec
                .linux()
                .as_ref()
                .unwrap()
                .sysctl()
                .as_ref()
                .unwrap()["kernel.shm_rmid_forced"],
            "1"
        );
        p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let e = build(&security(|_| {}), &image("", &[]), &p).unwrap_err();
        assert!(e.to_string().starts_with("linux.sysctls"));
    }

    #[test]
    fn no_sample_defaults_leak_into_the_spec() {
        let out = build(&security(|_| {}), &image("", &[]), &pod()).unwrap();
        let p = out.spec.process().as_ref().unwrap();
        assert_eq!(p.rlimits(), &None);
        let mut hostless = pod();
        hostless.hostname = String::new();
        let out = build(&security(|_| {}), &image("", &[]), &hostless).unwrap();
        assert_eq!(out.spec.hostname(), &None);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let out = build(&security(|_| {}), &image("daemon", &[]), &pod()).unwrap();
        let json = serde_json::to_string_pretty(&out.spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, out.spec);
        assert!(json.contains("\"ociVersion\": \"1.0.2\""));
    }
}
