//! The infra process of a pod whose containers share one PID namespace is that namespace's
//! PID 1, visible to every container of the pod. It holds nothing a container could reach
//! through /proc/1 (host files, capabilities, host paths), and when it dies the pod is no
//! longer ready, as with other runtimes when their pause process exits.

use std::time::Duration;

use criox_proto::v1::*;
use criox_testkit::node::{Backend, Node, cap_eff, caps, secured};

/// A pod on the node's network sharing one PID namespace, and a container in it that may
/// ptrace (and so open /proc/1/root and /proc/1/fd of processes it can see).
async fn shared_pid_pod(node: &mut Node, name: &str) -> (String, PodSandboxConfig, String) {
    let mut config = node.pod_config(name);
    criox_testkit::pods::on_host_network(&mut config, NamespaceMode::Pod);
    config.log_directory = node.logs.display().to_string();
    let pod = node.run_pod(&config).await;
    let tracer = secured(
        "tracer",
        LinuxContainerSecurityContext {
            capabilities: caps(&["SYS_PTRACE"], &[]),
            ..Default::default()
        },
    );
    let container = node.run(&pod, &config, tracer).await;
    (pod, config, container)
}

async fn pod_status(node: &mut Node, pod: &str) -> PodSandboxStatusResponse {
    node.rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_string(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
}

fn infra_pid(status: &PodSandboxStatusResponse) -> i32 {
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    info["infraPid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no infraPid in {info}")) as i32
}

/// Waits up to ten seconds for the pod to report NOTREADY.
async fn wait_not_ready(node: &mut Node, pod: &str) {
    for _ in 0..200 {
        let state = pod_status(node, pod).await.status.unwrap().state;
        if state == PodSandboxState::SandboxNotready as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {pod} still ready after its infra process died");
}

/// CreateContainer in a pod whose infra process is gone: refused, naming the pod.
async fn assert_refuses_containers(node: &mut Node, pod: &str, config: &PodSandboxConfig) {
    let err = node
        .create(pod, config, criox_testkit::node::sleeper("late"))
        .await
        .expect_err("CreateContainer in a pod whose infra process died");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(pod), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid1_of_a_shared_pid_pod_holds_nothing_of_the_host() {
    let mut node = Node::start(Backend::Embedded).await;
    // A host file the infra process's root would expose if it were the host's.
    let secret = node.daemon.dir.join(criox_testkit::unique("host-secret"));
    std::fs::write(&secret, "host data\n").unwrap();
    let (pod, _, c) = shared_pid_pod(&mut node, "pid1-empty").await;

    let root = node.sh(&c, "ls -A /proc/1/root/").await;
    println!("ls -A /proc/1/root/ -> {root:?}");
    assert!(
        root.stdout.trim().is_empty(),
        "PID 1's root shows files: {root:?}"
    );
    for path in [
        "/proc/1/root/etc/hostname".to_string(),
        format!("/proc/1/root{}", secret.display()),
    ] {
        let read = node.exec(&c, &["cat", &path]).await;
        println!("cat {path} -> {read:?}");
        assert!(
            read.code != 0 && !read.stdout.contains("host data"),
            "{path} readable: {read:?}"
        );
    }
    let fds = node.sh(&c, "ls -A /proc/1/fd/").await;
    assert!(fds.stdout.trim().is_empty(), "PID 1 holds files: {fds:?}");

    let status = node.exec(&c, &["cat", "/proc/1/status"]).await;
    let status = status.ok().to_string();
    println!("/proc/1/status:\n{status}");
    assert_eq!(cap_eff(&status), 0, "{status}");
    assert!(status.starts_with("Name:\tpod-infra\n"), "{status}");
    for (field, want) in [
        ("CapPrm:", "0000000000000000"),
        ("CapInh:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
    ] {
        let line = status.lines().find(|l| l.starts_with(field));
        assert_eq!(
            line.map(|l| l[field.len()..].trim()),
            Some(want),
            "{field} in {status}"
        );
    }
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(ids, ["65534"; 4], "{field} in {status}");
    }
    let groups = status.lines().find_map(|l| l.strip_prefix("Groups:"));
    assert_eq!(groups.map(str::trim), Some(""), "{status}");

    let cmdline = node.exec(&c, &["cat", "/proc/1/cmdline"]).await;
    let cmdline = cmdline.ok().replace('\0', " ");
    println!("/proc/1/cmdline -> {cmdline:?}");
    assert!(
        !cmdline.contains('/'),
        "host path in PID 1's argv: {cmdline}"
    );
    let environ = node.exec(&c, &["cat", "/proc/1/environ"]).await;
    assert!(
        environ.stdout.is_empty(),
        "PID 1's environment: {environ:?}"
    );

    // Seen from the host: not dumpable, and in the pod's cgroup.
    let pid = infra_pid(&pod_status(&mut node, &pod).await);
    let host_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(host_status.contains("\nNoNewPrivs:\t1"), "{host_status}");
    // A process that is not dumpable has its /proc files owned by root, whatever its uid.
    let proc_owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}/fd")).unwrap().uid()
    };
    assert_eq!(
        proc_owner, 0,
        "the infra process is dumpable: {host_status}"
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    println!("infra cgroups:\n{cgroups}");
    let pod_cgroup = format!("/criox-pods/{pod}/");
    assert!(
        cgroups
            .lines()
            .any(|l| l.contains(":memory:") && l.contains(&pod_cgroup)
                || l.starts_with("0::") && l.contains(&pod_cgroup)),
        "infra not in the pod's cgroup: {cgroups}"
    );
    node.end_all_and_check_clean().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()),
        "infra process {pid} outlived its pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_is_not_ready_once_a_container_terminates_pid1() {
    let mut node = Node::start(Backend::Embedded).await;
    let (pod, config, c) = shared_pid_pod(&mut node, "pid1-term").await;
    let pid = infra_pid(&pod_status(&mut node, &pod).await);
    // The exec'd kill dies with the namespace it ends, so its answer may be an error.
    let kill = node
        .rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["kill".into(), "-TERM".into(), "1".into()],
            timeout: 20,
        })
        .await;
    println!("kill -TERM 1 -> {kill:?}");
    wait_not_ready(&mut node, &pod).await;
    let listed = criox_testkit::list_pods(&mut node.rt).await;
    let row = listed.iter().find(|p| p.id == pod).expect("pod listed");
    assert_eq!(row.state, PodSandboxState::SandboxNotready as i32);
    assert_refuses_containers(&mut node, &pod, &config).await;
    node.end_all_and_check_clean().await;
    assert!(
        std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty()),
        "infra process {pid} still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_is_not_ready_once_its_infra_process_is_killed() {
    let mut node = Node::start(Backend::Embedded).await;
    let (pod, config, _) = shared_pid_pod(&mut node, "pid1-kill").await;
    let pid = infra_pid(&pod_status(&mut node, &pod).await);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_not_ready(&mut node, &pod).await;
    assert_refuses_containers(&mut node, &pod, &config).await;
    node.end_all_and_check_clean().await;
}
