//! A real systemd (252 on Debian) as PID 1 of a private PID, mount and cgroup namespace,
//! with a system bus, for tests of the systemd cgroup driver on a machine whose own init
//! is not systemd.
//!
//! How it boots:
//! 1. A test-private cgroup is made in every hierarchy the host has mounted (below the
//!    cgroup the test process is in), and a shell moves itself into it before it `exec`s
//!    `unshare --pid --mount --cgroup --fork`, so the new cgroup namespace's root is that
//!    cgroup and nothing systemd does can reach the host's cgroups.
//! 2. Inside, the script makes all mounts private, puts a tmpfs on /run, a fresh /proc, and
//!    fresh cgroup filesystems (a tmpfs on /sys/fs/cgroup, every v1 controller the host has,
//!    `name=systemd`, and cgroup2 on /sys/fs/cgroup/unified where the host has one) so they
//!    show the namespace's root, not the host's.
//! 3. /run/systemd/system holds `criox-test.target` (no dependencies) and a `dbus.socket`
//!    and `dbus.service` without default dependencies, so only the bus starts; systemd
//!    connects to the system bus once both are active, as it does on a real node.
//! 4. The script `exec`s `/lib/systemd/systemd --system --unit=criox-test.target` as the
//!    namespace's PID 1, with `container=criox-test` so that it starts no service that
//!    would touch the host (sysctl, binfmt, remounts).
//!
//! Processes that must agree with systemd on pids and paths (the daemon under test, so
//! the runtimes it starts too) run through [`Systemd::command`]: `nsenter` into its PID,
//! mount and cgroup namespaces, after joining the namespace's root cgroup.
//!
//! On drop, everything is killed by pid (systemd, as the namespace's init, takes every
//! process of the namespace with it) and the test cgroups are removed, deepest first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SYSTEMD: &str = "/lib/systemd/systemd";
const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";

/// Why systemd cannot be booted here, or None when it can.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for bin in [SYSTEMD, DBUS_DAEMON, "/usr/bin/unshare", "/usr/bin/nsenter"] {
        if !Path::new(bin).exists() {
            return Some(format!(
                "{bin} is not installed (hack/setup installs systemd and dbus)"
            ));
        }
    }
    if hierarchies().is_empty() {
        return Some("no cgroup filesystem is mounted under /sys/fs/cgroup".into());
    }
    None
}

/// A cgroup hierarchy of the host: its mount point and options that mount it again.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    /// `-o` options for `mount -t cgroup` (v1), or None for cgroup2.
    v1_options: Option<String>,
    /// Where the test process is in it, relative to the mount.
    own: String,
}

fn hierarchies() -> Vec<Hierarchy> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let super_options = post.nth(1).unwrap_or("");
        let fields: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        // Only whole hierarchies: a bind mount of a sub-cgroup would not be one.
        if *root != "/" || !point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let (v1_options, key) = match fstype {
            "cgroup" => {
                let names: Vec<&str> = super_options
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "relatime" | "noexec" | "nosuid" | "nodev")
                    })
                    .collect();
                let key = names.join(",");
                let options = if names.iter().any(|n| n.starts_with("name=")) {
                    format!("none,{key}")
                } else {
                    key.clone()
                };
                (Some(options), key)
            }
            "cgroup2" => (None, String::new()),
            _ => continue,
        };
        // /proc/self/cgroup: "<id>:<controllers>:<path>", "0::<path>" for cgroup2.
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let same = if v1_options.is_none() {
                controllers.is_empty()
            } else {
                !controllers.is_empty() && sorted(controllers) == sorted(&key)
            };
            same.then(|| path.to_string())
        });
        let Some(path) = path else { continue };
        if found.iter().any(|h| h.mount == Path::new(point)) {
            continue;
        }
        found.push(Hierarchy {
            mount: PathBuf::from(point),
            v1_options,
            own: path,
        });
    }
    found
}

fn sorted(list: &str) -> Vec<&str> {
    let mut v: Vec<&str> = list.split(',').collect();
    v.sort();
    v
}

/// A booted systemd in namespaces of its own.
pub struct Systemd {
    /// `unshare`'s pid (the test's namespace).
    unshare: Child,
    /// systemd's pid in the test's PID namespace.
    pub pid: u32,
    /// The test cgroup in each host hierarchy.
    pub cgroups: Vec<PathBuf>,
    pub dir: tempfile::TempDir,
}

