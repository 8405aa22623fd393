//! Pods with a user namespace of their own (KEP-127, `hostUsers: false`): the kubelet's
//! mappings, root inside and an unprivileged id outside, the image's root files as root's
//! through the ID-mapped root filesystem, volumes ID-mapped when the kubelet sends
//! mappings for them and plain otherwise, on both runtime backends; what the runtime
//! reports, and bad mappings refused with nothing left behind.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use criox_proto::v1::*;
use criox_testkit::node::{Backend, Node, sleeper};
use criox_testkit::pods::{TestNetwork, pod_config};
use criox_testkit::{cgroup_dirs, dir_entries, mounts_below};

const RANGE: u32 = 65536;

fn mapping(host_id: u32) -> IdMapping {
    IdMapping {
        host_id,
        container_id: 0,
        length: RANGE,
    }
}

fn userns(uids: Vec<IdMapping>, gids: Vec<IdMapping>, mode: NamespaceMode) -> UserNamespace {
    UserNamespace {
        mode: mode as i32,
        uids,
        gids,
    }
}

/// Namespace options as the kubelet sends them for a `hostUsers: false` pod.
fn options(network: NamespaceMode, pid: NamespaceMode, user: UserNamespace) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        userns_options: Some(user),
        ..Default::default()
    }
}

