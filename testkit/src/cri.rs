//! CRI calls that many suites make the same way.

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::{Daemon, busybox_image};

/// A daemon that pulls from the fixture registry over plain HTTP and trusts every image,
/// with `image` pulled; `config` is added to its config file.
pub async fn daemon_with_image(image: &str, config: &str) -> Daemon {
    let daemon = Daemon::builder()
        .config(config)
        .trusting_fixture_registry()
        .start()
        .await;
    daemon
        .pull(image)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
    daemon
}

/// A daemon with busybox pulled ([`daemon_with_image`]) and Debian's runc as the `runc`
/// runtime handler beside the embedded runtime.
pub async fn daemon_with_busybox() -> Daemon {
    daemon_with_image(
        &busybox_image(),
        "[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n",
    )
    .await
}

/// A busybox container config running `command`, logging to `<name>.log` in the pod's log
/// directory.
pub fn busybox_container(name: &str, command: &[&str]) -> criox_proto::v1::ContainerConfig {
    image_container(&busybox_image(), name, command)
}

/// A config of a container of `image` running `command`, logging to `<name>.log` in the
/// pod's log directory.
pub fn image_container(
    image: &str,
    name: &str,
    command: &[&str],
) -> criox_proto::v1::ContainerConfig {
    use criox_proto::v1::*;
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// CreateContainer, expected to succeed; returns the container's id.
pub async fn create_container(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    config: criox_proto::v1::ContainerConfig,
) -> String {
    rt.create_container(criox_proto::v1::CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(config),
        sandbox_config: Some(pod_config.clone()),
    })
    .await
    .expect("CreateContainer")
    .into_inner()
    .container_id
}

/// StartContainer, expected to succeed.
pub async fn start_container(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    rt.start_container(criox_proto::v1::StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .expect("StartContainer");
}

/// CreateContainer and StartContainer, both expected to succeed.
pub async fn run_container(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    config: criox_proto::v1::ContainerConfig,
) -> String {
    let id = create_container(rt, pod, pod_config, config).await;
    start_container(rt, &id).await;
    id
}

/// The streaming URL of an Exec of `cmd` in container `id`: stdout always, stderr apart
/// unless a terminal merges them.
pub async fn exec_url(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    stdin: bool,
    tty: bool,
) -> String {
    rt.exec(criox_proto::v1::ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    })
    .await
    .expect("Exec")
    .into_inner()
    .url
}