impl Systemd {
    /// Boots systemd and waits until it runs with a system bus; panics with its log if it
    /// does not within 60 s.
    pub fn boot() -> Systemd {
        let dir = tempfile::Builder::new().prefix("cxsd").tempdir().unwrap();
        let name = format!(
            "criox-systemd-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let hierarchies = hierarchies();
        let mut cgroups = Vec::new();
        for h in &hierarchies {
            let path = h.mount.join(h.own.trim_start_matches('/')).join(&name);
            std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {path:?}: {e}"));
            // A new cpuset cgroup has no CPUs or memory nodes until given its parent's.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(path.parent().unwrap().join(file)) {
                    let _ = std::fs::write(path.join(file), value.trim());
                }
            }
            cgroups.push(path);
        }

        let script = dir.path().join("boot.sh");
        std::fs::write(&script, boot_script(&hierarchies)).unwrap();
        let join: String = cgroups
            .iter()
            .map(|c| format!("echo $$ > '{}/cgroup.procs' && ", c.display()))
            .collect();
        let log = std::fs::File::create(dir.path().join("systemd.log")).unwrap();
        let unshare = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{join}exec unshare --pid --mount --cgroup --fork --kill-child sh \"$0\"",
            ))
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("container", "criox-test")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn unshare");
        let mut systemd = Systemd {
            pid: 0,
            unshare,
            cgroups,
            dir,
        };
        systemd.wait_running();
        systemd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    fn wait_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let children = format!("/proc/{0}/task/{0}/children", self.unshare.id());
        loop {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                panic!("systemd exited during boot with {status}:\n{}", self.log());
            }
            if self.pid == 0 {
                let list = std::fs::read_to_string(&children).unwrap_or_default();
                if let Some(pid) = list.split_whitespace().next().and_then(|p| p.parse().ok()) {
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                    if exe.ends_with("systemd") {
                        self.pid = pid;
                    }
                }
            }
            if self.pid != 0 {
                let out = self.systemctl(&["is-system-running"]);
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let bus = self.root().join("run/dbus/system_bus_socket").exists();
                if bus && matches!(state.as_str(), "running" | "degraded") {
                    // systemd answers on the bus once it has connected to it.
                    let out = self.busctl(&["status", "org.freedesktop.systemd1"]);
                    if out.status.success() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not reach a running state with a system bus:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// systemd's root directory as the host sees it (its /run is only there).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// A command that runs in systemd's PID, mount and cgroup namespaces, in the
    /// namespace's root cgroup.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let join: String = self
            .cgroups
            .iter()
            .map(|c| format!("echo $$ > '{}/cgroup.procs' && ", c.display()))
            .collect();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "{join}exec nsenter -t {} -p -m -C -- \"$@\"",
                self.pid
            ))
            .arg("sh")
            .arg(program.as_ref());
        command
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.command("systemctl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run systemctl")
    }

    pub fn busctl(&self, args: &[&str]) -> Output {
        self.command("busctl")
            .arg("--system")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run busctl")
    }

    /// `systemctl show -p <property> --value <unit>`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        let out = self.systemctl(&["show", "-p", property, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether systemd still knows `unit` after giving it up to 5 s to let it go
    /// (systemd unloads a stopped transient unit on its next garbage collection).
    pub fn unit_loaded(&self, unit: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.property(unit, "LoadState") != "loaded" {
                return false;
            }
            if Instant::now() > deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Path of a cgroup file inside the namespace (as its processes see /sys/fs/cgroup),
    /// read through systemd's root.
    pub fn cgroup_file(&self, relative: &str) -> PathBuf {
        self.root()
            .join("sys/fs/cgroup")
            .join(relative.trim_start_matches('/'))
    }

    /// Every process still in the test cgroups.
    fn processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for cgroup in &self.cgroups {
            for dir in walk(cgroup) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort();
        pids.dedup();
        pids
    }
}

/// A directory and all directories below it, deepest last.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(entry.path());
                }
            }
        }
        i += 1;
    }
    out
}

