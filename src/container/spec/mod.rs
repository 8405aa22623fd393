//! CRI container config + image config + pod → OCI runtime spec.
//!
//! This is the one place outside the server that reads CRI messages: the container config
//! has too many fields for a copy into our own types to be worth it. Everything else the
//! translation needs comes in as [`PodSpecContext`] (filled by the pod manager) and
//! [`NodeFacts`] (what this node and the chosen runtime handler can do).
//!
//! Each concern has a file here: the process (`process`), the mounts, devices,
//! namespaces, resources and cgroup, capabilities, seccomp and the other security
//! settings, the annotations, and what the pod and node contribute (`context`).

pub mod annotations;
pub(super) mod capabilities;
mod context;
mod devices;
pub(super) mod error;
pub(super) mod mounts;
pub(super) mod namespaces;
mod process;
pub(super) mod resources;
pub(super) mod seccomp;
mod security;
pub(crate) mod stop_signal;

#[cfg(test)]
pub(crate) mod tests;

use std::path::Path;

use criox_proto::v1;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceCgroup, LinuxIdMappingBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

pub use self::context::{IdRange, NodeFacts, PodSpecContext, PodUserns};
use self::error::Result;
pub use self::error::SpecError;
pub use self::mounts::PropagationRequirement;
pub use self::namespaces::{PodNamespace, PodPid};
use self::process::{DEFAULT_PATH, Environment};
pub use super::user::ResolvedUser;
use super::user::{ImageUsers, UserRequest};

/// The OCI runtime-spec version the produced spec follows.
pub const OCI_VERSION: &str = "1.0.2";

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
            user: pod.userns.as_ref(),
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
        // The CRI carries values as bytes; an OCI process environment holds strings.
        let value = std::str::from_utf8(&kv.value)
            .map_err(|_| SpecError::invalid(format!("envs[{i}].value"), "not valid UTF-8"))?;
        env.set(&kv.key, value);
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
    let stop_signal = match stop_signal::from_cri(config.stop_signal)? {
        Some(signal) => signal,
        None => process::stop_signal(image.and_then(|c| c.stop_signal().as_deref()))?,
    };

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
        &node.apparmor_default_profile,
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
        device_nodes = devices::merge(devices::host_devices(&node.dev_dir), device_nodes);
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
        .cgroups_path(resources::cgroups_path(
            &pod.cgroup_parent,
            input.id,
            node.runtime_systemd_cgroup,
        )?)
        .devices(device_nodes)
        .masked_paths(masked)
        .readonly_paths(readonly_paths)
        .sysctl(sysctls);
    if let Some(profile) = seccomp_profile {
        linux_builder = linux_builder.seccomp(profile);
    }
    // The namespace is joined by path, so nothing writes these; they say which host ids
    // the container's root has (runc reads them to own what it creates for the container).
    if let Some(u) = &pod.userns {
        let mapping = |r: &IdRange| {
            LinuxIdMappingBuilder::default()
                .host_id(r.host_id)
                .container_id(r.container_id)
                .size(r.length)
                .build()
        };
        linux_builder = linux_builder
            .uid_mappings(vec![mapping(&u.uids)?])
            .gid_mappings(vec![mapping(&u.gids)?]);
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
        .annotations(annotations::spec_annotations(input)?)
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
