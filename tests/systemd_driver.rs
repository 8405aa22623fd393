//! The systemd cgroup driver against a real systemd (see systemd_support for how it boots):
//! pods are slices, containers are transient scopes with their resources as properties,
//! statistics come from the scope's cgroup, and removal leaves no unit behind, on the
//! embedded runtime and on runc.

use criox_proto::v1::*;
use criox_testkit::systemd::{Systemd, SystemdDaemon};

/// Returns None (after saying why) where systemd cannot run at all.
fn boot() -> Option<Systemd> {
    if let Some(reason) = criox_testkit::systemd::unavailable() {
        eprintln!("SKIP: systemd is unavailable: {reason}");
        return None;
    }
    Some(Systemd::boot())
}

#[test]
fn systemd_boots_in_its_namespaces_and_leaves_no_trace() {
    let Some(systemd) = boot() else { return };
    let state = systemd.systemctl(&["is-system-running"]);
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    assert!(matches!(state.as_str(), "running" | "degraded"), "{state}");
    assert_eq!(systemd.property("dbus.service", "ActiveState"), "active");
    // Its cgroups are the namespace's, not the host's.
    assert_eq!(
        systemd.property("init.scope", "ControlGroup"),
        "/init.scope"
    );
    let pid = systemd.pid;
    // Only this test's cgroups: the other tests of this file boot their own at the same time.
    let own = systemd.cgroups.clone();
    assert!(!own.is_empty(), "the test made no cgroup of its own");
    drop(systemd);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "systemd outlived the test"
    );
    let leftovers: Vec<_> = own.iter().filter(|c| c.exists()).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_pod_and_container_are_systemd_units() {
    pod_and_container_are_units("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_pod_and_container_are_systemd_units() {
    pod_and_container_are_units("runc").await;
}

fn memory_limit_file(systemd: &Systemd, cgroup: &str) -> std::path::PathBuf {
    let v1 = systemd
        .cgroup_file("memory")
        .join(cgroup.trim_start_matches('/'));
    if systemd.cgroup_file("memory").is_dir() {
        v1.join("memory.limit_in_bytes")
    } else {
        systemd.cgroup_file(cgroup).join("memory.max")
    }
}

async fn pod_and_container_are_units(handler: &str) {
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>6.2}s] {what}", started.elapsed().as_secs_f64());
    let Some(systemd) = boot() else { return };
    step("systemd booted");
    let daemon = SystemdDaemon::start(&systemd).await;
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
    step("image pulled");

    // The kubelet follows the runtime's driver.
    let config = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.linux.unwrap().cgroup_driver,
        CgroupDriver::Systemd as i32
    );
    let status = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.info["cgroupDriver"], "systemd");

    // A cgroupfs path is not a slice.
    let uid = format!("{}ab{}", std::process::id(), handler.len());
    let mut bad = criox_testkit::pods::pod_config("bad", &uid);
    criox_testkit::pods::on_host_network(&mut bad, NamespaceMode::Container);
    bad.linux.as_mut().unwrap().cgroup_parent = "/kubepods/besteffort/pod1".into();
    let err = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(bad),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("linux.cgroup_parent"), "{err:?}");

    let slice = format!("kubepods-besteffort-pod{uid}.slice");
    let slice_path =
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice");
    let mut pod_config = criox_testkit::pods::pod_config("sd", &uid);
    criox_testkit::pods::on_host_network(&mut pod_config, NamespaceMode::Container);
    pod_config.linux.as_mut().unwrap().cgroup_parent = slice.clone();
    let logs = daemon.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    pod_config.log_directory = logs.display().to_string();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", daemon.log()))
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(systemd.property(&slice, "ActiveState"), "active");
    assert_eq!(systemd.property(&slice, "ControlGroup"), slice_path);
    step("pod running");

    let mut container = criox_testkit::busybox_container("sleeper", &["sleep", "1000"]);
    container.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", daemon.log()))
        .into_inner()
        .container_id;
    criox_testkit::start_container(&mut rt, &id).await;
    step("container created and started");
    let scope = format!("criox-{id}.scope");
    let scope_path = format!("{slice_path}/{scope}");
    assert_eq!(systemd.property(&scope, "ActiveState"), "active");
    assert_eq!(systemd.property(&scope, "Slice"), slice);
    assert_eq!(systemd.property(&scope, "ControlGroup"), scope_path);
    let limit = std::fs::read_to_string(memory_limit_file(&systemd, &scope_path))
        .unwrap_or_else(|e| panic!("the scope's memory limit: {e}"));
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    // The limits are the scope's properties too, so systemd keeps them when it realizes
    // the unit again (daemon-reload, a change to the slice).
    let v1 = systemd.cgroup_file("memory").is_dir();
    let (memory, cpu) = if v1 {
        ("MemoryLimit", "CPUShares")
    } else {
        ("MemoryMax", "CPUWeight")
    };
    assert_eq!(systemd.property(&scope, memory), (64u64 << 20).to_string());
    assert_eq!(systemd.property(&scope, cpu), if v1 { "512" } else { "20" });
    if v1 {
        let shares = systemd
            .cgroup_file("cpu")
            .join(scope_path.trim_start_matches('/'))
            .join("cpu.shares");
        assert_eq!(std::fs::read_to_string(&shares).unwrap().trim(), "512");
    }
    // runc makes the scope itself (--systemd-cgroup, a `slice:prefix:name` cgroupsPath, as
    // under CRI-O and containerd); the embedded runtime writes the scope's cgroupfs paths
    // and criox makes the scope.
    let verbose = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    let expected = if handler == "runc" {
        format!("{slice}:criox:{id}")
    } else {
        scope_path.clone()
    };
    assert_eq!(
        info["runtimeSpec"]["linux"]["cgroupsPath"],
        expected.as_str()
    );
    assert_eq!(info["cgroup"], scope_path.as_str());
    // New limits reach the scope's properties and its cgroup.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", daemon.log()));
    assert_eq!(systemd.property(&scope, memory), (128u64 << 20).to_string());
    let limit = std::fs::read_to_string(memory_limit_file(&systemd, &scope_path)).unwrap();
    assert_eq!(limit.trim(), (128u64 << 20).to_string());
    // The container's cgroup in every hierarchy, to check that removal takes them all.
    let cgroup_dirs: Vec<std::path::PathBuf> = std::fs::read_dir(systemd.cgroup_file(""))
        .unwrap()
        .flatten()
        .map(|h| h.path().join(scope_path.trim_start_matches('/')))
        .filter(|d| d.is_dir())
        .collect();
    assert!(cgroup_dirs.len() > 1 || !v1, "{cgroup_dirs:?}");
    // The container's process is in the scope (systemd's own view of it).
    let tasks = systemd.property(&scope, "TasksCurrent");
    assert!(
        tasks.parse::<u64>().is_ok_and(|n| n >= 1) || tasks.is_empty(),
        "{tasks}"
    );

    let stats = rt
        .container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let memory = stats.memory.expect("memory from the scope's cgroup");
    assert!(
        memory.working_set_bytes.map(|v| v.value).unwrap_or(0) > 0
            || memory.usage_bytes.map(|v| v.value).unwrap_or(0) > 0,
        "{memory:?}"
    );

    step("stats read");
    // The container's processes stay findable through every cgroup of the container
    // (kill --all goes through the freezer cgroup on v1), so a stop is prompt.
    let stopping = std::time::Instant::now();
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(10),
        "stop and removal took {:?}\n{}",
        stopping.elapsed(),
        daemon.log()
    );
    assert!(!systemd.unit_loaded(&scope), "{scope} is still loaded");
    let left: Vec<_> = cgroup_dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after removal: {left:?}");
    step("container removed");
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
    // systemd loads any slice it is asked about; the pod's is no longer active.
    assert_eq!(systemd.property(&slice, "ActiveState"), "inactive");
    drop(rt);
    step("pod removed");
    drop(daemon);
    step("daemon stopped");
    drop(systemd);
    step("systemd gone");
}
