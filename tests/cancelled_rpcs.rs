//! A caller that gives up midway — a deadline shorter than the work, or a client that drops
//! the call — leaves nothing half-made: RunPodSandbox and CreateContainer finish or undo
//! themselves, so a retry with the same metadata succeeds or finds a usable pod or
//! container, and removing everything leaves no pinned namespace, mount, cgroup, IP,
//! monitor or record behind.

use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::Daemon;
use criox_testkit::pods::*;
use criox_testkit::{cgroup_dirs, dir_entries, mounts_below};
use tonic::transport::Channel;

/// How long after sending each abandoned call the caller gives up: from before the
/// daemon has read the request to well into the pod's network setup.
const GIVE_UP_AFTER_MS: [u64; 8] = [1, 3, 8, 15, 30, 60, 100, 200];

/// The two ways a call is abandoned: the daemon sees the caller's deadline pass, or the
/// client resets the stream.
#[derive(Clone, Copy, Debug)]
enum GiveUp {
    Deadline,
    Drop,
}

impl GiveUp {
    async fn call<T, F, Fut>(self, after: Duration, message: T, send: F)
    where
        F: FnOnce(tonic::Request<T>) -> Fut,
        Fut: std::future::Future,
    {
        let mut request = tonic::Request::new(message);
        match self {
            GiveUp::Deadline => {
                request.set_timeout(after);
                let _ = send(request).await;
            }
            GiveUp::Drop => {
                let _ = tokio::time::timeout(after, send(request)).await;
            }
        }
    }
}

/// Cgroups below a root only this test uses; removed on drop, also after a failure.
struct CgroupRoot(String);

impl CgroupRoot {
    fn new() -> CgroupRoot {
        CgroupRoot(format!("/criox-cancel-{}", criox_testkit::unique("")))
    }

    fn pods(&self) -> usize {
        criox_testkit::pods::pod_cgroups(&self.0)
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        // A cgroup goes only once its children have gone.
        fn remove(dir: &std::path::Path) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for dir in cgroup_dirs(&self.0) {
            remove(&dir);
        }
    }
}

fn config_in(name: &str, cgroups: &CgroupRoot) -> PodSandboxConfig {
    let mut config = pod_config(name, &criox_testkit::unique("ux"));
    config.linux = Some(LinuxPodSandboxConfig {
        cgroup_parent: format!("{}/{name}", cgroups.0),
        ..Default::default()
    });
    config
}

/// Every listed pod whose name starts with `prefix`, by name: (id, ready).
async fn pods_named(
    rt: &mut RuntimeServiceClient<Channel>,
    prefix: &str,
) -> Vec<(String, String, bool)> {
    criox_testkit::list_pods(rt)
        .await
        .into_iter()
        .filter_map(|p| {
            let name = p.metadata?.name;
            name.starts_with(prefix).then_some((
                name,
                p.id,
                p.state == PodSandboxState::SandboxReady as i32,
            ))
        })
        .collect()
}

