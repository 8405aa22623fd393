//! cAdvisor-style metrics for a kubelet that takes them from the runtime
//! (ListMetricDescriptors, ListPodSandboxMetrics): real containers burning CPU, holding
//! memory and receiving traffic, read through the CRI and through `criox ctl`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{PodLeftovers, TestNetwork, pod_config, run_pod, stop_and_remove_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

/// A busybox shell running `script`, without a log file.
fn container(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        log_path: String::new(),
        ..criox_testkit::busybox_container(name, &["sh", "-c", script])
    }
}

async fn descriptors(rt: &mut Rt) -> HashMap<String, Vec<String>> {
    rt.list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect()
}

async fn all_metrics(rt: &mut Rt) -> Vec<PodSandboxMetrics> {
    rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics
}

async fn pod_metrics(rt: &mut Rt, pod: &str) -> PodSandboxMetrics {
    all_metrics(rt)
        .await
        .into_iter()
        .find(|p| p.pod_sandbox_id == pod)
        .unwrap_or_else(|| panic!("no metrics for pod {pod}"))
}

fn container_metrics<'a>(pod: &'a PodSandboxMetrics, id: &str) -> &'a [Metric] {
    &pod.container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap_or_else(|| panic!("no metrics for container {id}"))
        .metrics
}

/// The value of the metric `name` whose labels include all of `labels` (by descriptor key).
fn value_of(
    metrics: &[Metric],
    descriptors: &HashMap<String, Vec<String>>,
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    let keys = &descriptors[name];
    metrics
        .iter()
        .filter(|m| m.name == name)
        .find(|m| {
            labels.iter().all(|(key, value)| {
                let at = keys.iter().position(|k| k == key).expect("label key");
                m.label_values[at] == *value
            })
        })
        .unwrap_or_else(|| panic!("no {name} with {labels:?} in {metrics:#?}"))
        .value
        .as_ref()
        .unwrap()
        .value
}

