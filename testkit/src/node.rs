//! What the container security and resource suites share: a daemon with busybox pulled
//! and Debian's runc configured as the `runc` runtime handler, pods that run on one backend
//! or the other, ExecSync with its output as text, and the cleanup of whatever a failing
//! test leaves behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use tonic::transport::Channel;

use crate::pods::{PodLeftovers, host_network_pod};
use crate::{Daemon, busybox_container, busybox_image, connect, dir_entries, mounts_below};

pub type Rt = RuntimeServiceClient<Channel>;

/// Which runtime runs the pod's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// libcontainer inside the criox binary: the default handler.
    Embedded,
    /// Debian's runc, through the `runc` handler of the daemon's config.
    Runc,
}

impl Backend {
    pub fn handler(self) -> &'static str {
        match self {
            Backend::Embedded => "",
            Backend::Runc => "runc",
        }
    }
}

/// What one ExecSync returned, as text.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        &self.stdout
    }

    #[track_caller]
    pub fn failed_with(&self, message: &str) {
        assert_ne!(self.code, 0, "command succeeded: {self:?}");
        assert!(
            self.stderr.contains(message),
            "expected {message:?} in stderr: {self:?}"
        );
    }
}

/// A daemon for one test, whose pods run on `backend`. On drop (also when the test
/// fails) the pods still in the daemon are stopped and removed before the daemon goes.
pub struct Node {
    pub backend: Backend,
    pub rt: Rt,
    /// The pods' log directory.
    pub logs: PathBuf,
    leftovers: Option<PodLeftovers>,
    pub daemon: Daemon,
}

impl Node {
    pub async fn start(backend: Backend) -> Node {
        let daemon = crate::daemon_with_image(
            &busybox_image(),
            "[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n",
        )
        .await;
        let rt = daemon.runtime().await;
        Node {
            backend,
            rt,
            logs: daemon.dir.join("logs"),
            leftovers: Some(PodLeftovers::new(&daemon.root)),
            daemon,
        }
    }

    /// A pod config on the node's network with its own PID namespace per container.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        host_network_pod(name, &self.logs)
    }

    pub async fn run_pod(&mut self, config: &PodSandboxConfig) -> String {
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: self.backend.handler().to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox on {:?}: {e}", self.backend))
            .into_inner()
            .pod_sandbox_id
    }

    /// A pod from `pod_config`, run.
    pub async fn pod(&mut self, name: &str) -> (String, PodSandboxConfig) {
        let config = self.pod_config(name);
        (self.run_pod(&config).await, config)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.to_string(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .map(|_| ())
    }

    /// CreateContainer and StartContainer, both expected to succeed.
    pub async fn run(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let id = self
            .create(pod, pod_config, config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name:?} on {:?}: {e}", self.backend));
        self.start_container(&id)
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name:?} on {:?}: {e}", self.backend));
        id
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str]) -> Out {
        let resp = self
            .rt
            .exec_sync(ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} on {:?}: {e}", self.backend))
            .into_inner();
        Out {
            code: resp.exit_code,
            stdout: String::from_utf8_lossy(&resp.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&resp.stderr).into_owned(),
        }
    }

    /// `sh -c script` through ExecSync.
    pub async fn sh(&mut self, id: &str, script: &str) -> Out {
        self.exec(id, &["sh", "-c", script]).await
    }

    pub async fn status(&mut self, id: &str) -> ContainerStatus {
        crate::container_status(&mut self.rt, id).await
    }

    /// The verbose ContainerStatus `info` document.
    pub async fn info(&mut self, id: &str) -> serde_json::Value {
        let resp = self
            .rt
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: true,
            })
            .await
            .expect("ContainerStatus")
            .into_inner();
        serde_json::from_str(&resp.info["info"]).unwrap()
    }

    pub async fn wait_exited(&mut self, id: &str) -> ContainerStatus {
        crate::wait_exited(&mut self.rt, id).await
    }

    pub async fn containers(&mut self) -> Vec<Container> {
        self.rt
            .list_containers(ListContainersRequest { filter: None })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
    }

    /// StopPodSandbox and RemovePodSandbox.
    pub async fn end_pod(&mut self, pod: &str) {
        crate::pods::stop_and_remove_pod(&mut self.rt, pod).await;
    }

    /// Ends every pod, then checks the daemon holds no container, bundle or mount.
    pub async fn end_all_and_check_clean(&mut self) {
        for pod in pod_ids(&mut self.rt).await {
            self.end_pod(&pod).await;
        }
        self.assert_clean().await;
    }

    /// No container listed, no bundle and no mount below the daemon's directories.
    pub async fn assert_clean(&mut self) {
        let left = self.containers().await;
        assert!(left.is_empty(), "containers left: {left:?}");
        let bundles = dir_entries(&self.daemon.root.join("containers"));
        assert!(bundles.is_empty(), "bundles left: {bundles:?}");
        let mounts = mounts_below(&self.daemon.dir);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }
}

async fn pod_ids(rt: &mut Rt) -> Vec<String> {
    rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
}

impl Drop for Node {
    fn drop(&mut self) {
        // Containers and pods outlive the daemon by design: end them through the CRI
        // while it still runs. Drop cannot await, so a thread runs its own runtime.
        let socket = self.daemon.socket.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(channel) = connect(&socket).await else {
                    return;
                };
                let mut rt = RuntimeServiceClient::new(channel);
                for pod in pod_ids(&mut rt).await {
                    let _ = rt
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: pod.clone(),
                        })
                        .await;
                    let _ = rt
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: pod,
                        })
                        .await;
                }
            })
        })
        .join();
        drop(self.leftovers.take());
    }
}

/// A busybox container config logging to `<name>.log`.
pub fn container(name: &str, command: &[&str]) -> ContainerConfig {
    busybox_container(name, command)
}

/// A container that waits to be exec'ed into.
pub fn sleeper(name: &str) -> ContainerConfig {
    container(name, &["sleep", "3600"])
}

/// A sleeper with `security` as its security context.
pub fn secured(name: &str, security: LinuxContainerSecurityContext) -> ContainerConfig {
    let mut config = sleeper(name);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(security),
        ..Default::default()
    });
    config
}

pub fn caps(add: &[&str], drop: &[&str]) -> Option<Capability> {
    Some(Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

pub fn seccomp(
    kind: security_profile::ProfileType,
    localhost_ref: &str,
) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost_ref.to_string(),
    })
}

/// The `CapEff` mask of a `/proc/<pid>/status` text.
pub fn cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {status:?}"))
}

/// This process's bounding set: what "every capability" means on this node.
pub fn own_bounding_set() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap()
}

/// Reads a file until `pred` holds for its text, for up to ten seconds.
pub async fn wait_for_file(path: &Path, pred: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..400 {
        text = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never matched; last seen: {text:?}", path.display());
}
