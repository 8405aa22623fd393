//! A real kubelet in standalone mode (static pods from a manifest directory, no API
//! server) driving a test daemon, with crictl beside it. Everything the kubelet makes —
//! its process, the pods it asked for, its cgroups under a private cgroup root, mounts
//! under its root directory, log symlinks — goes when the guard is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, go_client, unique};

/// crictl pointed at one runtime socket.
#[derive(Clone)]
pub struct Crictl {
    bin: PathBuf,
    socket: PathBuf,
}

impl Crictl {
    pub fn new(socket: &Path) -> Crictl {
        Crictl {
            bin: go_client("crictl"),
            socket: socket.to_path_buf(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--runtime-endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--image-endpoint")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--timeout", "20s"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run crictl")
    }

    /// Runs crictl and returns its stdout, panicking with its stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "crictl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("crictl {args:?}: {e}: {text}"))
    }

    /// `crictl pods -o json`'s items.
    pub fn pods(&self) -> Vec<serde_json::Value> {
        self.json(&["pods", "-o", "json"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `crictl ps -a -o json`'s containers.
    pub fn containers(&self) -> Vec<serde_json::Value> {
        self.json(&["ps", "-a", "-o", "json"])["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops and removes every pod the runtime holds.
    pub fn remove_all_pods(&self) {
        let out = self.run(&["pods", "-q"]);
        for pod in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.run(&["stopp", pod]);
            let _ = self.run(&["rmp", "-f", pod]);
        }
    }
}

/// Kernel settings the kubelet rewrites at start (vm.overcommit_memory, kernel.panic, …);
/// the values found before the first kubelet of this process started, put back on drop.
fn kernel_tunables() -> &'static Vec<(PathBuf, String)> {
    static SAVED: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    SAVED.get_or_init(|| {
        [
            "vm/overcommit_memory",
            "vm/panic_on_oom",
            "kernel/panic",
            "kernel/panic_on_oops",
            "kernel/keys/root_maxkeys",
            "kernel/keys/root_maxbytes",
        ]
        .iter()
        .filter_map(|k| {
            let path = Path::new("/proc/sys").join(k);
            std::fs::read_to_string(&path).ok().map(|v| (path, v))
        })
        .collect()
    })
}

pub struct KubeletBuilder {
    socket: PathBuf,
    config: serde_json::Map<String, serde_json::Value>,
}

impl KubeletBuilder {
    /// Sets (or replaces) one top-level key of the KubeletConfiguration.
    pub fn set(mut self, key: &str, value: serde_json::Value) -> Self {
        self.config.insert(key.to_string(), value);
        self
    }

    pub fn start(self) -> Kubelet {
        self.start_with(&[])
    }

    /// Starts with one static pod already in the manifest directory.
    pub fn start_with_manifest(self, name: &str, pod: &serde_json::Value) -> Kubelet {
        self.start_with(&[(name, pod)])
    }

    fn start_with(self, manifests: &[(&str, &serde_json::Value)]) -> Kubelet {
        kernel_tunables();
        // Every kubelet serves its device-plugin registry on the same host path
        // (/var/lib/kubelet/device-plugins/kubelet.sock, not below --root-dir): two at once
        // race for it and the loser never starts its container manager.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let id = unique("");
        let dir = tempfile::Builder::new()
            .prefix("crxkl")
            .tempdir()
            .unwrap()
            .keep();
        let kubelet = Kubelet {
            _turn: turn,
            bin: go_client("kubelet"),
            crictl: Crictl::new(&self.socket),
            root_dir: dir.join("root"),
            manifests: dir.join("manifests"),
            pod_logs: dir.join("pod-logs"),
            cgroup_root: format!("/crxkl{id}"),
            node: format!("crxnode{id}"),
            port: free_port(),
            healthz_port: free_port(),
            read_only_port: free_port(),
            config_path: dir.join("kubelet.json"),
            dir,
            child: None,
        };
        for d in [&kubelet.root_dir, &kubelet.manifests, &kubelet.pod_logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The kubelet wants its cgroup root to exist in every hierarchy it uses.
        for hierarchy in cgroup_hierarchies() {
            let _ =
                std::fs::create_dir(hierarchy.join(kubelet.cgroup_root.trim_start_matches('/')));
        }
        let endpoint = format!("unix://{}", self.socket.display());
        let mut config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": kubelet.port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": kubelet.healthz_port,
            "readOnlyPort": kubelet.read_only_port,
            "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
            "authorization": {"mode": "AlwaysAllow"},
            "staticPodPath": kubelet.manifests,
            "fileCheckFrequency": "1s",
            "syncFrequency": "10s",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": kubelet.cgroup_root,
            // This machine mounts cgroup v1 controllers with a cgroup2 mount beside them.
            "failCgroupV1": false,
            "failSwapOn": false,
            // No CAP_SYS_RESOURCE here: the kubelet cannot lower its own oom_score_adj.
            "oomScoreAdj": 0,
            "podLogsDir": kubelet.pod_logs,
            "volumePluginDir": kubelet.dir.join("volume-plugins"),
            "containerRuntimeEndpoint": endpoint,
            "imageServiceEndpoint": endpoint,
            "featureGates": {"PodAndContainerStatsFromCRI": true, "EventedPLEG": true},
            "containerLogMaxSize": "1Ki",
            "containerLogMaxFiles": 2,
            "containerLogMonitorInterval": "3s",
            // Disk pressure from other work on this machine must not evict test pods.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "resolvConf": "",
        });
        let object = config.as_object_mut().unwrap();
        for (k, v) in self.config {
            object.insert(k, v);
        }
        std::fs::write(
            &kubelet.config_path,
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        for (name, pod) in manifests {
            kubelet.write_manifest(name, pod);
        }
        let mut kubelet = kubelet;
        kubelet.spawn();
        kubelet
    }
}

pub struct Kubelet {
    bin: PathBuf,
    pub crictl: Crictl,
    pub dir: PathBuf,
    pub root_dir: PathBuf,
    pub manifests: PathBuf,
    pub pod_logs: PathBuf,
    /// The cgroup (cgroupfs name) that holds everything the kubelet makes.
    pub cgroup_root: String,
    pub node: String,
    pub port: u16,
    pub healthz_port: u16,
    pub read_only_port: u16,
    config_path: PathBuf,
    child: Option<Child>,
    /// Held for the kubelet's life; see `start_with`. Dropped after the process is gone
    /// (fields drop after `Drop::drop` has run).
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Kubelet {
    /// A kubelet on the runtime at `socket` (criox or another CRI runtime).
    pub fn builder(socket: &Path) -> KubeletBuilder {
        KubeletBuilder {
            socket: socket.to_path_buf(),
            config: serde_json::Map::new(),
        }
    }

    /// Starts the kubelet process (again) on the same root directory and waits until it
    /// reports healthy.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "kubelet already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--root-dir")
            .arg(&self.root_dir)
            .arg("--cert-dir")
            .arg(self.dir.join("pki"))
            .arg("--hostname-override")
            .arg(&self.node)
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn kubelet");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "kubelet exited during start with {status}:\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.healthz_port, "/healthz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kubelet did not become healthy:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("kubelet running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kubelet.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last 150 lines of the kubelet's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    }

    /// GET on the read-only port; the body of a 200 answer.
    pub fn get(&self, path: &str) -> Option<String> {
        match http_get(self.read_only_port, path) {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    pub fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get(path)?).ok()
    }

    /// The static pod named `name` (without the node suffix) from the kubelet's `/pods`.
    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        let full = format!("{name}-{}", self.node);
        self.get_json("/pods")?["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == full.as_str())
            .cloned()
    }

    /// The status of container `container` of static pod `pod`, as the kubelet reports it.
    pub fn container_status(&self, pod: &str, container: &str) -> Option<serde_json::Value> {
        self.pod(pod)?["status"]["containerStatuses"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == container)
            .cloned()
    }

    pub fn write_manifest(&self, name: &str, pod: &serde_json::Value) {
        let tmp = self.dir.join(format!(".{name}.json"));
        std::fs::write(&tmp, serde_json::to_string_pretty(pod).unwrap()).unwrap();
        std::fs::rename(tmp, self.manifests.join(format!("{name}.json"))).unwrap();
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(format!("{name}.json"))).unwrap();
    }

    /// Cgroup directories below the kubelet's cgroup root in every hierarchy, deepest
    /// first.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            collect_dirs(
                &hierarchy.join(self.cgroup_root.trim_start_matches('/')),
                &mut dirs,
            );
        }
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        dirs
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.kill();
        // The runtime outlives this guard: end what the kubelet asked of it.
        self.crictl.remove_all_pods();
        crate::unmount_below(&self.dir);
        for dir in self.cgroups() {
            let _ = std::fs::remove_dir(&dir);
        }
        // Links the kubelet keeps in /var/log/containers for each container's log.
        if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
            for entry in entries.flatten() {
                if std::fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(&self.pod_logs)) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        for (path, value) in kernel_tunables() {
            let _ = std::fs::write(path, value);
        }
        if !kubelet_running() {
            remove_kubelet_chains();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kubelet log kept in {}", self.log_path().display());
        }
    }
}

/// True while any kubelet process runs on the machine (another test's, say).
fn kubelet_running() -> bool {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "kubelet")
            })
        })
        .unwrap_or(false)
}