impl Drop for Systemd {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        // systemd is the namespace's init: its death ends every process of the namespace.
        if self.pid != 0 {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
        // unshare reaps systemd and exits; killed only if it does not.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.unshare.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // Anything left in the test cgroups (a process that was never in the namespace's
        // PID namespace) is killed by pid, then the cgroups go, deepest first.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for cgroup in &self.cgroups {
            for dir in walk(cgroup).iter().rev() {
                let mut tries = 0;
                while std::fs::remove_dir(dir).is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
                    && tries < 200
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

fn boot_script(hierarchies: &[Hierarchy]) -> String {
    let mut mounts = String::new();
    for h in hierarchies {
        let point = h.mount.display();
        match &h.v1_options {
            Some(options) => mounts.push_str(&format!(
                "mkdir -p {point}\nmount -t cgroup -o {options} cgroup {point}\n"
            )),
            None => mounts.push_str(&format!(
                "mkdir -p {point}\nmount -t cgroup2 cgroup2 {point}\n"
            )),
        }
    }
    format!(
        r#"set -e
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /run
mount -t proc proc /proc
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
{mounts}
mkdir -p /run/systemd/system /run/dbus
cat > /run/systemd/system/criox-test.target <<'EOF'
[Unit]
Description=criox test target
DefaultDependencies=no
Wants=dbus.socket dbus.service
EOF
cat > /run/systemd/system/dbus.socket <<'EOF'
[Unit]
Description=D-Bus system bus socket (criox test)
DefaultDependencies=no
[Socket]
ListenStream=/run/dbus/system_bus_socket
EOF
cat > /run/systemd/system/dbus.service <<'EOF'
[Unit]
Description=D-Bus system bus (criox test)
DefaultDependencies=no
Requires=dbus.socket
[Service]
ExecStart={DBUS_DAEMON} --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only
EOF
exec {SYSTEMD} --system --unit=criox-test.target --log-target=console --show-status=false
"#
    )
}

/// A criox daemon running in systemd's namespaces with `cgroup_manager = "systemd"`, the
/// fixture registry trusted and `runc` as a second handler.
pub struct SystemdDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Child,
}

impl SystemdDaemon {
    pub async fn start(systemd: &Systemd) -> SystemdDaemon {
        let dir = tempfile::Builder::new().prefix("cxsdd").tempdir().unwrap();
        let d = dir.path();
        let registry = crate::fixtures()["CRIOX_TEST_REGISTRY"].clone();
        std::fs::write(
            d.join("registries.conf"),
            crate::insecure_registries(&[&registry]),
        )
        .unwrap();
        std::fs::write(d.join("policy.json"), crate::ACCEPT_ANYTHING).unwrap();
        std::fs::create_dir_all(d.join("cni")).unwrap();
        let state = d.join("s");
        let config = format!(
            "root = {root:?}\nstate = {state:?}\nlog_level = \"debug\"\n\
             [runtime]\ncgroup_manager = \"systemd\"\n\
             [runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n\
             [network]\ncni_config_dir = {cni:?}\n\
             [image]\nregistries_config = {reg:?}\nsignature_policy = {pol:?}\n",
            root = d.join("root").display().to_string(),
            state = state.display().to_string(),
            cni = d.join("cni").display().to_string(),
            reg = d.join("registries.conf").display().to_string(),
            pol = d.join("policy.json").display().to_string(),
        );
        std::fs::write(d.join("criox.toml"), config).unwrap();
        let child = Self::spawn_child(systemd, d);
        let mut daemon = SystemdDaemon {
            socket: state.join("criox.sock"),
            dir,
            child,
        };
        daemon.wait_ready().await;
        daemon
    }

    fn spawn_child(systemd: &Systemd, dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        systemd
            .command(crate::criox_bin())
            .arg("--config")
            .arg(dir.join("criox.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn criox under nsenter")
    }

    /// criox's pid (nsenter's child), as the host sees it.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
            .unwrap_or_default()
            .split_whitespace()
            .find_map(|p| p.parse().ok())
    }

    /// SIGKILL to criox, as a crash (or systemd's kill of its service cgroup) would, then a
    /// new daemon on the same root and state.
    pub async fn kill_and_restart(&mut self, systemd: &Systemd) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        self.child = Self::spawn_child(systemd, self.dir.path());
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let daemon = self;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("criox exited during start with {status}:\n{}", daemon.log());
            }
            if daemon.socket.exists()
                && let Ok(channel) = crate::connect(&daemon.socket).await
            {
                let mut rt =
                    criox_proto::v1::runtime_service_client::RuntimeServiceClient::new(channel);
                if rt
                    .version(criox_proto::v1::VersionRequest::default())
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "criox did not start:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub async fn runtime(
        &self,
    ) -> criox_proto::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>
    {
        criox_proto::v1::runtime_service_client::RuntimeServiceClient::new(
            crate::connect(&self.socket).await.expect("connect"),
        )
    }

    pub async fn images(
        &self,
    ) -> criox_proto::v1::image_service_client::ImageServiceClient<tonic::transport::Channel> {
        criox_proto::v1::image_service_client::ImageServiceClient::new(
            crate::connect(&self.socket).await.expect("connect"),
        )
    }
}

impl Drop for SystemdDaemon {
    fn drop(&mut self) {
        // nsenter does not pass signals on: SIGTERM goes to criox, its child. The end of
        // systemd, the PID namespace's init, ends it in any case.
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::unmount_below(self.dir.path());
    }
}
