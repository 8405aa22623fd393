//! What a container shares with its pod and node, through the CRI: the pod's PID
//! namespace, mount propagation from and to the host, cgroup limits and their updates, and
//! the CRI log file through rotation. Every case runs on the embedded backend and on runc
//! as a runtime handler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criox_proto::v1::*;
use criox_testkit::node::{Backend, Node, container, secured, sleeper, wait_for_file};
use nix::mount::{MsFlags, mount};

async fn pid_namespaces(backend: Backend) {
    let mut node = Node::start(backend).await;
    let mut results = Vec::new();
    for (name, mode) in [
        ("shared", NamespaceMode::Pod),
        ("private", NamespaceMode::Container),
    ] {
        let mut pod_config = node.pod_config(name);
        criox_testkit::pods::on_host_network(&mut pod_config, mode);
        pod_config.log_directory = node.logs.display().to_string();
        let pod = node.run_pod(&pod_config).await;
        node.run(&pod, &pod_config, container("a", &["sleep", "1234"]))
            .await;
        let b = node.run(&pod, &pod_config, sleeper("b")).await;
        let ps = node.exec(&b, &["ps", "-o", "pid,args"]).await;
        results.push((name, ps.ok().to_string()));
    }
    let (_, shared) = &results[0];
    assert!(shared.contains("sleep 1234"), "{backend:?} POD: {shared}");
    assert!(shared.contains("sleep 3600"), "{backend:?} POD: {shared}");
    let (_, private) = &results[1];
    assert!(
        !private.contains("sleep 1234"),
        "{backend:?} CONTAINER: {private}"
    );
    // Its own process is PID 1 of its own namespace.
    assert!(
        private
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "3600"]),
        "{backend:?} CONTAINER: {private}"
    );
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_shared_by_the_pod_or_not_embedded() {
    pid_namespaces(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_shared_by_the_pod_or_not_runc() {
    pid_namespaces(Backend::Runc).await;
}

/// A host directory bind-mounted on itself, so that its propagation is its own to change;
/// on drop everything mounted at or below it is detached.
struct HostMount {
    dir: PathBuf,
}

impl HostMount {
    fn new(dir: PathBuf) -> HostMount {
        std::fs::create_dir_all(&dir).unwrap();
        let guard = HostMount { dir };
        mount(
            Some(&guard.dir),
            &guard.dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            &guard.dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        guard
    }

    fn tmpfs(&self, sub: &str) -> PathBuf {
        let at = self.dir.join(sub);
        mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        at
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        criox_testkit::unmount_below(&self.dir);
    }
}

/// The optional fields of the mount at `path` in this process's mountinfo.
fn propagation_of(path: &Path) -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| {
            let (left, _) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            (Path::new(f[4]) == path).then(|| f[6..].join(" "))
        })
        .next_back()
        .unwrap_or_default()
}

async fn mount_propagation(backend: Backend) {
    let mut node = Node::start(backend).await;
    // Outside the daemon's directory: the daemon's own mounts are checked apart.
    let host = tempfile::Builder::new().prefix("cxprop").tempdir().unwrap();
    let source = HostMount::new(host.path().join("src"));
    for sub in ["late", "from-container"] {
        std::fs::create_dir(source.dir.join(sub)).unwrap();
    }
    let mut pod_config = node.pod_config("prop");
    let sandbox = pod_config.linux.as_mut().unwrap();
    sandbox.security_context.as_mut().unwrap().privileged = true;
    let pod = node.run_pod(&pod_config).await;
    let bind = |container_path: &str, propagation: MountPropagation| Mount {
        container_path: container_path.into(),
        host_path: source.dir.display().to_string(),
        propagation: propagation as i32,
        ..Default::default()
    };
    let mut watcher = sleeper("watcher");
    watcher.mounts = vec![
        bind("/slave", MountPropagation::PropagationHostToContainer),
        bind("/private", MountPropagation::PropagationPrivate),
    ];
    let watcher = node.run(&pod, &pod_config, watcher).await;
    let mut both_ways = secured(
        "both",
        LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    both_ways.mounts = vec![bind("/shared", MountPropagation::PropagationBidirectional)];
    let both_ways = node.run(&pod, &pod_config, both_ways).await;
    // rshared and rslave need a shared host mount: the daemon made it so.
    assert!(
        propagation_of(&source.dir).contains("shared:"),
        "{backend:?}: {}",
        propagation_of(&source.dir)
    );

    // A mount made on the host after the containers started.
    let late = source.tmpfs("late");
    std::fs::write(late.join("marker"), "from the host\n").unwrap();
    assert_eq!(
        node.exec(&watcher, &["cat", "/slave/late/marker"])
            .await
            .ok(),
        "from the host\n"
    );
    assert_eq!(
        node.exec(&both_ways, &["cat", "/shared/late/marker"])
            .await
            .ok(),
        "from the host\n"
    );
    let out = node.exec(&watcher, &["ls", "/private/late"]).await;
    assert_eq!(
        out.ok(),
        "",
        "{backend:?}: a private bind saw the host's mount"
    );

    // A mount made in the bidirectional container reaches the host, and the rslave one.
    node.sh(
        &both_ways,
        "mount -t tmpfs inner /shared/from-container && echo inside > /shared/from-container/f",
    )
    .await
    .ok();
    assert_eq!(
        std::fs::read_to_string(source.dir.join("from-container/f")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        node.exec(&watcher, &["cat", "/slave/from-container/f"])
            .await
            .ok(),
        "inside\n"
    );
    node.end_all_and_check_clean().await;
    drop(source);
    assert!(criox_testkit::mounts_below(host.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_propagation_host_to_container_and_back_embedded() {
    mount_propagation(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_propagation_host_to_container_and_back_runc() {
    mount_propagation(Backend::Runc).await;
}

const MIB: i64 = 1 << 20;

/// The container's cgroup values, as its own /sys/fs/cgroup shows them.
const CGROUP_VALUES: &str = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
     /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes";

async fn cgroup_values(node: &mut Node, id: &str) -> Vec<i64> {
    let out = node.sh(id, CGROUP_VALUES).await;
    out.ok()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

/// The same files, read on the host below the container's cgroup.
fn host_cgroup_values(cgroup: &str) -> Vec<i64> {
    let rel = cgroup.trim_start_matches('/');
    [
        "cpu/cpu.cfs_quota_us",
        "cpu/cpu.cfs_period_us",
        "cpu/cpu.shares",
    ]
    .iter()
    .map(|f| {
        let (controller, file) = f.split_once('/').unwrap();
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel)
            .join(file)
    })
    .chain([Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.limit_in_bytes")])
    .map(|p| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap()
    })
    .collect()
}

async fn resources(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("res").await;
    let mut config = sleeper("limited");
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = node.run(&pod, &pod_config, config).await;
    let expected = vec![50_000, 100_000, 512, 64 * MIB];
    assert_eq!(cgroup_values(&mut node, &id).await, expected, "{backend:?}");
    let info = node.info(&id).await;
    let cgroup = info["cgroup"]
        .as_str()
        .unwrap_or_else(|| panic!("no cgroup in {info}"))
        .to_string();
    assert_eq!(host_cgroup_values(&cgroup), expected, "{backend:?}");
    let limits = node.status(&id).await.resources.unwrap().linux.unwrap();
    assert_eq!(
        (
            limits.cpu_quota,
            limits.cpu_period,
            limits.cpu_shares,
            limits.memory_limit_in_bytes
        ),
        (50_000, 100_000, 512, 64 * MIB)
    );

    // Raised while running; unset fields keep their values.
    node.rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 20_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 128 * MIB,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources on {backend:?}: {e}"));
    let expected = vec![20_000, 100_000, 512, 128 * MIB];
    assert_eq!(cgroup_values(&mut node, &id).await, expected, "{backend:?}");
    assert_eq!(host_cgroup_values(&cgroup), expected, "{backend:?}");
    let limits = node.status(&id).await.resources.unwrap().linux.unwrap();
    assert_eq!(
        (limits.cpu_quota, limits.memory_limit_in_bytes),
        (20_000, 128 * MIB)
    );
    // The process keeps running through the update.
    assert_eq!(
        node.status(&id).await.state,
        ContainerState::ContainerRunning as i32
    );

    let err = node
        .rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("memory_limit_in_bytes"),
        "{}",
        err.message()
    );
    assert_eq!(cgroup_values(&mut node, &id).await, expected, "{backend:?}");
    node.end_all_and_check_clean().await;
    assert!(
        criox_testkit::cgroup_dirs(&cgroup).is_empty(),
        "{backend:?}: cgroup {cgroup} left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_limits_and_their_update_embedded() {
    resources(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_limits_and_their_update_runc() {
    resources(Backend::Runc).await;
}

async fn log_rotation(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("logs").await;
    // A line written in two pieces, then one line per exec'ed request.
    let id = node
        .run(
            &pod,
            &pod_config,
            container(
                "talker",
                &[
                    "sh",
                    "-c",
                    "printf 'half '; sleep 0.5; echo done; \
                     while :; do if [ -e /tmp/say ]; then cat /tmp/say; rm /tmp/say; fi; sleep 0.05; done",
                ],
            ),
        )
        .await;
    let log = node.logs.join("talker.log");
    let text = wait_for_file(&log, |t| t.contains(" F done\n")).await;
    let records: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(records, ["stdout P half ", "stdout F done"], "{text}");

    let say = async |node: &mut Node, line: &str| {
        node.sh(
            &id,
            &format!("echo {line} > /tmp/say.new && mv /tmp/say.new /tmp/say"),
        )
        .await
        .ok();
    };
    say(&mut node, "before").await;
    wait_for_file(&log, |t| t.contains(" F before\n")).await;

    // Rotation as the kubelet does it: rename, then ask for a fresh file.
    let rotated = node.logs.join("talker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    node.rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("ReopenContainerLog on {backend:?}: {e}"));
    assert!(log.exists(), "{backend:?}: no fresh log file");
    say(&mut node, "after").await;
    let fresh = wait_for_file(&log, |t| t.contains(" F after\n")).await;
    assert!(!fresh.contains("before"), "{fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains(" F before\n") && !old.contains("after"),
        "{old}"
    );

    node.rt
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let err = node
        .rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let err = node
        .rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: "no-such-container".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // Nothing more was written after the stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), fresh);
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_lines_and_log_reopen_embedded() {
    log_rotation(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_lines_and_log_reopen_runc() {
    log_rotation(Backend::Runc).await;
}
