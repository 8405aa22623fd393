//! A real kubelet (standalone, static pods) drives criox: pods with init containers, host
//! ports, restarts with back-off, probes, log rotation, statistics from the CRI, the
//! evented PLEG, crashes of either side, teardown, image garbage collection and pods
//! without host users (a user namespace of their own). What the kubelet reports (its
//! `/pods` and `/stats/summary`) is checked against crictl.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criox_testkit::Daemon;
use criox_testkit::kubelet::*;
use criox_testkit::pods::{PodLeftovers, TestNetwork};
use serde_json::{Value, json};

/// criox with the fixture registry trusted and busybox pulled, on a private bridge network.
struct Node {
    daemon: Daemon,
    _leftovers: PodLeftovers,
    net: TestNetwork,
}

async fn node() -> Node {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let leftovers = PodLeftovers::new(&daemon.root);
    let net = TestNetwork::new(&daemon.dir);
    net.install(&daemon.cni_dir);
    Node {
        daemon,
        _leftovers: leftovers,
        net,
    }
}

fn running(kubelet: &Kubelet, pod: &str) -> Option<Value> {
    let p = kubelet.pod(pod)?;
    (p["status"]["phase"] == "Running").then_some(p)
}

fn condition(pod: &Value, kind: &str) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Ids of the running containers of the pod sandbox `pod_id`, by container name.
fn running_containers(crictl: &Crictl, pod_id: &str) -> HashMap<String, String> {
    crictl
        .containers()
        .into_iter()
        .filter(|c| c["podSandboxId"] == pod_id && c["state"] == "CONTAINER_RUNNING")
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The id of the ready pod sandbox whose kubelet name is `name`.
fn pod_id(crictl: &Crictl, name: &str) -> Option<String> {
    crictl
        .pods()
        .into_iter()
        .find(|p| p["metadata"]["name"] == name && p["state"] == "SANDBOX_READY")
        .and_then(|p| p["id"].as_str().map(str::to_string))
}

/// The number the logger container printed last, through `crictl logs`.
/// The number of the logger's last line. Just after the kubelet rotates the log, the new
/// file may hold no line yet, so this waits up to 10 s for one.
fn last_logged_line(crictl: &Crictl, container: &str) -> Option<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = crictl.run(&["logs", "--tail", "3", container]);
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("line ")?.split(' ').next()?.parse().ok());
        if last.is_some() || std::time::Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn web_pod(image: &str, host_port: u16) -> Value {
    let mut init = busybox(
        "init",
        image,
        &["sh", "-c", "echo hello-from-web > /www/index.html"],
    );
    init["volumeMounts"] = json!([{"name": "www", "mountPath": "/www"}]);
    let mut httpd = busybox("httpd", image, &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    httpd["volumeMounts"] = json!([{"name": "www", "mountPath": "/www"}]);
    httpd["ports"] = json!([{"containerPort": 8080, "hostPort": host_port, "protocol": "TCP"}]);
    httpd["readinessProbe"] =
        json!({"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1});
    // About 10 KiB a second: well over the 1 KiB rotation size between two checks.
    let logger = busybox(
        "logger",
        image,
        &[
            "sh",
            "-c",
            "i=0; while true; do echo \"line $i of the logger, padded to make the log grow a little faster\"; i=$((i+1)); usleep 10000; done",
        ],
    );
    static_pod(
        "web",
        json!({
            "terminationGracePeriodSeconds": 2,
            "volumes": [{"name": "www", "emptyDir": {}}],
            "initContainers": [init],
            "containers": [httpd, logger],
        }),
    )
}

#[tokio::test]
async fn a_kubelet_runs_a_static_pod_through_crashes_of_either_side_and_tears_it_down() {
    let mut node = node().await;
    let image = criox_testkit::busybox_image();
    let mut kubelet = Kubelet::builder(&node.daemon.socket).start();
    let crictl = kubelet.crictl.clone();
    let host_port = criox_testkit::free_port();
    kubelet.write_manifest("web", &web_pod(&image, host_port));
    let web = format!("web-{}", kubelet.node);
    let started = Instant::now();

    // Running with its init container done, ready through the HTTP readiness probe.
    let pod = eventually(
        Duration::from_secs(90),
        "the web pod to be Running and Ready",
        || running(&kubelet, "web").filter(|p| condition(p, "Ready").as_deref() == Some("True")),
        || kubelet.log_tail(),
    );
    eprintln!("web pod Running and Ready after {:?}", started.elapsed());
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(
        pod_ip.starts_with(&node.net.prefix),
        "{pod_ip} not in {}",
        node.net.prefix
    );
    let web_id = pod_id(&crictl, &web).expect("crictl lists the web pod");
    let inspect = crictl.json(&["inspectp", &web_id]);
    assert_eq!(inspect["status"]["network"]["ip"], pod_ip.as_str());

    // The pod's IP and the host port both serve what the init container wrote.
    let (code, body) = http_get_at(&format!("{pod_ip}:8080"), "/index.html").expect("pod IP");
    assert_eq!((code, body.trim()), (200, "hello-from-web"));
    let (code, body) = http_get(host_port, "/index.html").expect("host port");
    assert_eq!((code, body.trim()), (200, "hello-from-web"));

    let containers = running_containers(&crictl, &web_id);
    assert_eq!(containers.len(), 2, "{containers:?}");
    let logger = containers["logger"].clone();

    // Logs: CRI format under the pod log directory, rotated by the kubelet at 1 KiB.
    let pod_uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let log_dir = kubelet
        .pod_logs
        .join(format!("default_{web}_{pod_uid}"))
        .join("logger");
    // Each rotation leaves one rotated file with a new timestamp (two files at most).
    let mut rotations: Vec<String> = Vec::new();
    eventually(
        Duration::from_secs(40),
        "two rotations of the logger's log",
        || {
            for name in criox_testkit::dir_entries(&log_dir) {
                if name.starts_with("0.log.") && !rotations.contains(&name) {
                    rotations.push(name);
                }
            }
            (rotations.len() >= 2).then_some(())
        },
        || format!("{:?}", criox_testkit::dir_entries(&log_dir)),
    );
    let files = criox_testkit::dir_entries(&log_dir);
    assert!(
        files.len() <= 2,
        "more files than containerLogMaxFiles: {files:?}"
    );
    let current = std::fs::read_to_string(log_dir.join("0.log")).unwrap();
    let records: Vec<&str> = current.lines().collect();
    assert!(!records.is_empty());
    for record in &records {
        let parts: Vec<&str> = record.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{record}");
        assert!(
            chrono_like(parts[0]) && parts[1] == "stdout" && (parts[2] == "F" || parts[2] == "P"),
            "not a CRI log record: {record}"
        );
    }
    let size = std::fs::metadata(log_dir.join("0.log")).unwrap().len();
    eprintln!(
        "logger log rotated: {rotations:?}, current 0.log {size} bytes, files now {:?}",
        criox_testkit::dir_entries(&log_dir)
    );
    let before = last_logged_line(&crictl, &logger).expect("crictl logs shows the logger");
    std::thread::sleep(Duration::from_millis(500));
    let after = last_logged_line(&crictl, &logger).unwrap();
    assert!(after > before, "logs keep flowing: {before} then {after}");

    // Statistics read from the CRI, as the kubelet sums them up.
    let summary = eventually(
        Duration::from_secs(60),
        "CPU and memory of the web pod in /stats/summary",
        || {
            let s = kubelet.get_json("/stats/summary")?;
            let pod = s["pods"]
                .as_array()?
                .iter()
                .find(|p| p["podRef"]["name"] == web.as_str())?
                .clone();
            (pod["cpu"]["usageNanoCores"].as_u64()? > 0
                && pod["memory"]["workingSetBytes"].as_u64()? > 0
                && pod["containers"].as_array()?.len() == 2)
                .then_some(pod)
        },
        || kubelet.get("/stats/summary").unwrap_or_default(),
    );
    let logger_stats = summary["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "logger")
        .unwrap();
    assert!(
        logger_stats["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(logger_stats["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    eprintln!(
        "stats/summary web pod: cpu {} nanocores ({} ns total), memory working set {} bytes; logger cpu {} ns, memory {} bytes",
        summary["cpu"]["usageNanoCores"],
        summary["cpu"]["usageCoreNanoSeconds"],
        summary["memory"]["workingSetBytes"],
        logger_stats["cpu"]["usageCoreNanoSeconds"],
        logger_stats["memory"]["workingSetBytes"]
    );

    assert!(
        !kubelet.log().contains("falling back to cadvisor stats"),
        "the kubelet does not take statistics from the CRI"
    );

    // The evented PLEG holds a GetContainerEvents stream open.
    let metrics = kubelet.get("/metrics").unwrap_or_default();
    let evented = metric(&metrics, "kubelet_evented_pleg_connection_success_count");
    assert!(evented >= 1.0, "no evented PLEG connection:\n{metrics}");

    // criox crashes and comes back under the running kubelet: nothing is recreated.
    let ids_before: Vec<String> = crictl.pods().iter().map(|p| p["id"].to_string()).collect();
    let rotated_before = rotated_logs(&log_dir);
    node.daemon.kill();
    std::thread::sleep(Duration::from_secs(3));
    node.daemon.spawn().await;
    let before = last_logged_line(&crictl, &logger).unwrap();
    std::thread::sleep(Duration::from_secs(15));
    let ids_after: Vec<String> = crictl.pods().iter().map(|p| p["id"].to_string()).collect();
    assert_eq!(ids_before, ids_after, "pods recreated after a criox crash");
    assert_eq!(
        running_containers(&crictl, &web_id),
        containers,
        "containers recreated after a criox crash"
    );
    let after = last_logged_line(&crictl, &logger).unwrap();
    assert!(
        after > before,
        "logs stopped after a criox crash: {before} then {after}"
    );
    let status = kubelet.container_status("web", "logger").unwrap();
    assert_eq!(status["restartCount"], 0, "{status}");
    assert!(running(&kubelet, "web").is_some());
    // The restarted daemon reopens the log of a container it did not start: rotation goes
    // on (a failed reopen makes the kubelet rename the file back).
    let rotated_after = rotated_logs(&log_dir);
    assert!(
        rotated_after.iter().any(|n| !rotated_before.contains(n)),
        "no rotation after the criox restart: {rotated_before:?} then {rotated_after:?}"
    );

    // The kubelet crashes and comes back: it adopts the pod as it is.
    kubelet.kill();
    std::thread::sleep(Duration::from_secs(2));
    kubelet.spawn();
    let before = last_logged_line(&crictl, &logger).unwrap();
    eventually(
        Duration::from_secs(60),
        "the restarted kubelet to report the web pod Running",
        || running(&kubelet, "web"),
        || kubelet.log_tail(),
    );
    std::thread::sleep(Duration::from_secs(10));
    let ids_after: Vec<String> = crictl.pods().iter().map(|p| p["id"].to_string()).collect();
    assert_eq!(
        ids_before, ids_after,
        "pods recreated after a kubelet restart"
    );
    assert_eq!(
        running_containers(&crictl, &web_id),
        containers,
        "containers recreated after a kubelet restart"
    );
    let after = last_logged_line(&crictl, &logger).unwrap();
    assert!(
        after > before,
        "logs stopped after a kubelet restart: {before} then {after}"
    );
    // The new kubelet holds an event stream on the restarted daemon.
    let metrics = kubelet.get("/metrics").unwrap_or_default();
    let evented = metric(&metrics, "kubelet_evented_pleg_connection_success_count");
    assert!(
        evented >= 1.0,
        "no evented PLEG connection after the restarts"
    );
    let (code, _) = http_get(host_port, "/index.html").expect("host port after restarts");
    assert_eq!(code, 200);

    // Removing the manifest tears everything down.
    let pod_cgroup = format!("pod{pod_uid}");
    assert!(
        kubelet.cgroups().iter().any(|d| d.ends_with(&pod_cgroup)),
        "no pod cgroup {pod_cgroup} under {}",
        kubelet.cgroup_root
    );
    kubelet.remove_manifest("web");
    let removed = Instant::now();
    eventually(
        Duration::from_secs(20),
        "the web pod to be stopped",
        || {
            let stopped = crictl
                .pods()
                .iter()
                .all(|p| p["state"] == "SANDBOX_NOTREADY");
            (stopped && running_containers(&crictl, &web_id).is_empty()).then_some(())
        },
        || kubelet.log_tail(),
    );
    let stopped = removed.elapsed();
    // The kubelet removes stopped sandboxes in its garbage collection, once a minute.
    eventually(
        Duration::from_secs(100),
        "the web pod to be gone",
        || crictl.pods().is_empty().then_some(()),
        || kubelet.log_tail(),
    );
    eprintln!(
        "web pod stopped {stopped:?} and removed {:?} after its manifest",
        removed.elapsed()
    );
    let daemon = &node.daemon;
    assert!(
        criox_testkit::mounts_below(&daemon.dir)
            .iter()
            .all(|m| !m.to_string_lossy().contains(&web_id)),
        "{:?}",
        criox_testkit::mounts_below(&daemon.dir)
    );
    assert!(crictl.containers().is_empty());
    assert_eq!(node.net.veths(), 0, "veths left on {}", node.net.bridge);
    assert!(
        node.net.allocations().is_empty(),
        "{:?}",
        node.net.allocations()
    );
    eventually(
        Duration::from_secs(10),
        "no monitor left",
        || {
            criox_testkit::processes_naming(&daemon.state)
                .is_empty()
                .then_some(())
        },
        || format!("{:?}", criox_testkit::processes_naming(&daemon.state)),
    );
    eventually(
        Duration::from_secs(20),
        "the pod cgroup to be removed",
        || (!kubelet.cgroups().iter().any(|d| d.ends_with(&pod_cgroup))).then_some(()),
        || format!("{:?}", kubelet.cgroups()),
    );
    assert_eq!(
        http_get(host_port, "/index.html").map(|r| r.0),
        None,
        "the host port still answers"
    );
}

/// Rotated files of a container's log (`0.log.<timestamp>`, possibly compressed).
fn rotated_logs(dir: &std::path::Path) -> Vec<String> {
    criox_testkit::dir_entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("0.log."))
        .collect()
}

/// An RFC 3339 timestamp with nanoseconds, as CRI log records start with.
fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.contains(':')
}

/// The sum of the samples of `name` in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_kubelet_restarts_crashing_containers_and_acts_on_probes() {
    let node = node().await;
    let image = criox_testkit::busybox_image();
    let kubelet = Kubelet::builder(&node.daemon.socket).start();
    let crictl = kubelet.crictl.clone();

    kubelet.write_manifest(
        "crashy",
        &static_pod(
            "crashy",
            json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [busybox("crashy", &image, &["sh", "-c", "echo run; sleep 1; exit 3"])],
            }),
        ),
    );
    let mut hang = busybox("hang", &image, &["sleep", "3600"]);
    hang["livenessProbe"] = json!({
        "exec": {"command": ["sleep", "3601"]},
        "timeoutSeconds": 1, "periodSeconds": 2, "failureThreshold": 2, "initialDelaySeconds": 1,
    });
    let mut gate = busybox("gate", &image, &["sleep", "3600"]);
    gate["readinessProbe"] = json!({
        "exec": {"command": ["cat", "/tmp/open"]}, "periodSeconds": 1,
    });
    kubelet.write_manifest(
        "probed",
        &static_pod(
            "probed",
            json!({"terminationGracePeriodSeconds": 1, "containers": [hang, gate]}),
        ),
    );

    // Readiness: not ready until the file the probe reads exists.
    let gate_status = eventually(
        Duration::from_secs(60),
        "the gate container to run",
        || {
            kubelet
                .container_status("probed", "gate")
                .filter(|c| c["state"]["running"].is_object())
        },
        || kubelet.log_tail(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let gate_status = kubelet
        .container_status("probed", "gate")
        .unwrap_or(gate_status);
    assert_eq!(gate_status["ready"], false, "{gate_status}");
    assert_eq!(
        condition(&kubelet.pod("probed").unwrap(), "Ready").as_deref(),
        Some("False")
    );
    let gate_id = gate_status["containerID"]
        .as_str()
        .unwrap()
        .rsplit("://")
        .next()
        .unwrap()
        .to_string();
    crictl.ok(&["exec", "--sync", &gate_id, "touch", "/tmp/open"]);
    eventually(
        Duration::from_secs(20),
        "the gate container to turn ready",
        || {
            kubelet
                .container_status("probed", "gate")
                .filter(|c| c["ready"] == true)
        },
        || kubelet.log_tail(),
    );

    // Liveness: a probe that outlives its one-second timeout fails and restarts the
    // container; a timed-out probe leaves no process behind.
    let mut most_probes = 0;
    let watch_start = Instant::now();
    let hang_status = eventually(
        Duration::from_secs(90),
        "the hanging liveness probe to restart its container",
        || {
            most_probes = most_probes
                .max(processes_in_cgroup(&kubelet.cgroup_root, &["sleep", "3601"]).len());
            kubelet
                .container_status("probed", "hang")
                .filter(|c| c["restartCount"].as_u64().unwrap_or(0) >= 2)
        },
        || kubelet.log_tail(),
    );
    eprintln!(
        "liveness: hang restarted {} times in {:?}; at most {most_probes} probe process(es) at once",
        hang_status["restartCount"],
        watch_start.elapsed()
    );
    assert!(
        most_probes <= 1,
        "timed-out probes were left running: {most_probes} at once"
    );
    assert!(
        kubelet
            .log()
            .contains("failed liveness probe, will be restarted"),
        "{}",
        kubelet.log_tail()
    );

    // Restarts with back-off: attempts rise, and the pauses between them grow.
    let crashy = eventually(
        Duration::from_secs(120),
        "three restarts of the crashing container",
        || {
            kubelet
                .container_status("crashy", "crashy")
                .filter(|c| c["restartCount"].as_u64().unwrap_or(0) >= 3)
        },
        || kubelet.log_tail(),
    );
    let mut attempts: Vec<(u64, i64)> = crictl
        .containers()
        .iter()
        .filter(|c| c["metadata"]["name"] == "crashy")
        .map(|c| {
            (
                c["metadata"]["attempt"].as_u64().unwrap(),
                c["createdAt"].as_str().unwrap().parse::<i64>().unwrap(),
            )
        })
        .collect();
    attempts.sort();
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) as f64 / 1e9)
        .collect();
    eprintln!(
        "crashy: restartCount {}, attempts kept by the runtime {:?}, seconds between creations {gaps:?}",
        crashy["restartCount"],
        attempts.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(attempts.last().unwrap().0 >= 3, "{attempts:?}");
    assert_eq!(crashy["lastState"]["terminated"]["exitCode"], 3, "{crashy}");
    // Each pause is the container's second of life plus a back-off that doubles from 10 s.
    let last = *gaps.last().unwrap();
    assert!(last >= 15.0, "no back-off between restarts: {gaps:?}");
}

#[tokio::test]
async fn image_garbage_collection_removes_an_unused_image() {
    let node = node().await;
    let extra = criox_testkit::fixtures()["CRIOX_TEST_IMAGE_LAYERS"].clone();
    let crictl = Crictl::new(&node.daemon.socket);
    crictl.ok(&["pull", &extra]);
    let listed = |image: &str| {
        let repo = image.rsplit_once(':').unwrap().0;
        crictl.json(&["images", "-o", "json"])["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| {
                i["repoTags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t.as_str().unwrap_or("").starts_with(repo)))
            })
    };
    assert!(listed(&extra));
    // The image filesystem (as ImageFsInfo and its mount point report it) is always short
    // of 99% free: the eviction manager reclaims it every ten seconds by removing every
    // image no container uses. The pod is static, so critical, so never evicted itself.
    let image = criox_testkit::busybox_image();
    let builder = Kubelet::builder(&node.daemon.socket)
        .set(
            "evictionHard",
            json!({"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "99%"}),
        )
        .set("imageMinimumGCAge", json!("1ns"));
    let kubelet = builder.start_with_manifest(
        "user",
        &static_pod(
            "user",
            json!({"containers": [busybox("sleeper", &image, &["sleep", "3600"])]}),
        ),
    );
    eventually(
        Duration::from_secs(60),
        "the pod to run",
        || running(&kubelet, "user"),
        || kubelet.log_tail(),
    );
    let started = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the unused image to be collected",
        || (!listed(&extra)).then_some(()),
        || kubelet.log_tail(),
    );
    eprintln!(
        "image GC: unused image removed {:?} after the pod ran; {}",
        started.elapsed(),
        kubelet
            .log()
            .lines()
            .filter(|l| l.contains("Removing image to free bytes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The image in use stays, and so does its pod.
    assert!(listed(&image));
    assert!(running(&kubelet, "user").is_some());
}

/// The kubelet names a limit for every huge page size the kernel knows; a node whose
/// containers' cgroups have no hugetlb controller still creates, runs and updates them.
#[tokio::test]
async fn containers_with_the_kubelets_huge_page_limits_run_and_update() {
    use criox_proto::v1::{
        ContainerStatusRequest, HugepageLimit, LinuxContainerConfig, LinuxContainerResources,
        UpdateContainerResourcesRequest,
    };
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let mut rt = daemon.runtime().await;
    let mut pod_config = criox_testkit::pods::pod_config("huge", &criox_testkit::unique("uh"));
    criox_testkit::pods::on_host_network(
        &mut pod_config,
        criox_proto::v1::NamespaceMode::Container,
    );
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = criox_testkit::pods::run_pod(&mut rt, pod_config.clone()).await;
    let resources = LinuxContainerResources {
        cpu_shares: 2,
        hugepage_limits: ["2MB", "1GB"]
            .iter()
            .map(|size| HugepageLimit {
                page_size: size.to_string(),
                limit: 0,
            })
            .collect(),
        ..Default::default()
    };
    let mut config = criox_testkit::busybox_container("huge", &["sleep", "3600"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(resources.clone()),
        ..Default::default()
    });
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            cpu_shares: 4,
            ..resources
        }),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources with huge page limits");
    let status = rt
        .container_status(ContainerStatusRequest {
            container_id: id,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        status.state,
        criox_proto::v1::ContainerState::ContainerRunning as i32
    );
    assert_eq!(status.resources.unwrap().linux.unwrap().cpu_shares, 4);
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

/// `hostUsers: false`: the kubelet gives the pod a user namespace of its own with ids it
/// allocates (a multiple of 65536, never the host's first 65536) and sends those mappings
/// for every mount it makes. The container is root inside and that id outside, and sees
/// the kubelet's /etc/hosts (a file of host root's) as its root's through the ID-mapped
/// bind.
#[tokio::test]
async fn a_kubelet_runs_a_pod_without_host_users() {
    let node = node().await;
    let image = criox_testkit::busybox_image();
    let kubelet = Kubelet::builder(&node.daemon.socket).start_with_manifest(
        "nousers",
        &static_pod(
            "nousers",
            json!({
                "hostUsers": false,
                "containers": [busybox("app", &image, &["sleep", "3600"])],
            }),
        ),
    );
    eventually(
        Duration::from_secs(60),
        "the pod to run",
        || running(&kubelet, "nousers"),
        || kubelet.log_tail(),
    );
    let crictl = kubelet.crictl.clone();
    let pod = pod_id(&crictl, &format!("nousers-{}", kubelet.node)).expect("the pod's sandbox");
    let status = crictl.json(&["inspectp", &pod]);
    let uids = &status["status"]["linux"]["namespaces"]["options"]["usernsOptions"]["uids"][0];
    let host_id = uids["hostId"]
        .as_u64()
        .unwrap_or_else(|| panic!("{status}"));
    assert!(host_id >= 65536 && host_id.is_multiple_of(65536), "{uids}");
    let app = running_containers(&crictl, &pod)["app"].clone();
    let uid_map = crictl.ok(&["exec", &app, "cat", "/proc/self/uid_map"]);
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", &host_id.to_string(), "65536"], "{uid_map}");
    eprintln!("hostUsers: false: the container's /proc/self/uid_map is {uid_map:?}");
    let owners = crictl.ok(&["exec", &app, "stat", "-c", "%u", "/etc/hosts", "/bin/sh"]);
    assert_eq!(owners, "0\n0\n");
    let inspect = crictl.json(&["inspect", &app]);
    let pid = inspect["info"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{inspect}"));
    let uid = criox_testkit::proc_status_field(pid as i32, "Uid:");
    assert_eq!(
        uid.split_whitespace().next(),
        Some(host_id.to_string().as_str())
    );
}
