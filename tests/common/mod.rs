//! Test harness: runs the real `criox` binary in a private temporary root, state and
//! socket, hands out tonic clients, and on drop stops the daemon and removes everything it
//! made (mounts under the temporary directory included).

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use criox_proto::v1::image_service_client::ImageServiceClient;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub const BIN: &str = env!("CARGO_BIN_EXE_criox");

/// A unique, short name for this test's ids, bridges and directories.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Values that `hack/fixtures` wrote to `$CRIOX_TEST_FIXTURES/fixtures.env`, plus `DIR`.
pub fn fixtures() -> HashMap<String, String> {
    let dir = std::env::var("CRIOX_TEST_FIXTURES").unwrap_or_else(|_| {
        panic!("CRIOX_TEST_FIXTURES is not set: run the tests through hack/test, which builds the fixtures")
    });
    let env_file = Path::new(&dir).join("fixtures.env");
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run hack/test", env_file.display()));
    let mut values: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    values.insert("DIR".to_string(), dir);
    values
}

/// The busybox root filesystem that `hack/fixtures` built.
pub fn busybox_rootfs() -> PathBuf {
    let dir = PathBuf::from(&fixtures()["DIR"]).join("rootfs");
    assert!(
        dir.join("bin/busybox").exists(),
        "no busybox rootfs in {}",
        dir.display()
    );
    dir
}

pub struct DaemonBuilder {
    config: String,
    drop_ins: Vec<(String, String)>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    socket_activated: bool,
}

impl DaemonBuilder {
    /// Extra TOML appended to the generated config file (root, state and a private CNI
    /// directory are always set).
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    pub fn drop_in(mut self, name: &str, toml: &str) -> Self {
        self.drop_ins.push((name.to_string(), toml.to_string()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// The test binds the CRI socket and hands it to every start of the daemon as a
    /// socket-activating service manager does (descriptor 3, `LISTEN_PID`, `LISTEN_FDS`).
    pub fn socket_activated(mut self) -> Self {
        self.socket_activated = true;
        self
    }

    /// Starts the daemon and waits until it answers Version.
    pub async fn start(self) -> Daemon {
        // Short: unix sockets of monitors and runtimes live below the state directory,
        // and their paths must fit in 108 bytes with a 64-character container id.
        let dir = tempfile::Builder::new()
            .prefix("cx")
            .tempdir()
            .expect("temporary directory");
        let dir = dir.keep();
        let root = dir.join("root");
        let state = dir.join("s");
        let cni_dir = dir.join("cni");
        std::fs::create_dir_all(&cni_dir).unwrap();
        let config_path = dir.join("etc/criox.toml");
        std::fs::create_dir_all(config_path.parent().unwrap()).unwrap();
        let mut text = format!(
            "root = {:?}\nstate = {:?}\nlog_level = \"debug\"\n",
            root.display().to_string(),
            state.display().to_string()
        );
        // Keys of the main file go before any table, so the user's TOML comes after.
        text.push_str(&self.config);
        if !self.config.contains("[network]") {
            text.push_str(&format!(
                "\n[network]\ncni_config_dir = {:?}\n",
                cni_dir.display().to_string()
            ));
        }
        std::fs::write(&config_path, text).unwrap();
        for (name, toml) in &self.drop_ins {
            let path = dir.join("etc/criox.conf.d").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, toml).unwrap();
        }
        let socket = state.join("criox.sock");
        let activation = self.socket_activated.then(|| {
            std::fs::create_dir_all(&state).unwrap();
            std::os::unix::net::UnixListener::bind(&socket).expect("bind the activation socket")
        });
        let mut daemon = Daemon {
            socket,
            root,
            state,
            cni_dir,
            config_path,
            args: self.args,
            envs: self.envs,
            activation,
            dir,
            child: None,
        };
        daemon.spawn().await;
        daemon
    }
}

pub struct Daemon {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub cni_dir: PathBuf,
    pub config_path: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    activation: Option<std::os::unix::net::UnixListener>,
    child: Option<Child>,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            config: String::new(),
            drop_ins: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            socket_activated: false,
        }
    }

