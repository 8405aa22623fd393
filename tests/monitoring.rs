//! What the kubelet reads for eviction, autoscaling and its evented PLEG: container and pod
//! statistics from cgroups and the pod's network namespace, and container events.

use std::path::Path;
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{TestNetwork, on_host_network, pod_config, run_pod};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

/// A busybox shell running `script`, without a log file.
fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        log_path: String::new(),
        ..criox_testkit::busybox_container(name, &["sh", "-c", script])
    }
}

async fn stats(rt: &mut Rt, id: &str) -> ContainerStats {
    rt.container_stats(ContainerStatsRequest {
        container_id: id.to_string(),
    })
    .await
    .expect("ContainerStats")
    .into_inner()
    .stats
    .unwrap()
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_stats_follow_cpu_memory_and_the_writable_layer() {
    let network = TestNetwork::new(Path::new("/tmp"));
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    network.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let pod_config = pod_config("stats", &criox_testkit::unique("uid"));
    let pod = run_pod(&mut rt, pod_config.clone()).await;

    let burner = criox_testkit::run_container(
        &mut rt,
        &pod,
        &pod_config,
        container("burn", "while :; do :; done"),
    )
    .await;
    let holder =
        criox_testkit::run_container(&mut rt, &pod, &pod_config, container("hold", "sleep 600"))
            .await;

    // CPU: two samples a second apart; the first has no rate yet.
    let first = stats(&mut rt, &burner).await;
    assert!(first.cpu.as_ref().unwrap().usage_nano_cores.is_none());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = stats(&mut rt, &burner).await;
    let cpu = second.cpu.unwrap();
    let cores = value(&cpu.usage_nano_cores) as f64 / 1e9;
    // One busy loop on a two-core machine that other tests share.
    assert!(cores > 0.3 && cores < 1.2, "usage_nano_cores {cores}");
    assert!(value(&cpu.usage_core_nano_seconds) > 0);

    // Memory: 60 MiB written to tmpfs stays resident and charged to the container.
    let before = stats(&mut rt, &holder).await;
    let base = value(&before.memory.as_ref().unwrap().working_set_bytes);
    criox_testkit::sh_ok(
        &mut rt,
        &holder,
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=60 2>/dev/null",
    )
    .await;
    let after = stats(&mut rt, &holder).await;
    let grown = value(&after.memory.as_ref().unwrap().working_set_bytes) as f64 - base as f64;
    let expected = 60.0 * 1024.0 * 1024.0;
    assert!(
        (grown - expected).abs() < expected * 0.1,
        "working set grew by {grown} bytes, expected about {expected}"
    );

    // Writable layer: 10 MiB written into the container's own filesystem.
    let layer_before = value(&before.writable_layer.as_ref().unwrap().used_bytes);
    criox_testkit::sh_ok(
        &mut rt,
        &holder,
        "dd if=/dev/zero of=/root/blob bs=1M count=10 2>/dev/null; sync",
    )
    .await;
    // A layer's walk stands for a few seconds: the growth shows once it is redone.
    let mut layer = stats(&mut rt, &holder).await.writable_layer.unwrap();
    for _ in 0..40 {
        if value(&layer.used_bytes) >= layer_before + 10 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        layer = stats(&mut rt, &holder).await.writable_layer.unwrap();
    }
    assert!(
        value(&layer.used_bytes) >= layer_before + 10 * 1024 * 1024,
        "writable layer {} after {}",
        value(&layer.used_bytes),
        layer_before
    );
    assert!(value(&layer.inodes_used) > 0);

    // The pod: its containers and its network interface, whose counters move with traffic.
    let pod_stats = |rt: &mut Rt| {
        let mut rt = rt.clone();
        let pod = pod.clone();
        async move {
            rt.pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: pod,
            })
            .await
            .expect("PodSandboxStats")
            .into_inner()
            .stats
            .unwrap()
            .linux
            .unwrap()
        }
    };
    let before = pod_stats(&mut rt).await;
    assert_eq!(before.containers.len(), 2);
    let eth0 = before
        .network
        .as_ref()
        .unwrap()
        .default_interface
        .clone()
        .unwrap();
    assert_eq!(eth0.name, "eth0");
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let ip = status.network.unwrap().ip;
    let ping = std::process::Command::new(criox_testkit::busybox_rootfs().join("bin/busybox"))
        .args(["ping", "-c", "3", "-W", "2", &ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let after = pod_stats(&mut rt).await;
    let eth0_after = after.network.unwrap().default_interface.unwrap();
    assert!(value(&eth0_after.rx_bytes) > value(&eth0.rx_bytes));
    assert!(value(&eth0_after.tx_bytes) > value(&eth0.tx_bytes));

    let listed = rt
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 2);

    // The same figures through ctl.
    let out = daemon.ctl(&["stats", "--pod", &pod]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&burner[..13]) && text.contains("hold"),
        "{text}"
    );
    let out = daemon.ctl(&["statsp", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stats"][0]["attributes"]["id"], pod.as_str());

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    // Stats of a stopped container have no cgroup figures, and no error.
    let gone = stats(&mut rt, &burner).await;
    assert!(gone.cpu.is_none());
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    let err = rt
        .container_stats(ContainerStatsRequest {
            container_id: burner,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_for_every_subscriber_and_exits_promptly() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let mut pod_config = pod_config("events", &criox_testkit::unique("uid"));
    on_host_network(&mut pod_config, NamespaceMode::Pod);
    let pod = run_pod(&mut rt, pod_config.clone()).await;
    let mut first = rt
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut second = daemon
        .runtime()
        .await
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    // A subscriber that never reads must not hold the others up.
    let _idle = daemon
        .runtime()
        .await
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap();

    let id = criox_testkit::run_container(
        &mut rt,
        &pod,
        &pod_config,
        container("blink", "sleep 0.5; exit 2"),
    )
    .await;
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(20), first.next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert_eq!(event.container_id, id);
        assert_eq!(event.pod_sandbox_status.as_ref().unwrap().id, pod);
        if event.container_event_type == ContainerEventType::ContainerStoppedEvent as i32 {
            let status = &event.containers_statuses[0];
            assert_eq!(status.exit_code, 2);
            // The event reports the exit it follows: a finish after the start, and an
            // event made no earlier than that finish.
            assert!(
                status.started_at > 0 && status.finished_at > status.started_at,
                "{status:?}"
            );
            assert!(event.created_at >= status.finished_at, "{event:?}");
        }
        kinds.push(event.container_event_type);
    }
    assert_eq!(
        kinds,
        [
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            ContainerEventType::ContainerStoppedEvent as i32,
        ]
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(20), first.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        deleted.container_event_type,
        ContainerEventType::ContainerDeletedEvent as i32
    );
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(20), second.next())
            .await
            .expect("second subscriber served")
            .unwrap()
            .unwrap();
        assert_eq!(event.container_id, id);
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_kill_is_reported_as_oom_and_counted_embedded() {
    a_memory_limit_kill_is_reported_as_oom_and_counted("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_kill_is_reported_as_oom_and_counted_runc() {
    a_memory_limit_kill_is_reported_as_oom_and_counted("runc").await;
}

/// `handler`: the pod's runtime handler, "" for the embedded runtime.
async fn a_memory_limit_kill_is_reported_as_oom_and_counted(handler: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = criox_testkit::daemon_with_image(
        &criox_testkit::busybox_image(),
        &format!(
            "[metrics]\nenabled = true\nport = {port}\n\
             [runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n"
        ),
    )
    .await;
    let mut rt = daemon.runtime().await;
    let mut pod_config = pod_config("oom", &criox_testkit::unique("uid"));
    on_host_network(&mut pod_config, NamespaceMode::Pod);
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let mut config = container("hog", "dd if=/dev/zero of=/dev/null bs=200M count=1");
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;
    let mut status = None;
    for _ in 0..1000 {
        let s = rt
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == ContainerState::ContainerExited as i32 {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = status.expect("the container exited");
    assert_eq!(status.reason, "OOMKilled");
    assert_eq!(status.exit_code, 137);

    let mut counted = String::new();
    for _ in 0..100 {
        let body = std::process::Command::new(criox_testkit::busybox_rootfs().join("bin/busybox"))
            .args([
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://127.0.0.1:{port}/metrics"),
            ])
            .output()
            .unwrap();
        counted = String::from_utf8_lossy(&body.stdout)
            .lines()
            .find(|l| l.starts_with("criox_oom_kills_total "))
            .unwrap_or_default()
            .to_string();
        if counted == "criox_oom_kills_total 1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, "criox_oom_kills_total 1");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}
