//! Pod sandbox RPCs: CRI messages to and from the sandbox manager's own types.

use std::collections::{BTreeMap, HashMap};

use criox_proto::v1::*;
use tonic::Status;

use super::CriServer;
use crate::container::spec::PodSpecContext;
use crate::network::{Dns, PortMapping as PodPort};
use crate::sandbox::{
    self, Invalid, NamespaceMode as Mode, Pod, PodFilter, PodLimits, PodSpec, PodState,
};

pub async fn run_pod_sandbox(
    server: &CriServer,
    req: RunPodSandboxRequest,
) -> Result<RunPodSandboxResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("config: a pod sandbox config is required"))?;
    let spec = spec_from(config, req.runtime_handler)?;
    let id = server.pods.run(spec).await?;
    super::edge::record_pod(&id);
    tracing::info!("pod sandbox ready");
    Ok(RunPodSandboxResponse { pod_sandbox_id: id })
}

pub async fn stop_pod_sandbox(
    server: &CriServer,
    req: StopPodSandboxRequest,
) -> Result<StopPodSandboxResponse, Status> {
    // Stopping is idempotent: an unknown pod has nothing left to stop.
    if let Ok(pod) = server.pods.get(&req.pod_sandbox_id).await {
        server.containers.stop_pod_containers(&pod.id).await?;
    }
    server.pods.stop(&req.pod_sandbox_id).await?;
    Ok(StopPodSandboxResponse {})
}

pub async fn remove_pod_sandbox(
    server: &CriServer,
    req: RemovePodSandboxRequest,
) -> Result<RemovePodSandboxResponse, Status> {
    if let Ok(pod) = server.pods.get(&req.pod_sandbox_id).await {
        server.cpu_rate.forget(&pod.id);
        server.containers.remove_pod_containers(&pod.id).await?;
    }
    server.pods.remove(&req.pod_sandbox_id).await?;
    Ok(RemovePodSandboxResponse {})
}

pub async fn pod_sandbox_status(
    server: &CriServer,
    req: PodSandboxStatusRequest,
) -> Result<PodSandboxStatusResponse, Status> {
    let pod = server.pods.get(&req.pod_sandbox_id).await?;
    let mut info = HashMap::new();
    if req.verbose {
        let check = server.pods.check_network(&pod).await;
        info.insert("info".to_string(), verbose_info(&pod, check));
    }
    Ok(PodSandboxStatusResponse {
        status: Some(pod_status(&pod)),
        info,
        containers_statuses: server
            .containers
            .list(&crate::container::record::Filter {
                pod_id: Some(pod.id.clone()),
                ..Default::default()
            })
            .iter()
            .map(super::containers::to_status)
            .collect(),
        timestamp: 0,
    })
}

/// The CRI status of a pod, as PodSandboxStatus and container events report it.
pub fn pod_status(pod: &Pod) -> PodSandboxStatus {
    let (ip, additional_ips) = match pod.ips.split_first() {
        Some((first, rest)) => (
            first.to_string(),
            rest.iter().map(|ip| PodIp { ip: ip.to_string() }).collect(),
        ),
        None => (String::new(), Vec::new()),
    };
    PodSandboxStatus {
        id: pod.id.clone(),
        metadata: Some(metadata(pod)),
        state: state_of(pod.state) as i32,
        created_at: pod.created_at,
        network: Some(PodSandboxNetworkStatus { ip, additional_ips }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(NamespaceOption {
                    network: mode_to(pod.spec.network_mode) as i32,
                    pid: mode_to(pod.spec.pid_mode) as i32,
                    ipc: mode_to(pod.spec.ipc_mode) as i32,
                    target_id: String::new(),
                    userns_options: Some(userns_to(pod.spec.userns.as_ref())),
                }),
            }),
        }),
        labels: to_hash(&pod.spec.labels),
        annotations: to_hash(&pod.spec.annotations),
        runtime_handler: pod.spec.runtime_handler.clone(),
    }
}

pub async fn list_pod_sandbox(
    server: &CriServer,
    req: ListPodSandboxRequest,
) -> Result<ListPodSandboxResponse, Status> {
    let filter = match req.filter {
        Some(f) => PodFilter {
            id: f.id,
            state: f.state.map(|s| {
                if s.state == PodSandboxState::SandboxReady as i32 {
                    PodState::Ready
                } else {
                    PodState::NotReady
                }
            }),
            labels: f.label_selector.into_iter().collect(),
        },
        None => PodFilter::default(),
    };
    let items = server
        .pods
        .list(&filter)
        .await
        .iter()
        .map(|pod| PodSandbox {
            id: pod.id.clone(),
            metadata: Some(metadata(pod)),
            state: state_of(pod.state) as i32,
            created_at: pod.created_at,
            labels: to_hash(&pod.spec.labels),
            annotations: to_hash(&pod.spec.annotations),
            runtime_handler: pod.spec.runtime_handler.clone(),
        })
        .collect();
    Ok(ListPodSandboxResponse { items })
}

