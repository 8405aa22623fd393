//! A test daemon: the real `criox` binary in a private temporary root, state and socket,
//! with tonic clients; on drop it stops the daemon and removes everything it made (pods it
//! still holds, mounts under the temporary directory).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use criox_proto::v1::image_service_client::ImageServiceClient;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{criox_bin, fixtures, mounts_below, unmount_below};

pub struct DaemonBuilder {
    config: String,
    drop_ins: Vec<(String, String)>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    socket_activated: bool,
    images: Option<Images>,
    binary: Option<PathBuf>,
}

/// What a daemon pulls from and trusts: registries.conf and policy.json texts, and more
/// keys of the `[image]` table.
struct Images {
    registries_conf: String,
    policy: String,
    extra: String,
}

/// A signature policy that accepts every image.
pub const ACCEPT_ANYTHING: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

/// registries.conf entries that mark each of `locations` insecure (plain HTTP).
pub fn insecure_registries(locations: &[&str]) -> String {
    locations
        .iter()
        .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"))
        .collect()
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

    /// Runs the daemon from `path` (a copy of the built binary, say) instead of the build's.
    pub fn binary(mut self, path: &std::path::Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Pulls as `registries_conf` (registries.conf) and `policy` (policy.json) say, both
    /// written beside the config file and named in the drop-in `10-images.toml`, whose
    /// `[image]` table also gets the `extra` keys.
    pub fn images(mut self, registries_conf: &str, policy: &str, extra: &str) -> Self {
        self.images = Some(Images {
            registries_conf: registries_conf.to_string(),
            policy: policy.to_string(),
            extra: extra.to_string(),
        });
        self
    }

    /// Pulls from the fixture registry over plain HTTP and trusts every image.
    pub fn trusting_fixture_registry(self) -> Self {
        let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
        self.images(&insecure_registries(&[&registry]), ACCEPT_ANYTHING, "")
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
        // Searchable, as the parents of a node's /var/lib and /run are: the root of a pod's
        // user namespace reaches its own bundle and pod directories through it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .unwrap();
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
        let mut drop_ins = self.drop_ins;
        if let Some(images) = &self.images {
            let etc = config_path.parent().unwrap();
            let registries = etc.join("registries.conf");
            let policy = etc.join("policy.json");
            std::fs::write(&registries, &images.registries_conf).unwrap();
            std::fs::write(&policy, &images.policy).unwrap();
            drop_ins.push((
                "10-images.toml".to_string(),
                format!(
                    "[image]\nregistries_config = {:?}\nsignature_policy = {:?}\n{}\n",
                    registries.display().to_string(),
                    policy.display().to_string(),
                    images.extra
                ),
            ));
        }
        for (name, toml) in &drop_ins {
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
            binary: self.binary.unwrap_or_else(|| criox_bin().to_path_buf()),
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
    binary: PathBuf,
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
            images: None,
            binary: None,
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
                    .arg(&self.binary);
                sh
            }
            None => Command::new(&self.binary),
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
        let child = self.child.insert(command.spawn().expect("spawn criox"));
        wait_ready(
            child,
            &self.socket,
            &self.dir.join("daemon.log"),
            Duration::from_millis(20),
        )
        .await;
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
        Command::new(criox_bin())
            .arg("ctl")
            .arg("--endpoint")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run criox ctl")
    }

    /// PullImage of `image`; the image reference on success.
    pub async fn pull(&self, image: &str) -> Result<String, tonic::Status> {
        pull_image(self.images().await, image).await
    }

    /// ListImages without a filter, expected to be answered.
    pub async fn list_images(&self) -> Vec<criox_proto::v1::Image> {
        self.images()
            .await
            .list_images(criox_proto::v1::ListImagesRequest { filter: None })
            .await
            .expect("ListImages")
            .into_inner()
            .images
    }

    /// Asserts that no mount is left below the daemon's directory (root, state, bundles).
    pub fn assert_nothing_mounted(&self) {
        let mounts = mounts_below(&self.dir);
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
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
            Command::new(criox_bin())
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

/// PullImage of `image` through `images`; the image reference on success.
pub(crate) async fn pull_image(
    mut images: ImageServiceClient<Channel>,
    image: &str,
) -> Result<String, tonic::Status> {
    images
        .pull_image(criox_proto::v1::PullImageRequest {
            image: Some(criox_proto::v1::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// True when a daemon listens on `socket` and answers Version.
pub async fn answers_version(socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    let Ok(channel) = connect(socket).await else {
        return false;
    };
    RuntimeServiceClient::new(channel)
        .version(criox_proto::v1::VersionRequest::default())
        .await
        .is_ok()
}

/// Waits up to 30 s, polling every `poll`, until the daemon `child` answers Version on
/// `socket`; panics with its log (`log`) when it exits first or never answers.
pub(crate) async fn wait_ready(child: &mut Child, socket: &Path, log: &Path, poll: Duration) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("criox exited during start with {status}:\n{}", log());
        }
        if answers_version(socket).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "criox did not become ready:\n{}",
            log()
        );
        tokio::time::sleep(poll).await;
    }
}
