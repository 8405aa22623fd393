//! Under the systemd cgroup driver, against a real systemd (see systemd_support): each
//! container's monitor runs in a scope of its own, a pod's slice carries the pod's limits,
//! a shared-PID pod's infra process has its own scope, and a daemon killed and started
//! again finds its pods and containers and can end them, leaving no unit behind.

use criox_proto::v1::*;
use criox_testkit::systemd::{Systemd, SystemdDaemon};

fn boot() -> Option<Systemd> {
    if let Some(reason) = criox_testkit::systemd::unavailable() {
        eprintln!("SKIP: systemd is unavailable: {reason}");
        return None;
    }
    Some(Systemd::boot())
}

/// The pids in a unit's cgroup, read through systemd's view of the cgroup tree.
fn unit_pids(systemd: &Systemd, unit: &str) -> Vec<i32> {
    let path = systemd.property(unit, "ControlGroup");
    assert!(!path.is_empty(), "{unit} has no cgroup");
    let procs = ["systemd", "unified", ""]
        .iter()
        .map(|h| {
            systemd
                .cgroup_file(h)
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs")
        })
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no cgroup.procs for {path}"));
    std::fs::read_to_string(&procs)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_pods_and_infra_have_units_and_survive_a_daemon_restart() {
    let Some(systemd) = boot() else { return };
    let mut daemon = SystemdDaemon::start(&systemd).await;
    let image = criox_testkit::busybox_image();
    daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}\n{}", daemon.log()));
    let mut rt = daemon.runtime().await;

    // A shared-PID pod without a cgroup parent: a slice of its own, with the pod's limits.
    let uid = format!("{}mon", std::process::id());
    let mut pod_config = criox_testkit::pods::pod_config("sdmon", &uid);
    criox_testkit::pods::on_host_network(&mut pod_config, NamespaceMode::Pod);
    pod_config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 96 << 20,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        ..Default::default()
    });
    let logs = daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    pod_config.log_directory = logs.display().to_string();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    let slice = format!("criox-pod{pod}.slice");
    assert_eq!(systemd.property(&slice, "ActiveState"), "active");
    let memory = systemd.property(&slice, "MemoryLimit");
    let memory_max = systemd.property(&slice, "MemoryMax");
    assert!(
        memory == (96u64 << 20).to_string() || memory_max == (96u64 << 20).to_string(),
        "MemoryLimit {memory}, MemoryMax {memory_max}"
    );
    assert_eq!(systemd.property(&slice, "CPUQuotaPerSecUSec"), "500ms");
    let slice_path = systemd.property(&slice, "ControlGroup");
    let memory_dir = systemd.cgroup_file("memory");
    let limit_file = if memory_dir.is_dir() {
        memory_dir
            .join(slice_path.trim_start_matches('/'))
            .join("memory.limit_in_bytes")
    } else {
        systemd.cgroup_file(&slice_path).join("memory.max")
    };
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        (96u64 << 20).to_string(),
        "{limit_file:?}"
    );
    // The infra process (PID 1 of the pod) in a scope of the pod's slice.
    let infra_scope = format!("criox-{pod}.scope");
    assert_eq!(systemd.property(&infra_scope, "ActiveState"), "active");
    assert_eq!(systemd.property(&infra_scope, "Slice"), slice);
    assert_eq!(unit_pids(&systemd, &infra_scope).len(), 1);

    // The container joins the shared-PID pod. Its init is not PID 1 there and its parent
    // is outside the namespace: libcontainer's cgroup v1 mount looked its own pid up in the
    // runtime's /proc, where this namespace of few pids has no such process, and failed to
    // prepare the root filesystem (third_party/libcontainer/CRIOX-PATCH.md).
    let mut sleeper = criox_testkit::busybox_container("sleeper", &["sleep", "1000"]);
    sleeper.log_path = "sleeper.log".into();
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, sleeper).await;
    // The monitor in a scope of its own, away from the daemon.
    let monitor_scope = format!("criox-monitor-{id}.scope");
    assert_eq!(
        systemd.property(&monitor_scope, "ActiveState"),
        "active",
        "{}",
        daemon.log()
    );
    assert_eq!(systemd.property(&monitor_scope, "Slice"), "system.slice");
    let monitor_pids = unit_pids(&systemd, &monitor_scope);
    assert_eq!(monitor_pids.len(), 1, "{monitor_pids:?}");
    let monitor = monitor_pids[0];
    // Pids in cgroup.procs are those of the reader's PID namespace: the host's.
    let cmdline = std::fs::read(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("monitor"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    let container_scope = format!("criox-{id}.scope");
    assert_eq!(systemd.property(&container_scope, "ActiveState"), "active");
    // In the pod's PID namespace, beside the infra process.
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let infra = unit_pids(&systemd, &infra_scope);
    let container = unit_pids(&systemd, &container_scope);
    assert_eq!(pid_ns(container[0]), pid_ns(infra[0]));

    // A crash of the daemon leaves the pod and its container to the next one.
    daemon.kill_and_restart(&systemd).await;
    let mut rt = daemon.runtime().await;
    assert_eq!(
        criox_testkit::container_status(&mut rt, &id).await.state,
        ContainerState::ContainerRunning as i32,
        "{}",
        daemon.log()
    );
    assert_eq!(unit_pids(&systemd, &monitor_scope), vec![monitor]);
    let (status, _) = criox_testkit::pods::status(&mut rt, &pod).await;
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);

    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    assert_eq!(
        criox_testkit::container_status(&mut rt, &id).await.state,
        ContainerState::ContainerExited as i32
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert!(
        !systemd.unit_loaded(&monitor_scope),
        "{monitor_scope} is still loaded"
    );
    assert!(!systemd.unit_loaded(&container_scope));
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
    assert!(!systemd.unit_loaded(&infra_scope), "{infra_scope}");
    assert_ne!(systemd.property(&slice, "ActiveState"), "active");
    drop(rt);
    drop(daemon);
}