    pub async fn start() -> Daemon {
        Daemon::builder().start().await
    }

    /// Starts the daemon process (again) on the same root and state.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let mut command = match &self.activation {
            // The shell's pid is the daemon's after exec, so it can name it in LISTEN_PID.
            Some(_) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg("export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" \"$@\"")
                    .arg(BIN);
                sh
            }
            None => Command::new(BIN),
        };
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(listener) = &self.activation {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = listener.as_raw_fd();
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rc = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("spawn criox");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("criox exited during start with {status}:\n{}", self.log());
            }
            if self.socket.exists()
                && let Ok(channel) = connect(&self.socket).await
            {
                let mut client = RuntimeServiceClient::new(channel);
                if client
                    .version(criox_proto::v1::VersionRequest::default())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "criox did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket).await.expect("connect"))
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(connect(&self.socket).await.expect("connect"))
    }

    /// Runs `criox ctl --endpoint <socket> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("ctl")
            .arg("--endpoint")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run criox ctl")
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_with_deadline(&mut child, Duration::from_secs(20))
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Daemon {
    /// Stops and removes, through the daemon, every pod and with it every container a test
    /// left, as a failing one does: monitors and container processes outlive the daemon.
    fn remove_leftover_pods(&self) {
        let ctl = |args: &[&str]| {
            Command::new(BIN)
                .args(["ctl", "--timeout", "20", "--endpoint"])
                .arg(&self.socket)
                .args(args)
                .stderr(Stdio::null())
                .output()
        };
        let Ok(listed) = ctl(&["pods", "-q"]) else {
            return;
        };
        for pod in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = ctl(&["stopp", pod]);
            let _ = ctl(&["rmp", pod]);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_leftover_pods();
        }
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_with_deadline(&mut child, Duration::from_secs(20));
        }
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lazily unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let mut points = mounts_below(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    criox_runtime::mountinfo::current()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

pub async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::1]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// True when `path` is a unix socket.
pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A daemon whose registries configuration trusts the fixture registry (plain HTTP) and
/// whose policy accepts anything, with `image` pulled; `config` is added to its config
/// file. Keep the returned directory (it holds those files) as long as the daemon.
pub async fn daemon_with_image(image: &str, config: &str) -> (Daemon, tempfile::TempDir) {
    let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
    let conf = tempfile::Builder::new().prefix("cxreg").tempdir().unwrap();
    let registries = conf.path().join("registries.conf");
    std::fs::write(
        &registries,
        format!("[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"),
    )
    .unwrap();
    let policy = conf.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let daemon = Daemon::builder()
        .config(config)
        .drop_in(
            "10-images.toml",
            &format!(
                "[image]\nregistries_config = {:?}\nsignature_policy = {:?}\n",
                registries.display().to_string(),
                policy.display().to_string()
            ),
        )
        .start()
        .await;
    daemon
        .images()
        .await
        .pull_image(criox_proto::v1::PullImageRequest {
            image: Some(criox_proto::v1::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
    (daemon, conf)
}

/// The busybox image the fixtures pushed to the loopback registry.
pub fn busybox_image() -> String {
    fixtures()["CRIOX_TEST_IMAGE_BUSYBOX"].clone()
}

/// A busybox container config running `command`, logging to `<name>.log` in the pod's log
/// directory.
pub fn busybox_container(name: &str, command: &[&str]) -> criox_proto::v1::ContainerConfig {
    use criox_proto::v1::*;
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: busybox_image(),
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

/// Pids of processes whose command line names `path` (a daemon's monitors name its state
/// directory).
pub fn processes_naming(path: &Path) -> Vec<i32> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// The pid a stalled helper script wrote to `path`, waiting up to ten seconds for it. The
/// file appears before the shell has written the pid into it.
pub async fn wait_for_pid_file(path: &Path) -> Option<i32> {
    for _ in 0..500 {
        let pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if pid.is_some() {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
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
