//! The daemon's container manager and spec builder, driven without a daemon: what the pod
//! manager would hand them.

use std::collections::BTreeMap;

use criox::container::{PodNamespace, PodPid, PodSpecContext};

/// A pod on the node's network with IPC and UTS namespaces of its own and a PID namespace
/// per container, no pod files and no user namespace. Tests name it and set its cgroup
/// parent with struct update syntax.
pub fn pod_context() -> PodSpecContext {
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
        userns: None,
    }
}