/// ExecSync of `cmd` with a timeout of `timeout` seconds, expected to be answered.
pub async fn exec_sync(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> criox_proto::v1::ExecSyncResponse {
    rt.exec_sync(criox_proto::v1::ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .expect("ExecSync")
    .into_inner()
}

/// `sh -c script` through ExecSync, expected to exit 0 within 30 s; its stdout.
pub async fn sh_ok(rt: &mut RuntimeServiceClient<Channel>, id: &str, script: &str) -> String {
    let out = exec_sync(rt, id, &["sh", "-c", script], 30).await;
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ContainerStatus, expected to be answered.
pub async fn container_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> criox_proto::v1::ContainerStatus {
    rt.container_status(criox_proto::v1::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("a status")
}

/// The container's status once it has exited, waiting up to ten seconds.
pub async fn wait_exited(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> criox_proto::v1::ContainerStatus {
    for _ in 0..1000 {
        let s = container_status(rt, id).await;
        if s.state == criox_proto::v1::ContainerState::ContainerExited as i32 {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("container {id} did not exit");
}

/// StopContainer with `timeout` seconds of grace, expected to succeed.
pub async fn stop_container(rt: &mut RuntimeServiceClient<Channel>, id: &str, timeout: i64) {
    rt.stop_container(criox_proto::v1::StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    })
    .await
    .expect("StopContainer");
}

/// RemoveContainer, expected to succeed.
pub async fn remove_container(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    rt.remove_container(criox_proto::v1::RemoveContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .expect("RemoveContainer");
}

/// StopContainer without grace, then RemoveContainer, both expected to succeed.
pub async fn stop_and_remove_container(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    stop_container(rt, id, 0).await;
    remove_container(rt, id).await;
}

/// The runtime's Status, expected to be answered.
pub async fn runtime_status(
    rt: &mut RuntimeServiceClient<Channel>,
    verbose: bool,
) -> criox_proto::v1::StatusResponse {
    rt.status(criox_proto::v1::StatusRequest { verbose })
        .await
        .expect("Status")
        .into_inner()
}

/// ListPodSandbox without a filter, expected to be answered.
pub async fn list_pods(rt: &mut RuntimeServiceClient<Channel>) -> Vec<criox_proto::v1::PodSandbox> {
    list_pods_with(rt, None).await
}

/// ListPodSandbox with `filter`, expected to be answered.
pub async fn list_pods_where(
    rt: &mut RuntimeServiceClient<Channel>,
    filter: criox_proto::v1::PodSandboxFilter,
) -> Vec<criox_proto::v1::PodSandbox> {
    list_pods_with(rt, Some(filter)).await
}

async fn list_pods_with(
    rt: &mut RuntimeServiceClient<Channel>,
    filter: Option<criox_proto::v1::PodSandboxFilter>,
) -> Vec<criox_proto::v1::PodSandbox> {
    let request = criox_proto::v1::ListPodSandboxRequest { filter };
    let listed = rt.list_pod_sandbox(request).await;
    listed.expect("ListPodSandbox").into_inner().items
}

/// ListContainers without a filter, expected to be answered.
pub async fn list_containers(
    rt: &mut RuntimeServiceClient<Channel>,
) -> Vec<criox_proto::v1::Container> {
    list_containers_with(rt, None).await
}

/// ListContainers with `filter`, expected to be answered.
pub async fn list_containers_where(
    rt: &mut RuntimeServiceClient<Channel>,
    filter: criox_proto::v1::ContainerFilter,
) -> Vec<criox_proto::v1::Container> {
    list_containers_with(rt, Some(filter)).await
}

async fn list_containers_with(
    rt: &mut RuntimeServiceClient<Channel>,
    filter: Option<criox_proto::v1::ContainerFilter>,
) -> Vec<criox_proto::v1::Container> {
    let request = criox_proto::v1::ListContainersRequest { filter };
    let listed = rt.list_containers(request).await;
    listed.expect("ListContainers").into_inner().containers
}

/// ExecSync of `cmd` (10 s timeout), expected to exit 0; its stdout.
pub async fn exec_ok(rt: &mut RuntimeServiceClient<Channel>, id: &str, cmd: &[&str]) -> String {
    let out = exec_sync(rt, id, cmd, 10).await;
    assert_eq!(
        out.exit_code,
        0,
        "{cmd:?} in {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `info` document of a verbose ContainerStatus, parsed.
pub async fn container_info(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> serde_json::Value {
    let info = rt
        .container_status(criox_proto::v1::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .info;
    serde_json::from_str(&info["info"])
        .unwrap_or_else(|e| panic!("verbose info of container {id}: {e}: {info:?}"))
}

/// A busybox shell running `script`, without a log file.
pub fn busybox_shell(name: &str, script: &str) -> criox_proto::v1::ContainerConfig {
    criox_proto::v1::ContainerConfig {
        log_path: String::new(),
        ..busybox_container(name, &["sh", "-c", script])
    }
}

/// A [`busybox_shell`] running `script` in pod `pod`, created and started; its id.
pub async fn run_shell(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    name: &str,
    script: &str,
) -> String {
    run_container(rt, pod, pod_config, busybox_shell(name, script)).await
}

/// CreateContainer, expected to be refused; the error.
pub async fn create_container_err(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &criox_proto::v1::PodSandboxConfig,
    config: criox_proto::v1::ContainerConfig,
) -> tonic::Status {
    match rt
        .create_container(criox_proto::v1::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
    {
        Ok(created) => panic!(
            "CreateContainer in pod {pod} made {}, expected a refusal",
            created.into_inner().container_id
        ),
        Err(err) => err,
    }
}

/// Asserts that `err` is InvalidArgument and that its message names `field`.
pub fn assert_invalid(err: &tonic::Status, field: &str) {
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
    assert!(err.message().contains(field), "{field}: {}", err.message());
}

/// ContainerStats, expected to be answered.
pub async fn container_stats(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> criox_proto::v1::ContainerStats {
    rt.container_stats(criox_proto::v1::ContainerStatsRequest {
        container_id: id.to_string(),
    })
    .await
    .expect("ContainerStats")
    .into_inner()
    .stats
    .unwrap_or_else(|| panic!("no stats for container {id}"))
}

/// Linux settings of a container whose memory is limited to `bytes`.
pub fn memory_limit(bytes: i64) -> Option<criox_proto::v1::LinuxContainerConfig> {
    Some(criox_proto::v1::LinuxContainerConfig {
        resources: Some(criox_proto::v1::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            ..Default::default()
        }),
        ..Default::default()
    })
}
