//! What the pod tests share: a private CNI network per test (own bridge, subnet, IPAM
//! directory, network name), pod configs, and looking inside a pod's pinned namespace.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use criox_proto::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest, runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::Channel;

use crate::unique;

/// A bridge network used by one test only; the bridge is deleted on drop.
pub struct TestNetwork {
    pub name: String,
    pub bridge: String,
    /// The first three octets of the /24, e.g. "10.123.4".
    pub prefix: String,
    pub ipam_dir: PathBuf,
}

impl TestNetwork {
    pub fn new(ipam_parent: &Path) -> TestNetwork {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = unique("");
        let pid = std::process::id();
        TestNetwork {
            name: format!("crxnet{id}"),
            bridge: format!("crx{id}"),
            prefix: format!("10.{}.{}", 100 + pid % 100, (pid / 100 + n * 37) % 250),
            ipam_dir: ipam_parent.join(format!("ipam-{id}")),
        }
    }

    pub fn conflist(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.ipam_dir,
                        "ranges": [[{"subnet": format!("{}.0/24", self.prefix)}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
        .to_string()
    }

    pub fn install(&self, cni_dir: &Path) {
        std::fs::write(cni_dir.join("10-test.conflist"), self.conflist()).unwrap();
    }

    /// Installs the network with a second, IPv6 range: the /64 of `v6` (e.g. "fd00:12::").
    pub fn install_dual_stack(&self, cni_dir: &Path, v6: &str) {
        let mut list: serde_json::Value = serde_json::from_str(&self.conflist()).unwrap();
        list["plugins"][0]["ipam"]["ranges"]
            .as_array_mut()
            .expect("the IPv4 ranges")
            .push(serde_json::json!([{ "subnet": format!("{v6}/64") }]));
        std::fs::write(cni_dir.join("10-test.conflist"), list.to_string()).unwrap();
    }

    /// Addresses host-local holds for this network.
    pub fn allocations(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir.join(&self.name))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10.") || n.starts_with("fd"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Host-side veths attached to this network's bridge.
    pub fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// iptables rules that name this network (masquerade chains and port mappings).
    pub fn iptables_rules(&self) -> usize {
        let out = Command::new("iptables-save").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.name) || l.contains(&format!("{}.", self.prefix)))
            .count()
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Masquerade rules of pods a failed test did not remove.
        let rules = Command::new("iptables")
            .args(["-t", "nat", "-S", "POSTROUTING"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let marker = format!("name: \\\"{}\\\"", self.name);
        for rule in rules.lines().filter(|l| l.contains(&marker)) {
            let delete = rule.replacen("-A ", "-D ", 1);
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("iptables -t nat {delete}"))
                .output();
            if let Some(chain) = rule.split(" -j ").nth(1) {
                let chain = chain.trim();
                let _ = Command::new("iptables")
                    .args(["-t", "nat", "-F", chain])
                    .output();
                let _ = Command::new("iptables")
                    .args(["-t", "nat", "-X", chain])
                    .output();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        // host-local's leases; many tests keep them under the shared /tmp.
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}

pub fn pod_config(name: &str, uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: "test".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        ..PodSandboxConfig::default()
    }
}

/// Puts the pod on the node's network, with the given PID namespace mode.
pub fn on_host_network(config: &mut PodSandboxConfig, pid: NamespaceMode) {
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                pid: pid as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// StopPodSandbox then RemovePodSandbox, as the kubelet ends a pod.
pub async fn stop_and_remove_pod(rt: &mut RuntimeServiceClient<Channel>, pod: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.to_string(),
    })
    .await
    .expect("RemovePodSandbox");
}

/// A pod on the node's network, each container in its own PID namespace, logging below
/// `log_dir`.
pub fn host_network_pod(name: &str, log_dir: &Path) -> PodSandboxConfig {
    let mut config = pod_config(name, &unique("uid"));
    config.log_directory = log_dir.display().to_string();
    on_host_network(&mut config, NamespaceMode::Container);
    config
}

/// RunPodSandbox on the default runtime handler.
pub async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, config: PodSandboxConfig) -> String {
    run_pod_on(rt, config, "").await
}

/// RunPodSandbox on runtime handler `handler` ("" for the default).
pub async fn run_pod_on(
    rt: &mut RuntimeServiceClient<Channel>,
    config: PodSandboxConfig,
    handler: &str,
) -> String {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: handler.to_string(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

/// PodSandboxStatus with the verbose `info` document parsed.
pub async fn status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> (criox_proto::v1::PodSandboxStatus, serde_json::Value) {
    let resp = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    (resp.status.unwrap(), info)
}

/// PodSandboxStatus without the verbose info, expected to be answered.
pub async fn pod_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> criox_proto::v1::PodSandboxStatus {
    rt.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
    .status
    .expect("a pod status")
}

/// The pod's IP address as PodSandboxStatus reports it.
pub async fn pod_ip(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> String {
    pod_status(rt, id)
        .await
        .network
        .unwrap_or_else(|| panic!("pod {id} has no network status"))
        .ip
}

/// A private bridge network ([`TestNetwork`]) installed as the daemon's only CNI network,
/// and the guard that ends the pods' infra processes and cgroups. Both clean up on drop,
/// the network first.
pub fn private_network(daemon: &crate::Daemon) -> (PodLeftovers, TestNetwork) {
    let leftovers = PodLeftovers::new(&daemon.root);
    let net = TestNetwork::new(&daemon.dir);
    net.install(&daemon.cni_dir);
    (leftovers, net)
}

/// [`private_network`] with a second, IPv6 range: the /64 of `v6` (e.g. "fd00:12::").
pub fn private_dual_stack_network(daemon: &crate::Daemon, v6: &str) -> (PodLeftovers, TestNetwork) {
    let leftovers = PodLeftovers::new(&daemon.root);
    let net = TestNetwork::new(&daemon.dir);
    net.install_dual_stack(&daemon.cni_dir, v6);
    (leftovers, net)
}

/// How many pod cgroups there are below the cgroup `root` (an absolute cgroup path),
/// summed over every hierarchy.
pub fn pod_cgroups(root: &str) -> usize {
    crate::cgroup_dirs(root)
        .iter()
        .map(|d| {
            crate::dir_entries(d)
                .iter()
                .filter(|e| e.starts_with("pod"))
                .count()
        })
        .sum()
}

/// The pod's IP address and the path of its pinned network namespace.
pub async fn ip_and_netns(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> (String, PathBuf) {
    let (st, info) = status(rt, id).await;
    let ip = st
        .network
        .unwrap_or_else(|| panic!("pod {id} has no network status"))
        .ip;
    let netns = info["namespaces"]["network"]
        .as_str()
        .unwrap_or_else(|| panic!("pod {id} has no network namespace: {info}"));
    (ip, PathBuf::from(netns))
}

/// The host's iptables rules, as `iptables-save` prints them.
pub fn iptables_save() -> String {
    String::from_utf8(crate::output_ok(&mut Command::new("iptables-save"))).unwrap()
}

/// Runs `f` on a thread that has joined the network namespace pinned at `netns`.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(netns).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// `ip -o -4 addr show eth0` inside the pinned namespace, via nsenter.
pub fn eth0_addresses(netns: &Path) -> String {
    let out = crate::output_ok(
        Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "-o", "-4", "addr", "show", "eth0"]),
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Three pings from the host to a pod at `ip` (busybox's ping), all expected to be
/// answered.
pub fn ping_from_host(ip: &str) {
    let ping = Command::new(crate::busybox_rootfs().join("bin/busybox"))
        .args(["ping", "-c", "3", "-W", "2", ip])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping {ip}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// On drop (also when a test fails), ends the infra processes and removes the cgroups of
/// pods the test left in the daemon's store: those outlive the daemon by design.
pub struct PodLeftovers {
    records: PathBuf,
}

impl PodLeftovers {
    pub fn new(root: &Path) -> PodLeftovers {
        PodLeftovers {
            records: root.join("pods"),
        }
    }
}

impl Drop for PodLeftovers {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.records) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Ok(pod) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Some(pid) = pod["infra_pid"].as_i64() {
                let cmdline =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.contains("pod-infra") {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            if let Some(dirs) = pod["cgroup"]["created"].as_array() {
                for dir in dirs.iter().rev().filter_map(|d| d.as_str()) {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TestNetwork;

    #[test]
    fn a_dropped_network_leaves_no_ipam_directory() {
        let parent = tempfile::tempdir().unwrap();
        let net = TestNetwork::new(parent.path());
        std::fs::create_dir_all(net.ipam_dir.join(&net.name)).unwrap();
        std::fs::write(net.ipam_dir.join(&net.name).join("10.1.2.3"), "id").unwrap();
        let dir = net.ipam_dir.clone();
        drop(net);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