/// The iptables chains every kubelet installs at start (a canary it watches, a hint of
/// the iptables mode, a filter against outside traffic to 127.0.0.0/8), in both address
/// families; a running kubelet would put them back.
fn remove_kubelet_chains() {
    for tool in ["iptables", "ip6tables"] {
        let run = |args: &[&str]| {
            Command::new(tool)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // Kubelets starting at the same time may each have added a jump.
        for hook in ["INPUT", "OUTPUT"] {
            while run(&["-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL"]) {}
        }
        run(&["-t", "filter", "-F", "KUBE-FIREWALL"]);
        run(&["-t", "filter", "-X", "KUBE-FIREWALL"]);
        for table in ["mangle", "nat", "filter"] {
            run(&["-t", table, "-X", "KUBE-KUBELET-CANARY"]);
        }
        run(&["-t", "mangle", "-X", "KUBE-IPTABLES-HINT"]);
    }
}

/// Mounted cgroup hierarchies: each v1 controller directory and the cgroup2 mount.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    criox_runtime::mountinfo::current()
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .collect()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status code and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(&format!("127.0.0.1:{port}"), path)
}

pub fn http_get_at(addr: &str, path: &str) -> Option<(u16, String)> {
    let addr = addr.parse().ok()?;
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Polls `f` every 200 ms until it returns Some, panicking with `what` and `context()`
/// after `limit`.
pub fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A static pod manifest: `spec` is the pod's spec.
pub fn static_pod(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

/// A busybox container of a manifest running `command`.
pub fn busybox(name: &str, image: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
    })
}

/// Pids of processes whose command line is exactly `argv` and that run below `cgroup`
/// (a cgroupfs name) in the memory hierarchy.
pub fn processes_in_cgroup(cgroup: &str, argv: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
                c.lines()
                    .any(|l| l.split(':').nth(2).is_some_and(|p| p.starts_with(cgroup)))
            })
        })
        .collect()
}