/// Waits until no pod of `prefix` is half-made (listed, but not ready); returns what
/// stays half-made after the wait.
async fn settle_pods(rt: &mut RuntimeServiceClient<Channel>, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let half_made: Vec<String> = pods_named(rt, prefix)
            .await
            .into_iter()
            .filter(|(_, _, ready)| !ready)
            .map(|(name, id, _)| format!("{name} ({id})"))
            .collect();
        if half_made.is_empty() || Instant::now() > deadline {
            return half_made;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RunPodSandbox again with `config` until it succeeds or is refused because a ready pod
/// holds the name; panics when neither comes within twenty seconds.
async fn retry_until_made(rt: &mut RuntimeServiceClient<Channel>, config: &PodSandboxConfig) {
    let name = config.metadata.as_ref().unwrap().name.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let retry = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await;
        let status = match retry {
            Ok(_) => return,
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            tonic::Code::AlreadyExists,
            "retry of {name}: {status:?}"
        );
        let found = pods_named(rt, &name).await;
        if found.iter().any(|(n, _, ready)| *n == name && *ready) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retry of {name} is refused ({}), yet no ready pod holds the name: {found:?}",
            status.message()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a daemon's pods and containers hold on the host.
#[derive(Debug, PartialEq)]
struct Footprint {
    mounts: Vec<std::path::PathBuf>,
    pod_records: Vec<String>,
    pod_state: Vec<String>,
    container_records: Vec<String>,
    container_state: Vec<String>,
    ip_allocations: Vec<String>,
    pod_cgroups: usize,
    monitors: Vec<i32>,
}

fn footprint(daemon: &Daemon, net: &TestNetwork, cgroups: &CgroupRoot) -> Footprint {
    Footprint {
        mounts: mounts_below(&daemon.dir),
        pod_records: dir_entries(&daemon.root.join("pods")),
        pod_state: dir_entries(&daemon.state.join("pods")),
        container_records: dir_entries(&daemon.root.join("store/containers")),
        container_state: dir_entries(&daemon.state.join("c")),
        ip_allocations: net.allocations(),
        pod_cgroups: cgroups.pods(),
        monitors: criox_testkit::processes_naming(&daemon.state),
    }
}

fn empty_footprint() -> Footprint {
    Footprint {
        mounts: vec![],
        pod_records: vec![],
        pod_state: vec![],
        container_records: vec![],
        container_state: vec![],
        ip_allocations: vec![],
        pod_cgroups: 0,
        monitors: vec![],
    }
}

async fn remove_all_pods(rt: &mut RuntimeServiceClient<Channel>) {
    let pods = criox_testkit::list_pods(rt).await;
    for pod in pods {
        stop_and_remove_pod(rt, &pod.id).await;
    }
}

/// Footprint once the daemon's leftovers had a moment to go (a monitor's exit is seen a
/// little after the container's removal).
async fn settled_footprint(daemon: &Daemon, net: &TestNetwork, cgroups: &CgroupRoot) -> Footprint {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = footprint(daemon, net, cgroups);
        if now == empty_footprint() || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_run_pod_sandbox_finishes_or_undoes_itself() {
    let daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let cgroups = CgroupRoot::new();
    let mut rt = daemon.runtime().await;
    let mut configs = Vec::new();
    for give_up in [GiveUp::Deadline, GiveUp::Drop] {
        for ms in GIVE_UP_AFTER_MS {
            let config = config_in(&format!("cancel-{give_up:?}-{ms}").to_lowercase(), &cgroups);
            let mut client = rt.clone();
            let message = RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            };
            give_up
                .call(Duration::from_millis(ms), message, |r| async move {
                    client.run_pod_sandbox(r).await
                })
                .await;
            configs.push(config);
        }
    }

    let half_made = settle_pods(&mut rt, "cancel-").await;
    assert!(
        half_made.is_empty(),
        "pods stay half-made after their callers gave up: {half_made:?}"
    );
    // The kubelet retries with the same metadata: that makes the pod or finds it made.
    // While abandoned work still runs, the name is rightly taken by a pod not yet listed.
    for config in &configs {
        retry_until_made(&mut rt, config).await;
    }
    let pods = pods_named(&mut rt, "cancel-").await;
    assert_eq!(pods.len(), configs.len(), "one pod per name: {pods:?}");

    remove_all_pods(&mut rt).await;
    assert_eq!(
        settled_footprint(&daemon, &net, &cgroups).await,
        empty_footprint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_create_container_finishes_or_undoes_itself() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let cgroups = CgroupRoot::new();
    let mut rt = daemon.runtime().await;
    let mut pod_config = config_in("cancel-containers", &cgroups);
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = run_pod(&mut rt, pod_config.clone()).await;

    let mut names = Vec::new();
    for give_up in [GiveUp::Deadline, GiveUp::Drop] {
        for ms in GIVE_UP_AFTER_MS {
            let name = format!("c-{give_up:?}-{ms}").to_lowercase();
            let message = CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(criox_testkit::busybox_container(&name, &["sleep", "3600"])),
                sandbox_config: Some(pod_config.clone()),
            };
            let mut client = rt.clone();
            give_up
                .call(Duration::from_millis(ms), message, |r| async move {
                    client.create_container(r).await
                })
                .await;
            names.push(name);
        }
    }

    // Give abandoned work time to end either way, then retry each as the kubelet would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in &names {
        let retry = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(criox_testkit::busybox_container(name, &["sleep", "3600"])),
                sandbox_config: Some(pod_config.clone()),
            })
            .await;
        let id = match retry {
            Ok(created) => created.into_inner().container_id,
            Err(status) => {
                let listed = criox_testkit::list_containers_where(
                    &mut rt,
                    ContainerFilter {
                        pod_sandbox_id: pod.clone(),
                        ..Default::default()
                    },
                )
                .await;
                listed
                    .into_iter()
                    .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == *name))
                    .unwrap_or_else(|| {
                        panic!(
                            "retry of {name} was refused ({status:?}) and no container has the name"
                        )
                    })
                    .id
            }
        };
        // A container found by name is a whole one: it starts.
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("start {name} ({id}): {e:?}"));
    }

    remove_all_pods(&mut rt).await;
    assert_eq!(
        settled_footprint(&daemon, &net, &cgroups).await,
        empty_footprint()
    );
}
