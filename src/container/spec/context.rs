//! What the pod and the node contribute to every container's spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Capabilities;

use super::capabilities;
use super::namespaces::{PodNamespace, PodPid};

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
    /// The pod's own user namespace, which every container joins.
    pub userns: Option<PodUserns>,
}

/// A pod's user namespace: pinned at `path`, made with these mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUserns {
    pub path: PathBuf,
    pub uids: IdRange,
    pub gids: IdRange,
}

/// One id mapping, as CRI's IDMapping and the OCI spec's LinuxIdMapping give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub host_id: u32,
    pub container_id: u32,
    pub length: u32,
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
    /// The AppArmor profile for RuntimeDefault where AppArmor is on: its name once it is
    /// loaded, or why it could not be.
    pub apparmor_default_profile: Result<String, String>,
    /// The daemon's own oom_score_adj: without CAP_SYS_RESOURCE nothing can go lower.
    pub oom_score_adj_floor: i32,
    /// The runtime handler supports `rro` (recursive read-only) mount options.
    pub recursive_read_only: bool,
    /// Under the systemd driver, the runtime handler makes the container's scope itself
    /// (runc driven with `--systemd-cgroup`): the cgroupsPath is `slice:criox:<id>`.
    pub runtime_systemd_cgroup: bool,
    /// Where the host's device nodes are, for privileged containers.
    pub dev_dir: PathBuf,
    /// The capabilities containers can be given: the runtime's own bounding set.
    pub capabilities: Capabilities,
}

impl NodeFacts {
    /// Reads what the node offers. `recursive_read_only` and `runtime_systemd_cgroup` start
    /// false: the caller knows the runtime handler.
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
            apparmor_default_profile: if apparmor {
                crate::container::apparmor::ensure_default_profile().inspect_err(|why| {
                    tracing::warn!(
                        "containers asking for RuntimeDefault AppArmor will be refused: {why}"
                    )
                })
            } else {
                Err("AppArmor is off on this node".to_string())
            },
            oom_score_adj_floor,
            recursive_read_only: false,
            runtime_systemd_cgroup: false,
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
    criox_runtime::mountinfo::current()
        .iter()
        .any(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "hugetlb"))
}