/// Every metric's name is described, with as many label values as the descriptor has keys.
fn assert_described(metrics: &[Metric], descriptors: &HashMap<String, Vec<String>>) {
    assert!(!metrics.is_empty());
    for m in metrics {
        let keys = descriptors
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} is not described", m.name));
        assert_eq!(keys.len(), m.label_values.len(), "{}", m.name);
        assert!(m.value.is_some() && m.timestamp > 0, "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_metrics_follow_cpu_memory_and_network_of_real_containers() {
    let network = TestNetwork::new(Path::new("/tmp"));
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    network.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let descriptors = descriptors(&mut rt).await;
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_spec_memory_limit_bytes",
        "container_start_time_seconds",
    ] {
        assert!(descriptors.contains_key(name), "{name} not described");
    }
    assert!(
        descriptors["container_network_receive_bytes_total"].contains(&"interface".to_string())
    );

    let pod_config = pod_config("metrics", &criox_testkit::unique("uid"));
    let pod = run_pod(&mut rt, pod_config.clone()).await;
    let burner = criox_testkit::run_container(
        &mut rt,
        &pod,
        &pod_config,
        container("burn", "while :; do :; done"),
    )
    .await;
    let mut holder_config = container("hold", "sleep 600");
    holder_config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 256 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let holder = criox_testkit::run_container(&mut rt, &pod, &pod_config, holder_config).await;

    let first = pod_metrics(&mut rt, &pod).await;
    assert_described(&first.metrics, &descriptors);
    assert_eq!(first.container_metrics.len(), 2);
    for c in &first.container_metrics {
        assert_described(&c.metrics, &descriptors);
    }
    let burn_labels = [
        ("container", "burn"),
        ("pod", "metrics"),
        ("namespace", "test"),
    ];
    let cpu = |m: &PodSandboxMetrics| {
        value_of(
            container_metrics(m, &burner),
            &descriptors,
            "container_cpu_usage_seconds_total",
            &[
                burn_labels[0],
                burn_labels[1],
                burn_labels[2],
                ("cpu", "total"),
            ],
        )
    };
    let cpu_metric = container_metrics(&first, &burner)
        .iter()
        .find(|m| m.name == "container_cpu_usage_seconds_total")
        .unwrap();
    assert_eq!(cpu_metric.metric_type, MetricType::Counter as i32);

    // CPU: whole seconds on the wire, so wait for at least one more second of CPU time.
    let start = cpu(&first);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = start;
    while now <= start && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = cpu(&pod_metrics(&mut rt, &pod).await);
    }
    assert!(now > start, "CPU seconds stayed at {start}");

    // Memory: 60 MiB written to tmpfs stays resident and charged to the container.
    let hold_labels = [("container", "hold")];
    let working_set = |m: &PodSandboxMetrics| {
        value_of(
            container_metrics(m, &holder),
            &descriptors,
            "container_memory_working_set_bytes",
            &hold_labels,
        )
    };
    let base = working_set(&pod_metrics(&mut rt, &pod).await);
    criox_testkit::sh_ok(
        &mut rt,
        &holder,
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=60 2>/dev/null",
    )
    .await;
    let after = pod_metrics(&mut rt, &pod).await;
    let grown = working_set(&after) as f64 - base as f64;
    let expected = 60.0 * 1024.0 * 1024.0;
    assert!(
        grown > expected * 0.85 && grown < expected * 1.3,
        "working set grew by {grown} bytes, expected about {expected}"
    );
    let limit = value_of(
        container_metrics(&after, &holder),
        &descriptors,
        "container_spec_memory_limit_bytes",
        &hold_labels,
    );
    assert_eq!(limit, 256 * 1024 * 1024);

    // Network: pod-level counters of eth0 move with traffic from the host.
    let rx = |m: &PodSandboxMetrics| {
        value_of(
            &m.metrics,
            &descriptors,
            "container_network_receive_bytes_total",
            &[("interface", "eth0"), ("pod", "metrics")],
        )
    };
    let rx_before = rx(&after);
    let ip = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;
    let ping = std::process::Command::new(criox_testkit::busybox_rootfs().join("bin/busybox"))
        .args(["ping", "-c", "3", "-W", "2", &ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let rx_after = rx(&pod_metrics(&mut rt, &pod).await);
    assert!(rx_after > rx_before, "rx {rx_before} -> {rx_after}");

    // The same through ctl, as JSON.
    let out = daemon.ctl(&["metricdescs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["descriptors"].as_array().unwrap().len(),
        descriptors.len()
    );
    let out = daemon.ctl(&["metricsp", &pod[..12]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["podMetrics"].as_array().unwrap().len(), 1);
    assert_eq!(json["podMetrics"][0]["pod_sandbox_id"], pod.as_str());

    // A stopped pod is left out, and the call still succeeds; so is a removed one.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(
        !all_metrics(&mut rt)
            .await
            .iter()
            .any(|p| p.pod_sandbox_id == pod)
    );
    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(
        !all_metrics(&mut rt)
            .await
            .iter()
            .any(|p| p.pod_sandbox_id == pod)
    );
}

/// The families the kubelet's cAdvisor endpoint has beyond CPU and memory usage: CFS
/// throttling, limits, kernel and swap memory, open files and sockets. A container with
/// a CPU quota, a pids limit and a listening socket shows each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_limits_and_open_files_are_reported() {
    let network = TestNetwork::new(Path::new("/tmp"));
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    network.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let descriptors = descriptors(&mut rt).await;
    for name in [
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_cpu_cfs_throttled_seconds_total",
        "container_memory_kernel_usage",
        "container_memory_mapped_file",
        "container_memory_swap",
        "container_spec_memory_swap_limit_bytes",
        "container_threads_max",
        "container_file_descriptors",
        "container_sockets",
        "container_fs_reads_bytes_total",
        "container_blkio_device_usage_total",
    ] {
        assert!(descriptors.contains_key(name), "{name} not described");
    }

    let pod_config = pod_config("limits", &criox_testkit::unique("uid"));
    let pod = run_pod(&mut rt, pod_config.clone()).await;
    // Spins in a 20% quota (throttled), and holds a listening socket open.
    let mut config = container("limited", "nc -l -p 8080 & while :; do :; done");
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            memory_limit_in_bytes: 64 * 1024 * 1024,
            memory_swap_limit_in_bytes: 64 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;

    let labels = [("container", "limited")];
    let deadline = Instant::now() + Duration::from_secs(60);
    let (throttled, sockets) = loop {
        let metrics = pod_metrics(&mut rt, &pod).await;
        let metrics = container_metrics(&metrics, &id);
        assert_described(metrics, &descriptors);
        let value = |name| value_of(metrics, &descriptors, name, &labels);
        let throttled = value("container_cpu_cfs_throttled_periods_total");
        let sockets = value("container_sockets");
        if (throttled > 0 && sockets > 0) || Instant::now() > deadline {
            assert!(value("container_cpu_cfs_periods_total") >= throttled);
            assert!(value("container_file_descriptors") >= sockets + 3);
            // Each of these is reported, whatever its value on this kernel.
            value("container_memory_kernel_usage");
            value("container_memory_mapped_file");
            value("container_memory_swap");
            value("container_spec_memory_swap_limit_bytes");
            value("container_threads_max");
            break (throttled, sockets);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(throttled > 0, "a 20% quota never throttled a busy loop");
    assert!(sockets > 0, "the listening socket is not counted");
    stop_and_remove_pod(&mut rt, &pod).await;
}