fn invalid(field: &str, message: String) -> Invalid {
    Invalid {
        field: field.to_string(),
        message,
    }
}

fn spec_from(config: PodSandboxConfig, runtime_handler: String) -> Result<PodSpec, Invalid> {
    let meta = config
        .metadata
        .ok_or_else(|| invalid("config.metadata", "is required".to_string()))?;
    let linux = config.linux.unwrap_or_default();
    let options = linux
        .security_context
        .as_ref()
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let mode = |field: &str, value: i32| {
        mode_from(value).ok_or_else(|| {
            invalid(
                &format!("config.linux.security_context.namespace_options.{field}"),
                format!("{value} is not a namespace mode"),
            )
        })
    };
    let mut port_mappings = Vec::new();
    for (i, p) in config.port_mappings.iter().enumerate() {
        let protocol = match Protocol::try_from(p.protocol) {
            Ok(Protocol::Tcp) => "TCP",
            Ok(Protocol::Udp) => "UDP",
            Ok(Protocol::Sctp) => "SCTP",
            Err(_) => {
                return Err(invalid(
                    &format!("config.port_mappings[{i}].protocol"),
                    format!("{} is not TCP (0), UDP (1) or SCTP (2)", p.protocol),
                ));
            }
        };
        port_mappings.push(PodPort {
            protocol: protocol.to_string(),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        });
    }
    let limits = pod_limits(linux.resources.as_ref(), linux.overhead.as_ref());
    let userns = userns_from(options.userns_options.as_ref())?;
    Ok(PodSpec {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        hostname: config.hostname,
        log_directory: config.log_directory,
        dns: config.dns_config.map(|d| Dns {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: config.labels.into_iter().collect(),
        annotations: config.annotations.into_iter().collect(),
        cgroup_parent: linux.cgroup_parent,
        sysctls: linux.sysctls.into_iter().collect(),
        network_mode: mode("network", options.network)?,
        pid_mode: mode("pid", options.pid)?,
        ipc_mode: mode("ipc", options.ipc)?,
        runtime_handler,
        limits,
        privileged: linux
            .security_context
            .as_ref()
            .is_some_and(|s| s.privileged),
        userns,
    })
}

/// `userns_options`: absent is the host's user namespace, as for kubelets that predate it.
fn userns_from(
    options: Option<&UserNamespace>,
) -> Result<Option<sandbox::userns::UserNs>, Invalid> {
    use sandbox::userns::{IdMap, UsernsMode, parse};
    let Some(o) = options else {
        return Ok(None);
    };
    let maps = |list: &[IdMapping]| -> Vec<IdMap> {
        list.iter()
            .map(|m| IdMap {
                host_id: m.host_id,
                container_id: m.container_id,
                length: m.length,
            })
            .collect()
    };
    let mode = match NamespaceMode::try_from(o.mode) {
        Ok(NamespaceMode::Pod) => UsernsMode::Pod,
        Ok(NamespaceMode::Node) => UsernsMode::Node,
        _ => UsernsMode::Other(o.mode),
    };
    Ok(parse(mode, &maps(&o.uids), &maps(&o.gids))?)
}

/// The pod's user namespace as `NamespaceOption.userns_options` reports it.
pub(super) fn userns_to(userns: Option<&sandbox::userns::UserNs>) -> UserNamespace {
    let map = |m: &sandbox::userns::IdMap| IdMapping {
        host_id: m.host_id,
        container_id: m.container_id,
        length: m.length,
    };
    match userns {
        Some(u) => UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![map(&u.uids)],
            gids: vec![map(&u.gids)],
        },
        None => UserNamespace {
            mode: NamespaceMode::Node as i32,
            uids: Vec::new(),
            gids: Vec::new(),
        },
    }
}

/// The pod's own resources plus its overhead, when the kubelet gives either.
pub(super) fn pod_limits(
    resources: Option<&LinuxContainerResources>,
    overhead: Option<&LinuxContainerResources>,
) -> Option<PodLimits> {
    if resources.is_none() && overhead.is_none() {
        return None;
    }
    let zero = LinuxContainerResources::default();
    let r = resources.unwrap_or(&zero);
    let o = overhead.unwrap_or(&zero);
    // A limit of the pod alone is unlimited; overhead only adds to a real limit.
    let sum = |a: i64, b: i64| if a > 0 { a + b.max(0) } else { 0 };
    Some(PodLimits {
        memory_limit: sum(r.memory_limit_in_bytes, o.memory_limit_in_bytes),
        cpu_shares: sum(r.cpu_shares, o.cpu_shares),
        cpu_quota: sum(r.cpu_quota, o.cpu_quota),
        cpu_period: r.cpu_period,
    })
}

fn mode_from(value: i32) -> Option<Mode> {
    match criox_proto::v1::NamespaceMode::try_from(value).ok()? {
        criox_proto::v1::NamespaceMode::Pod => Some(Mode::Pod),
        criox_proto::v1::NamespaceMode::Container => Some(Mode::Container),
        criox_proto::v1::NamespaceMode::Node => Some(Mode::Node),
        criox_proto::v1::NamespaceMode::Target => Some(Mode::Target),
    }
}

fn mode_to(mode: Mode) -> criox_proto::v1::NamespaceMode {
    match mode {
        Mode::Pod => criox_proto::v1::NamespaceMode::Pod,
        Mode::Container => criox_proto::v1::NamespaceMode::Container,
        Mode::Node => criox_proto::v1::NamespaceMode::Node,
        Mode::Target => criox_proto::v1::NamespaceMode::Target,
    }
}

fn state_of(state: PodState) -> PodSandboxState {
    match state {
        PodState::Ready => PodSandboxState::SandboxReady,
        PodState::NotReady => PodSandboxState::SandboxNotready,
    }
}

pub(super) fn metadata(pod: &Pod) -> PodSandboxMetadata {
    PodSandboxMetadata {
        name: pod.spec.name.clone(),
        uid: pod.spec.uid.clone(),
        namespace: pod.spec.namespace.clone(),
        attempt: pod.spec.attempt,
    }
}

/// What CreateContainer needs of the pod: namespaces to join, files to mount, cgroup.
pub(super) fn container_context(pod: &Pod) -> crate::container::spec::PodSpecContext {
    use crate::container::spec::{IdRange, PodNamespace, PodPid, PodUserns};
    let joined = |mode: Mode, pinned: &Option<std::path::PathBuf>| match (mode, pinned) {
        (Mode::Node, _) => PodNamespace::Node,
        (_, Some(path)) => PodNamespace::Path(path.clone()),
        (_, None) => PodNamespace::New,
    };
    let ns = &pod.paths.namespaces;
    PodSpecContext {
        id: pod.id.clone(),
        name: pod.spec.name.clone(),
        namespace: pod.spec.namespace.clone(),
        uid: pod.spec.uid.clone(),
        hostname: pod.hostname.clone(),
        network: joined(pod.spec.network_mode, &ns.network),
        ipc: joined(pod.spec.ipc_mode, &ns.ipc),
        uts: joined(pod.spec.network_mode, &ns.uts),
        pid: match (pod.spec.pid_mode, &pod.paths.pid_namespace, pod.infra_pid) {
            (Mode::Node, _, _) => PodPid::Node,
            (Mode::Pod, Some(pinned), _) => PodPid::Pod(pinned.clone()),
            (Mode::Pod, None, Some(pid)) => PodPid::of_infra(pid as u32),
            _ => PodPid::Container,
        },
        hostname_path: Some(pod.paths.hostname.clone()),
        hosts_path: Some(pod.paths.hosts.clone()),
        resolv_conf_path: Some(pod.paths.resolv_conf.clone()),
        shm_path: pod.paths.shm_mounted.then(|| pod.paths.shm.clone()),
        cgroup_parent: pod.cgroup_parent().to_string(),
        sysctls: pod.spec.sysctls.clone(),
        runtime_handler: pod.spec.runtime_handler.clone(),
        privileged: pod.spec.privileged,
        userns: pod
            .paths
            .namespaces
            .user
            .clone()
            .zip(pod.spec.userns)
            .map(|(path, u)| {
                let range = |m: sandbox::userns::IdMap| IdRange {
                    host_id: m.host_id,
                    container_id: m.container_id,
                    length: m.length,
                };
                PodUserns {
                    path,
                    uids: range(u.uids),
                    gids: range(u.gids),
                }
            }),
    }
}

fn to_hash(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A pod's user namespace in verbose `info` documents, with its mappings in the OCI
/// spec's form (`containerID`, `hostID`, `size`); null when it has the host's.
pub(super) fn userns_info(pod: &Pod) -> serde_json::Value {
    let Some(u) = &pod.spec.userns else {
        return serde_json::Value::Null;
    };
    let map = |m: &sandbox::userns::IdMap| serde_json::json!([{ "containerID": m.container_id, "hostID": m.host_id, "size": m.length }]);
    serde_json::json!({
        "path": pod.paths.namespaces.user,
        "uidMappings": map(&u.uids),
        "gidMappings": map(&u.gids),
    })
}

/// The verbose `info` document: where the pod's pieces are.
fn verbose_info(pod: &Pod, network_check: Result<(), String>) -> String {
    let ns = &pod.paths.namespaces;
    serde_json::json!({
        "id": pod.id,
        "hostname": pod.hostname,
        "runtimeHandler": pod.spec.runtime_handler,
        "cgroupParent": pod.cgroup_parent(),
        "namespaces": {
            "network": ns.network, "ipc": ns.ipc, "uts": ns.uts,
            "pid": pod.paths.pid_namespace, "user": ns.user,
        },
        "userNamespace": userns_info(pod),
        "infraPid": pod.infra_pid,
        "hostnamePath": pod.paths.hostname,
        "hostsPath": pod.paths.hosts,
        "resolvConfPath": pod.paths.resolv_conf,
        "shmPath": pod.paths.shm,
        "logDirectory": pod.spec.log_directory,
        "ips": pod.ips,
        "config": pod.spec,
        "shmSizeAnnotation": sandbox::SHM_SIZE_ANNOTATION,
        "networkCheck": match network_check {
            Ok(()) => "ok".to_string(),
            Err(e) => e,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::{PodNamespace, PodPid};

    fn request(json: &str) -> PodSandboxConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn crictl_configs_become_pod_specs_with_fields_named_on_error() {
        let spec = spec_from(
            request(
                r#"{"metadata":{"name":"web","namespace":"ns","uid":"u"},
                    "port_mappings":[{"protocol":1,"container_port":53,"host_port":5353}],
                    "linux":{"cgroup_parent":"/kubepods/pod-u",
                             "security_context":{"namespace_options":{"network":2,"pid":1}},
                             "resources":{"memory_limit_in_bytes":1000},
                             "overhead":{"memory_limit_in_bytes":24}}}"#,
            ),
            String::new(),
        )
        .unwrap();
        assert_eq!(spec.port_mappings[0].protocol, "UDP");
        assert_eq!(spec.network_mode, Mode::Node);
        assert_eq!(spec.pid_mode, Mode::Container);
        assert_eq!(spec.limits.unwrap().memory_limit, 1024);
        let err = spec_from(request(r#"{"hostname":"x"}"#), String::new()).unwrap_err();
        assert_eq!(err.field, "config.metadata");
        let err = spec_from(
            request(
                r#"{"metadata":{"name":"a"},"linux":{"security_context":{"namespace_options":{"ipc":9}}}}"#,
            ),
            String::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.field,
            "config.linux.security_context.namespace_options.ipc"
        );
    }

    #[test]
    fn the_container_side_gets_the_pods_paths() {
        let spec = spec_from(
            request(r#"{"metadata":{"name":"web","namespace":"ns","uid":"u"}}"#),
            "embedded".into(),
        )
        .unwrap();
        let pod = Pod {
            id: "p1".into(),
            spec,
            hostname: "web".into(),
            state: PodState::Ready,
            phase: sandbox::Phase::Created,
            created_at: 1,
            ips: vec![],
            paths: sandbox::PodPaths {
                dir: "/run/criox/pods/p1".into(),
                namespaces: sandbox::Pinned {
                    network: Some("/run/criox/pods/p1/ns/net".into()),
                    ipc: Some("/run/criox/pods/p1/ns/ipc".into()),
                    uts: Some("/run/criox/pods/p1/ns/uts".into()),
                    user: None,
                },
                pid_namespace: Some("/run/criox/pods/p1/ns/pid".into()),
                hostname: "/run/criox/pods/p1/hostname".into(),
                hosts: "/run/criox/pods/p1/hosts".into(),
                resolv_conf: "/run/criox/pods/p1/resolv.conf".into(),
                shm: "/run/criox/pods/p1/shm".into(),
                shm_mounted: true,
            },
            cgroup: sandbox::PodCgroup {
                path: "/criox-pods/p1".into(),
                created: vec![],
            },
            infra_pid: Some(42),
            full_name: "web_ns_u_0".into(),
        };
        let ctx = container_context(&pod);
        assert_eq!(
            ctx.network,
            PodNamespace::Path("/run/criox/pods/p1/ns/net".into())
        );
        assert_eq!(ctx.pid, PodPid::Pod("/run/criox/pods/p1/ns/pid".into()));
        assert_eq!(
            ctx.shm_path.unwrap().to_str(),
            Some("/run/criox/pods/p1/shm")
        );
        assert_eq!(ctx.cgroup_parent, "/criox-pods/p1");
    }
}
