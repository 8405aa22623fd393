//! cri-api v0.37 on a pod and its containers: in-place pod resize, the stop signal from the
//! container config, bind mount options, the RuntimeFeatures that say so, and
//! CheckpointPod / RestorePod answering why they cannot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{
    PodLeftovers, on_host_network, pod_config, run_pod, stop_and_remove_pod,
};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const MIB: i64 = 1 << 20;

fn host_pod(name: &str) -> PodSandboxConfig {
    let mut config = pod_config(name, &criox_testkit::unique("uid"));
    on_host_network(&mut config, NamespaceMode::Pod);
    config
}

/// A daemon with busybox pulled, and the guard that ends the pods it leaves.
async fn busybox_daemon() -> (criox_testkit::Daemon, PodLeftovers) {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let leftovers = PodLeftovers::new(&daemon.root);
    (daemon, leftovers)
}

async fn exec(rt: &mut Rt, id: &str, script: &str) -> (i32, String) {
    let out = criox_testkit::exec_sync(rt, id, &["sh", "-c", script], 30).await;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.exit_code, text)
}

/// The pod cgroup's file `v1` (in the v1 hierarchy `controller`) or `v2`, whichever this
/// host has for that controller.
fn cgroup_file(cgroup: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
    let rel = cgroup.trim_start_matches('/');
    let v1_dir = PathBuf::from("/sys/fs/cgroup").join(controller).join(rel);
    if v1_dir.is_dir() {
        return v1_dir.join(v1);
    }
    PathBuf::from("/sys/fs/cgroup").join(rel).join(v2)
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn resize(pod: &str, memory: i64, shares: i64) -> UpdatePodSandboxResourcesRequest {
    UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.to_string(),
        overhead: None,
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: memory,
            cpu_shares: shares,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn a_pod_resize_reaches_its_cgroup_and_status_and_one_below_usage_changes_nothing() {
    let (daemon, _leftovers) = busybox_daemon().await;
    let mut rt = daemon.runtime().await;
    let mut config = host_pod("resize");
    config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 256 * MIB,
        cpu_shares: 512,
        ..Default::default()
    });
    let pod = run_pod(&mut rt, config.clone()).await;
    let (_, info) = criox_testkit::pods::status(&mut rt, &pod).await;
    let cgroup = info["cgroupParent"].as_str().unwrap().to_string();
    let memory = cgroup_file(&cgroup, "memory", "memory.limit_in_bytes", "memory.max");
    let shares = cgroup_file(&cgroup, "cpu", "cpu.shares", "cpu.weight");
    assert_eq!(read(&memory), (256 * MIB).to_string());
    let shares_before = read(&shares);

    // A container that holds 48 MiB in the pod's /dev/shm, charged to the pod.
    let mut hold = criox_testkit::busybox_container(
        "hold",
        &[
            "sh",
            "-c",
            "head -c 50331648 /dev/zero > /dev/shm/held; sleep 600",
        ],
    );
    hold.log_path = String::new();
    let ctr = criox_testkit::run_container(&mut rt, &pod, &config, hold).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while exec(
        &mut rt,
        &ctr,
        "test -f /dev/shm/held && test $(wc -c < /dev/shm/held) -eq 50331648",
    )
    .await
    .0 != 0
    {
        assert!(
            Instant::now() < deadline,
            "the container did not fill /dev/shm"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    rt.update_pod_sandbox_resources(resize(&pod, 512 * MIB, 256))
        .await
        .expect("UpdatePodSandboxResources");
    assert_eq!(read(&memory), (512 * MIB).to_string());
    assert_ne!(read(&shares), shares_before, "CPU shares unchanged");
    let shares_after = read(&shares);
    let (_, info) = criox_testkit::pods::status(&mut rt, &pod).await;
    assert_eq!(
        info["config"]["limits"]["memory_limit"],
        512 * MIB,
        "{info}"
    );
    assert_eq!(info["config"]["limits"]["cpu_shares"], 256, "{info}");
    let stats = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let mem = stats.linux.unwrap().memory.unwrap();
    let available = mem.available_bytes.unwrap().value as i64;
    let working_set = mem.working_set_bytes.unwrap().value as i64;
    assert!(working_set >= 48 * MIB, "working set {working_set}");
    assert_eq!(available, 512 * MIB - working_set);

    // Below what the pod holds: refused, naming the field, and nothing changed.
    let err = rt
        .update_pod_sandbox_resources(resize(&pod, 16 * MIB, 1024))
        .await
        .expect_err("a limit below usage was accepted");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("memory_limit_in_bytes") && err.message().contains("current"),
        "{err:?}"
    );
    assert_eq!(read(&memory), (512 * MIB).to_string());
    assert_eq!(read(&shares), shares_after);
    let (_, info) = criox_testkit::pods::status(&mut rt, &pod).await;
    assert_eq!(info["config"]["limits"]["memory_limit"], 512 * MIB);
    assert_eq!(exec(&mut rt, &ctr, "true").await.0, 0, "the container died");

    let err = rt
        .update_pod_sandbox_resources(resize("nosuchpod", 512 * MIB, 256))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test]
async fn the_configured_stop_signal_stops_the_container_and_is_reported() {
    let (daemon, _leftovers) = busybox_daemon().await;
    let mut rt = daemon.runtime().await;
    let config = host_pod("stopsig");
    let pod = run_pod(&mut rt, config.clone()).await;
    // PID 1 ignores signals it has no handler for: only SIGUSR1 ends this one early.
    let script = "trap 'exit 7' USR1; while true; do sleep 0.1; done";
    let mut usr1 = criox_testkit::busybox_container("usr1", &["sh", "-c", script]);
    usr1.log_path = String::new();
    usr1.stop_signal = Signal::Sigusr1 as i32;
    let ctr = criox_testkit::run_container(&mut rt, &pod, &config, usr1).await;
    let status = |rt: &mut Rt, id: String| {
        let mut rt = rt.clone();
        async move { criox_testkit::container_status(&mut rt, &id).await }
    };
    assert_eq!(
        status(&mut rt, ctr.clone()).await.stop_signal,
        Signal::Sigusr1 as i32
    );
    let started = Instant::now();
    criox_testkit::stop_container(&mut rt, &ctr, 20).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status(&mut rt, ctr.clone()).await.exit_code, 7);

    // Without one, the image's (busybox has none): SIGTERM.
    let mut plain = criox_testkit::busybox_container("plain", &["sleep", "600"]);
    plain.log_path = String::new();
    let plain = criox_testkit::create_container(&mut rt, &pod, &config, plain).await;
    assert_eq!(
        status(&mut rt, plain).await.stop_signal,
        Signal::Sigterm as i32
    );

    // ctl inspect names it.
    let out = daemon.ctl(&["inspect", &ctr]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"stopSignal\": \"SIGUSR1\""), "{text}");

    let mut bad = criox_testkit::busybox_container("bad", &["true"]);
    bad.log_path = String::new();
    bad.stop_signal = 999;
    let err = criox_testkit::create_container_err(&mut rt, &pod, &config, bad).await;
    criox_testkit::assert_invalid(&err, "stop_signal");
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test]
async fn bind_mount_options_apply_and_unknown_ones_are_refused() {
    let (daemon, _leftovers) = busybox_daemon().await;
    let mut rt = daemon.runtime().await;
    let features = criox_testkit::runtime_status(&mut rt, false)
        .await
        .features
        .unwrap();
    assert!(features.mount_options);
    let volume = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/true", volume.path().join("true")).unwrap();
    let config = host_pod("mntopts");
    let pod = run_pod(&mut rt, config.clone()).await;
    let mount = |options: &[&str]| Mount {
        container_path: "/data".into(),
        host_path: volume.path().display().to_string(),
        mount_options: options.iter().map(|o| o.to_string()).collect(),
        ..Default::default()
    };
    let mut ctr = criox_testkit::busybox_container("opts", &["sleep", "600"]);
    ctr.log_path = String::new();
    ctr.mounts = vec![mount(&["noexec", "nodev"])];
    let id = criox_testkit::run_container(&mut rt, &pod, &config, ctr).await;
    let (_, mounts) = exec(&mut rt, &id, "grep ' /data ' /proc/self/mountinfo").await;
    assert!(
        mounts.contains("noexec") && mounts.contains("nodev"),
        "{mounts}"
    );
    let (code, text) = exec(&mut rt, &id, "/data/true").await;
    assert_ne!(code, 0, "ran a program from a noexec mount: {text}");

    let mut bad = criox_testkit::busybox_container("badopts", &["true"]);
    bad.log_path = String::new();
    bad.mounts = vec![mount(&["nosuid", "remount"])];
    let err = criox_testkit::create_container_err(&mut rt, &pod, &config, bad).await;
    criox_testkit::assert_invalid(&err, "mounts[0].mount_options[1]");
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test]
async fn checkpoint_and_restore_of_pods_say_why_they_are_not_there() {
    let daemon = criox_testkit::Daemon::start().await;
    let mut rt = daemon.runtime().await;
    let err = rt
        .checkpoint_pod(CheckpointPodRequest {
            pod_sandbox_id: "p1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("CRIU"), "{err:?}");
    let err = rt
        .restore_pod(RestorePodRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("CRIU"), "{err:?}");
}
