//! Which namespaces the container creates and which it joins, from the CRI's
//! `NamespaceOption` and what the pod holds.

use std::path::{Path, PathBuf};

use criox_proto::v1::{self, NamespaceMode};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::context::{IdRange, PodUserns};
use super::error::{Result, SpecError};

const FIELD: &str = "linux.security_context.namespace_options";

/// Where one of the pod's namespaces lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodNamespace {
    /// The node's own namespace (host network, host IPC).
    Node,
    /// A namespace pinned by the pod, joined by this path.
    Path(PathBuf),
    /// Each container gets a new one.
    New,
}

/// The pod's PID namespace arrangement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPid {
    /// Every container has its own PID namespace.
    Container,
    /// The pod shares one, joined by this path: the pod's pinned PID namespace, or
    /// [`PodPid::of_infra`] for the namespace of its infra process.
    Pod(PathBuf),
    /// The node's PID namespace.
    Node,
}

impl PodPid {
    /// The shared PID namespace of the pod whose PID 1 is `infra_pid`.
    pub fn of_infra(infra_pid: u32) -> PodPid {
        PodPid::Pod(PathBuf::from(format!("/proc/{infra_pid}/ns/pid")))
    }
}

/// The namespace list of the spec and what else the choice implies.
#[derive(Debug)]
pub struct NamespacePlan {
    pub namespaces: Vec<LinuxNamespace>,
    pub host_network: bool,
    pub host_ipc: bool,
    /// A UTS namespace of the pod or of the container: the hostname may be set.
    pub own_uts: bool,
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    Ok(b.build()?)
}

/// Adds `typ` as the pod namespace says: nothing for the node's, a path, or a new one.
fn push_pod(
    out: &mut Vec<LinuxNamespace>,
    typ: LinuxNamespaceType,
    pod: &PodNamespace,
) -> Result<()> {
    match pod {
        PodNamespace::Node => {}
        PodNamespace::Path(p) => out.push(ns(typ, Some(p))?),
        PodNamespace::New => out.push(ns(typ, None)?),
    }
    Ok(())
}

fn mode(name: &str, value: i32) -> Result<NamespaceMode> {
    NamespaceMode::try_from(value)
        .map_err(|_| SpecError::invalid(format!("{FIELD}.{name}"), format!("unknown mode {value}")))
}

pub struct PodNamespaces<'a> {
    /// The pod's user namespace, when it has one of its own.
    pub user: Option<&'a PodUserns>,
    pub network: &'a PodNamespace,
    pub ipc: &'a PodNamespace,
    pub uts: &'a PodNamespace,
    pub pid: &'a PodPid,
}

/// The user namespace a container joins: its pod's, whose mappings the container's
/// `userns_options` (the kubelet repeats the pod's there) must not contradict.
fn userns<'a>(
    options: Option<&v1::UserNamespace>,
    pod: Option<&'a PodUserns>,
) -> Result<Option<&'a Path>> {
    let field = format!("{FIELD}.userns_options");
    let Some(o) = options else {
        return Ok(pod.map(|p| p.path.as_path()));
    };
    let same = |given: &[v1::IdMapping], pod: &IdRange| {
        given.is_empty()
            || (given.len() == 1
                && given[0].host_id == pod.host_id
                && given[0].container_id == pod.container_id
                && given[0].length == pod.length)
    };
    match (mode("userns_options.mode", o.mode)?, pod) {
        (NamespaceMode::Node, None) if o.uids.is_empty() && o.gids.is_empty() => Ok(None),
        (NamespaceMode::Node, Some(_)) => Err(SpecError::invalid(
            format!("{field}.mode"),
            "NODE in a pod with its own user namespace: containers share the pod's",
        )),
        (NamespaceMode::Pod, Some(p)) => {
            if !same(&o.uids, &p.uids) {
                return Err(SpecError::invalid(
                    format!("{field}.uids"),
                    "differ from the pod's user namespace mappings",
                ));
            }
            if !same(&o.gids, &p.gids) {
                return Err(SpecError::invalid(
                    format!("{field}.gids"),
                    "differ from the pod's user namespace mappings",
                ));
            }
            Ok(Some(p.path.as_path()))
        }
        (NamespaceMode::Pod, None) if o.uids.is_empty() && o.gids.is_empty() => Ok(None),
        (NamespaceMode::Pod, None) => Err(SpecError::invalid(
            format!("{field}.uids"),
            "the pod has no user namespace of its own to map",
        )),
        (m, _) => Err(SpecError::invalid(
            format!("{field}.mode"),
            format!("{m:?} is not a user namespace mode (POD or NODE)"),
        )),
    }
}