fn pod_with(node: &Node, name: &str, options: NamespaceOption) -> PodSandboxConfig {
    let mut config = pod_config(name, &criox_testkit::unique("uid"));
    config.log_directory = node.logs.display().to_string();
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(options),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

fn pod_mapping(host_id: u32) -> UserNamespace {
    userns(
        vec![mapping(host_id)],
        vec![mapping(host_id)],
        NamespaceMode::Pod,
    )
}

/// A bind of `host` at `container`, ID-mapped with the pod's mapping when `mapped`.
fn volume(host: &Path, container: &str, host_id: Option<u32>) -> Mount {
    Mount {
        host_path: host.display().to_string(),
        container_path: container.to_string(),
        uid_mappings: host_id.map(mapping).into_iter().collect(),
        gid_mappings: host_id.map(mapping).into_iter().collect(),
        ..Default::default()
    }
}

/// One pod with its own user namespace mapped at `host_id`, on `backend`, sharing one PID
/// namespace when `pid` is POD; its container sees root inside, the host sees `host_id`.
async fn root_inside_mapped_outside(backend: Backend, host_id: u32, pid: NamespaceMode) {
    let mut node = Node::start(backend).await;
    let net = TestNetwork::new(&node.daemon.dir);
    net.install(&node.daemon.cni_dir);
    let config = pod_with(
        &node,
        "userns",
        options(NamespaceMode::Pod, pid, pod_mapping(host_id)),
    );
    let pod = node.run_pod(&config).await;

    // PodSandboxStatus reports the mappings.
    let status = criox_testkit::pods::pod_status(&mut node.rt, &pod).await;
    let reported = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options)
        .expect("userns_options in PodSandboxStatus");
    assert_eq!(reported, pod_mapping(host_id));

    let plain = node.daemon.dir.join(criox_testkit::unique("plain"));
    let mapped = node.daemon.dir.join(criox_testkit::unique("mapped"));
    for dir in [&plain, &mapped] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("from-host"), "host\n").unwrap();
    }
    // A plain volume the pod may write to is given to its mapped root, as an operator (or
    // the kubelet's fsGroup) would; host root's files in it stay host root's.
    std::os::unix::fs::chown(&plain, Some(host_id), Some(host_id)).unwrap();
    let mut ctr = sleeper("app");
    // A working directory the image lacks is made for the container's root.
    ctr.working_dir = "/srv/made".to_string();
    ctr.mounts = vec![
        volume(&plain, "/plain", None),
        volume(&mapped, "/mapped", Some(host_id)),
    ];
    ctr.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: config
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = node.run(&pod, &config, ctr).await;

    assert_eq!(node.exec(&id, &["id", "-u"]).await.ok().trim(), "0");
    let uid_map = node.exec(&id, &["cat", "/proc/self/uid_map"]).await;
    let fields: Vec<&str> = uid_map.ok().split_whitespace().collect();
    assert_eq!(fields, ["0", &host_id.to_string(), "65536"], "{uid_map:?}");
    let gid_map = node.exec(&id, &["cat", "/proc/self/gid_map"]).await;
    assert!(gid_map.ok().contains(&host_id.to_string()), "{gid_map:?}");
    // The image's root-owned files are root's inside, and root may write where root
    // may: the ID-mapped root filesystem.
    let owners = node.sh(&id, "stat -c '%u %g' /bin/sh /etc /srv/made").await;
    assert_eq!(owners.ok(), "0 0\n0 0\n0 0\n");
    node.sh(
        &id,
        "echo new > /etc/made-inside && chown 0:0 /etc/made-inside",
    )
    .await
    .ok();
    // The pod's network namespace is the container's: it joined a namespace owned by the
    // pod's user namespace.
    let ifaces = node.exec(&id, &["cat", "/proc/net/dev"]).await;
    assert!(ifaces.ok().contains("eth0"), "{ifaces:?}");

    // A plain volume: host root's file is nobody's inside, and what root writes belongs
    // to the mapped id on the host.
    let plain_owner = node.sh(&id, "stat -c %u /plain/from-host").await;
    assert_eq!(plain_owner.ok().trim(), "65534");
    node.sh(&id, "echo x > /plain/written").await.ok();
    let meta = std::fs::metadata(plain.join("written")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (host_id, host_id));
    // An ID-mapped volume: host root's file is root's inside, and root's writes are
    // stored as root's.
    let mapped_owner = node.sh(&id, "stat -c %u /mapped/from-host").await;
    assert_eq!(mapped_owner.ok().trim(), "0");
    node.sh(&id, "echo x > /mapped/written").await.ok();
    let meta = std::fs::metadata(mapped.join("written")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    // On the host the container's tree is its root's alone: no other user may walk into
    // it, and the image's layers are not mounted anywhere but in the overlay.
    let bundle = node.daemon.root.join("containers").join(&id);
    let meta = std::fs::metadata(&bundle).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o077),
        (host_id, 0),
        "{bundle:?}"
    );
    let layer_mounts: Vec<_> = mounts_below(&node.daemon.root)
        .into_iter()
        .filter(|m| m.to_string_lossy().contains("idmap-layers"))
        .collect();
    assert!(layer_mounts.is_empty(), "{layer_mounts:?}");

    // Outside, the container's processes run as the mapped id.
    let info = node.info(&id).await;
    // ContainerStatus's verbose info (what `criox ctl inspect` prints) has the mappings.
    let mapped_uids = &info["userNamespace"]["uidMappings"][0];
    assert_eq!(mapped_uids["hostID"], host_id, "{info}");
    assert_eq!(mapped_uids["size"], RANGE, "{info}");
    let pid = info["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {info}"));
    let uids = criox_testkit::proc_status_field(pid as i32, "Uid:");
    assert_eq!(
        uids.split_whitespace().next(),
        Some(host_id.to_string().as_str()),
        "Uid: {uids}"
    );

    node.end_all_and_check_clean().await;
    let pods = dir_entries(&node.daemon.state.join("pods"));
    assert!(pods.is_empty(), "pod state left: {pods:?}");
    // The volumes' host files are untouched by the removal.
    assert!(mapped.join("written").exists() && plain.join("written").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pod_with_a_user_namespace_is_root_inside_and_mapped_outside() {
    root_inside_mapped_outside(Backend::Embedded, 7 * RANGE, NamespaceMode::Container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_pod_with_a_user_namespace_is_root_inside_and_mapped_outside() {
    root_inside_mapped_outside(Backend::Runc, 8 * RANGE, NamespaceMode::Container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pid_namespace_belongs_to_the_pods_user_namespace() {
    root_inside_mapped_outside(Backend::Embedded, 9 * RANGE, NamespaceMode::Pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_report_user_namespaces_and_host_network_ones_are_refused() {
    let mut node = Node::start(Backend::Embedded).await;
    let status = criox_testkit::runtime_status(&mut node.rt, false).await;
    // The kubelet admits `hostUsers: false` pods only to handlers that say so.
    assert!(!status.runtime_handlers.is_empty());
    for handler in &status.runtime_handlers {
        let features = handler.features.as_ref().unwrap();
        assert!(features.user_namespaces, "{handler:?}");
    }
    let host_network = status
        .features
        .as_ref()
        .is_some_and(|f| f.user_namespaces_host_network);
    assert!(!host_network, "{:?}", status.features);
    // As the feature says: a host-network pod cannot have a user namespace of its own.
    let config = pod_with(
        &node,
        "hostnet",
        options(
            NamespaceMode::Node,
            NamespaceMode::Container,
            pod_mapping(10 * RANGE),
        ),
    );
    let err = node
        .rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a host-network pod with a user namespace");
    criox_testkit::assert_invalid(&err, "namespace_options.network");
    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mappings_are_refused_naming_the_field_and_leave_nothing() {
    let mut node = Node::start(Backend::Embedded).await;
    let net = TestNetwork::new(&node.daemon.dir);
    net.install(&node.daemon.cni_dir);
    let k = 11 * RANGE;
    let with = |host_id: u32, container_id: u32, length: u32| IdMapping {
        host_id,
        container_id,
        length,
    };
    let pod = |u: UserNamespace| options(NamespaceMode::Pod, NamespaceMode::Container, u);
    let cases: Vec<(NamespaceOption, &str)> = vec![
        (
            pod(userns(
                vec![with(k, 0, 2 * RANGE), with(k + RANGE, 0, RANGE)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids[1]",
        ),
        (
            pod(userns(
                vec![mapping(k), mapping(k + 2 * RANGE)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids",
        ),
        (
            pod(userns(
                vec![with(k, 0, 0)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids[0].length",
        ),
        (
            pod(userns(
                vec![mapping(k)],
                vec![mapping(0)],
                NamespaceMode::Pod,
            )),
            "userns_options.gids[0].host_id",
        ),
        (
            pod(userns(
                vec![with(u32::MAX - RANGE + 1, 0, RANGE)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids[0].length",
        ),
        (
            pod(userns(
                vec![with(k, 0, 1000)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids[0].length",
        ),
        (
            pod(userns(
                vec![with(k, 1, RANGE)],
                vec![mapping(k)],
                NamespaceMode::Pod,
            )),
            "userns_options.uids[0].container_id",
        ),
        (
            pod(userns(vec![mapping(k)], vec![], NamespaceMode::Node)),
            "userns_options.uids",
        ),
        (
            pod(userns(vec![], vec![], NamespaceMode::Pod)),
            "userns_options.uids",
        ),
        (
            pod(userns(vec![], vec![], NamespaceMode::Container)),
            "userns_options.mode",
        ),
    ];
    for (i, (options, field)) in cases.into_iter().enumerate() {
        let config = pod_with(&node, &format!("bad-{i}"), options);
        let cgroup_parent = format!("/criox-pods-userns-{}", criox_testkit::unique("bad"));
        let mut config = config;
        if let Some(linux) = config.linux.as_mut() {
            linux.cgroup_parent = cgroup_parent.clone();
        }
        let err = node
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(field);
        criox_testkit::assert_invalid(&err, field);
        assert!(cgroup_dirs(&cgroup_parent).is_empty(), "case {i}: cgroup");
    }
    let pods = criox_testkit::list_pods(&mut node.rt).await;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(
        dir_entries(&node.daemon.state.join("pods")).is_empty(),
        "pod state dirs left"
    );
    assert!(net.allocations().is_empty(), "addresses left");
    assert_eq!(net.veths(), 0, "veths left");

    // A container whose volume or namespace mappings are not its pod's is refused too,
    // and leaves no bundle or mount.
    let config = pod_with(
        &node,
        "good",
        options(NamespaceMode::Pod, NamespaceMode::Container, pod_mapping(k)),
    );
    let pod_id = node.run_pod(&config).await;
    let dir = node.daemon.dir.join(criox_testkit::unique("vol"));
    std::fs::create_dir(&dir).unwrap();
    let mut bad_volume = sleeper("bad-volume");
    bad_volume.mounts = vec![volume(&dir, "/v", Some(k + RANGE))];
    let mut bad_userns = sleeper("bad-userns");
    bad_userns.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(options(
                NamespaceMode::Pod,
                NamespaceMode::Container,
                pod_mapping(k + RANGE),
            )),
            ..Default::default()
        }),
        ..Default::default()
    });
    for (ctr, field) in [
        (bad_volume, "mounts[0].uidMappings"),
        (bad_userns, "userns_options.uids"),
    ] {
        let err = node.create(&pod_id, &config, ctr).await.expect_err(field);
        criox_testkit::assert_invalid(&err, field);
    }
    assert!(node.containers().await.is_empty());
    let bundles = dir_entries(&node.daemon.root.join("containers"));
    assert!(bundles.is_empty(), "bundles left: {bundles:?}");
    let pod_mounts = mounts_below(&node.daemon.root);
    assert!(pod_mounts.is_empty(), "mounts left: {pod_mounts:?}");
    node.end_all_and_check_clean().await;
    assert!(net.allocations().is_empty(), "addresses left");
}