/// `target_pid` is the PID namespace path of the container `target_id` names, resolved by
/// the caller (only needed for TARGET).
pub fn plan(
    options: Option<&v1::NamespaceOption>,
    pod: &PodNamespaces<'_>,
    target_pid: Option<&Path>,
    cgroup_ns: bool,
) -> Result<NamespacePlan> {
    let default = v1::NamespaceOption::default();
    let o = options.unwrap_or(&default);
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)?];

    if let Some(path) = userns(o.userns_options.as_ref(), pod.user)? {
        out.push(ns(LinuxNamespaceType::User, Some(path))?);
    }

    let host_network = match mode("network", o.network)? {
        NamespaceMode::Node => true,
        NamespaceMode::Pod | NamespaceMode::Container | NamespaceMode::Target => {
            push_pod(&mut out, LinuxNamespaceType::Network, pod.network)?;
            *pod.network == PodNamespace::Node
        }
    };

    let host_ipc = match mode("ipc", o.ipc)? {
        NamespaceMode::Node => true,
        NamespaceMode::Container => {
            out.push(ns(LinuxNamespaceType::Ipc, None)?);
            false
        }
        NamespaceMode::Pod | NamespaceMode::Target => {
            push_pod(&mut out, LinuxNamespaceType::Ipc, pod.ipc)?;
            *pod.ipc == PodNamespace::Node
        }
    };

    // The UTS namespace is the pod's: the node's when the pod is on the host network.
    push_pod(&mut out, LinuxNamespaceType::Uts, pod.uts)?;
    let own_uts = *pod.uts != PodNamespace::Node;

    match mode("pid", o.pid)? {
        NamespaceMode::Node => {}
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)?),
        NamespaceMode::Pod => match pod.pid {
            PodPid::Pod(path) => out.push(ns(LinuxNamespaceType::Pid, Some(path))?),
            PodPid::Node => {}
            // POD is the proto default, so a config that says nothing lands here: in a
            // pod without a shared PID namespace that means one of the container's own.
            PodPid::Container => out.push(ns(LinuxNamespaceType::Pid, None)?),
        },
        NamespaceMode::Target => {
            let path = target_pid.ok_or_else(|| {
                SpecError::invalid(
                    format!("{FIELD}.target_id"),
                    format!("no PID namespace for target container {:?}", o.target_id),
                )
            })?;
            out.push(ns(LinuxNamespaceType::Pid, Some(path))?);
        }
    }

    if cgroup_ns {
        out.push(ns(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(NamespacePlan {
        namespaces: out,
        host_network,
        host_ipc,
        own_uts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(plan: &NamespacePlan, typ: LinuxNamespaceType) -> Option<&LinuxNamespace> {
        plan.namespaces.iter().find(|n| n.typ() == typ)
    }

    /// A pod whose network, IPC and UTS namespaces are all `ns`.
    fn pod_of<'a>(ns: &'a PodNamespace, pid: &'a PodPid) -> PodNamespaces<'a> {
        PodNamespaces {
            user: None,
            network: ns,
            ipc: ns,
            uts: ns,
            pid,
        }
    }

    fn opts(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> v1::NamespaceOption {
        v1::NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }
    }

    #[test]
    fn pod_namespaces_are_joined_by_path() {
        let net = PodNamespace::Path("/run/criox/ns/net/p".into());
        let ipc = PodNamespace::Path("/run/criox/ns/ipc/p".into());
        let uts = PodNamespace::Path("/run/criox/ns/uts/p".into());
        let pod = PodNamespaces {
            user: None,
            network: &net,
            ipc: &ipc,
            uts: &uts,
            pid: &PodPid::of_infra(42),
        };
        let o = opts(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod);
        let plan = plan(Some(&o), &pod, None, false).unwrap();
        let path = |t| find(&plan, t).unwrap().path().clone().unwrap();
        for (t, want) in [
            (LinuxNamespaceType::Network, "/run/criox/ns/net/p"),
            (LinuxNamespaceType::Ipc, "/run/criox/ns/ipc/p"),
            (LinuxNamespaceType::Uts, "/run/criox/ns/uts/p"),
            (LinuxNamespaceType::Pid, "/proc/42/ns/pid"),
        ] {
            assert_eq!(path(t), PathBuf::from(want), "{t:?}");
        }
        assert!(
            find(&plan, LinuxNamespaceType::Mount)
                .unwrap()
                .path()
                .is_none()
        );
        assert!(find(&plan, LinuxNamespaceType::Cgroup).is_none());
        assert!(!plan.host_network && !plan.host_ipc && plan.own_uts);
    }

    #[test]
    fn node_modes_leave_namespaces_out() {
        let pod = pod_of(&PodNamespace::Node, &PodPid::Node);
        let o = opts(
            NamespaceMode::Node,
            NamespaceMode::Node,
            NamespaceMode::Node,
        );
        let plan = plan(Some(&o), &pod, None, true).unwrap();
        for t in [
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
        ] {
            assert!(find(&plan, t).is_none(), "{t:?}");
        }
        assert!(find(&plan, LinuxNamespaceType::Cgroup).is_some());
        assert!(plan.host_network && plan.host_ipc && !plan.own_uts);
    }

    #[test]
    fn container_and_target_pid() {
        let pod = pod_of(&PodNamespace::New, &PodPid::Container);
        let o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        let p = plan(Some(&o), &pod, None, false).unwrap();
        assert!(find(&p, LinuxNamespaceType::Pid).unwrap().path().is_none());

        let mut o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Target,
            NamespaceMode::Pod,
        );
        o.target_id = "abc".into();
        let e = plan(Some(&o), &pod, None, false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.security_context.namespace_options.target_id")
        );
        let p = plan(Some(&o), &pod, Some(Path::new("/proc/7/ns/pid")), false).unwrap();
        assert_eq!(
            find(&p, LinuxNamespaceType::Pid).unwrap().path().as_deref(),
            Some(Path::new("/proc/7/ns/pid"))
        );

        // POD in a pod without a shared PID namespace: a namespace of the container's own.
        let o = opts(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod);
        let p = plan(Some(&o), &pod, None, false).unwrap();
        assert_eq!(
            find(&p, LinuxNamespaceType::Pid).unwrap().path().as_deref(),
            None
        );
    }

    #[test]
    fn user_namespaces_with_mappings_are_refused() {
        let pod = pod_of(&PodNamespace::New, &PodPid::Container);
        let mut o = opts(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        );
        o.userns_options = Some(v1::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![v1::IdMapping {
                host_id: 100000,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![],
        });
        assert!(plan(Some(&o), &pod, None, false).is_err());
    }
}
