//! The built spec, written as config.json into a busybox bundle and run by Debian's runc
//! and by this build's embedded backend (`criox oci`), both through the runc command
//! line. These run as root: they create real containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use criox_proto::v1;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

use super::spec::{
    ContainerSpec, ContainerSpecInput, NodeFacts, PodNamespace, PodPid, PodSpecContext, SpecError,
    build_container_spec,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A runc-compatible command line: Debian's runc, or this build's embedded libcontainer
/// backend (`criox oci`).
#[derive(Debug, Clone, Copy)]
enum Runtime {
    Runc,
    Embedded,
}

const RUNTIMES: [Runtime; 2] = [Runtime::Runc, Runtime::Embedded];

impl Runtime {
    /// Debian's runc 1.1 predates the `rro` mount option; libcontainer 0.7 has it.
    fn supports_recursive_read_only(self) -> bool {
        matches!(self, Runtime::Embedded)
    }

    fn command(self) -> Command {
        match self {
            Runtime::Runc => Command::new("runc"),
            Runtime::Embedded => {
                let mut c = Command::new(criox_binary());
                c.arg("oci");
                c
            }
        }
    }
}

/// The criox binary of this build: the test executable lives in `deps/` beside it.
fn criox_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("criox"))
        .expect("target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build the binary first (cargo build, as hack/test does)",
        bin.display()
    );
    bin
}

/// A bundle directory with its own runtime state root; the container is force-deleted and
/// the directory removed when dropped, also when the test fails.
struct Bundle {
    dir: tempfile::TempDir,
    id: String,
    runtime: Runtime,
}

impl Bundle {
    fn new(runtime: Runtime) -> Bundle {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create containers with runc and need root: run hack/test as root"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/rootfs");
        let status = Command::new(&script)
            .arg(dir.path().join("rootfs"))
            .status()
            .expect("run hack/rootfs");
        assert!(status.success(), "hack/rootfs failed");
        let id = format!(
            "criox-spec-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Bundle { dir, id, runtime }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("runc-state")
    }

    /// Builds the spec for `config`, runs it to completion, returns (exit code, stdout,
    /// stderr).
    /// The spec of `config` in `pod`, for this bundle's rootfs and runtime.
    fn build(
        &self,
        pod: &PodSpecContext,
        config: &v1::ContainerConfig,
        image: &ImageConfiguration,
    ) -> Result<ContainerSpec, SpecError> {
        let mut node = NodeFacts::detect();
        node.recursive_read_only = self.runtime.supports_recursive_read_only();
        let rootfs = self.rootfs();
        build_container_spec(
            &ContainerSpecInput {
                id: &self.id,
                rootfs: &rootfs,
                config,
                image,
                image_name: "busybox",
                pod,
                target_pid_namespace: None,
            },
            &node,
        )
    }

    fn run(
        &self,
        config: &v1::ContainerConfig,
        image: &ImageConfiguration,
    ) -> (i32, String, String) {
        self.run_in(&test_pod(), config, image)
    }

    fn run_in(
        &self,
        pod: &PodSpecContext,
        config: &v1::ContainerConfig,
        image: &ImageConfiguration,
    ) -> (i32, String, String) {
        let built = self.build(pod, config, image).expect("spec builds");
        let json = serde_json::to_vec_pretty(&built.spec).expect("spec serializes");
        std::fs::write(self.dir.path().join("config.json"), json).expect("write config.json");
        let out = self
            .runtime
            .command()
            .arg("--root")
            .arg(self.state())
            .arg("run")
            .arg("--bundle")
            .arg(self.dir.path())
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()
            .expect("run runc");
        assert_no_cgroup_left(&self.id);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .command()
            .arg("--root")
            .arg(self.state())
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `runc run` removes the container's cgroup when the process exits; nothing may remain.
fn assert_no_cgroup_left(id: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let left = h.path().join(id);
        assert!(!left.exists(), "cgroup left behind: {}", left.display());
    }
    assert!(
        !Path::new("/sys/fs/cgroup").join(id).exists(),
        "cgroup left behind in the unified hierarchy"
    );
}

fn test_pod() -> PodSpecContext {
    PodSpecContext {
        id: "spec-test-pod".into(),
        name: "spec-test".into(),
        namespace: "default".into(),
        uid: "spec-test-uid".into(),
        hostname: "spec-test".into(),
        network: PodNamespace::Node,
        ipc: PodNamespace::New,
        uts: PodNamespace::New,
        pid: PodPid::Container,
        hostname_path: None,
        hosts_path: None,
        resolv_conf_path: None,
        shm_path: None,
        // runc removes the container's own cgroup on exit; a parent would be left behind.
        cgroup_parent: "/".into(),
        sysctls: Default::default(),
        runtime_handler: "runc".into(),
        privileged: false,
    }
}

fn image(user: &str) -> ImageConfiguration {
    let config = ConfigBuilder::default()
        .user(user.to_string())
        .env(vec![
            "PATH=/bin:/sbin:/usr/bin".to_string(),
            "FROM_IMAGE=1".to_string(),
        ])
        .cmd(vec!["true".to_string()])
        .build()
        .expect("image config");
    ImageConfigurationBuilder::default()
        .config(config)
        .build()
        .expect("image")
}

fn container(
    cmd: &[&str],
    sc: impl FnOnce(&mut v1::LinuxContainerSecurityContext),
) -> v1::ContainerConfig {
    let mut security = v1::LinuxContainerSecurityContext {
        namespace_options: Some(v1::NamespaceOption {
            network: v1::NamespaceMode::Node as i32,
            pid: v1::NamespaceMode::Container as i32,
            ipc: v1::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    sc(&mut security);
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "t".into(),
            attempt: 0,
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        linux: Some(v1::LinuxContainerConfig {
            resources: None,
            security_context: Some(security),
        }),
        ..Default::default()
    }
}

fn runtime_default() -> Option<v1::SecurityProfile> {
    Some(v1::SecurityProfile {
        profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    })
}

#[test]
fn runc_runs_the_image_user_and_run_as_username() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(&container(&["id"], |_| {}), &image("daemon"));
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out.trim(), "uid=1(daemon) gid=1(daemon) groups=1(daemon)");

        let (code, out, err) = b.run(
            &container(&["id"], |s| s.run_as_username = "nobody".into()),
            &image("daemon"),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out.trim(),
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
        );

        let (code, out, err) = b.run(
            &container(&["id"], |s| {
                s.run_as_user = Some(v1::Int64Value { value: 1 });
                s.run_as_group = Some(v1::Int64Value { value: 65534 });
                s.supplemental_groups = vec![0];
            }),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out.trim(),
            "uid=1(daemon) gid=65534(nogroup) groups=0(root),65534(nogroup)"
        );
    }
}

#[test]
fn runc_sees_the_merged_environment() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let mut config = container(&["env"], |_| {});
        config.envs = vec![
            v1::KeyValue {
                key: "FROM_CRI".into(),
                value: "two words".into(),
            },
            v1::KeyValue {
                key: "FROM_IMAGE".into(),
                value: "overridden".into(),
            },
        ];
        let (code, out, err) = b.run(&config, &image("daemon"));
        assert_eq!(code, 0, "stderr: {err}");
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "FROM_CRI=two words",
            "FROM_IMAGE=overridden",
            "HOME=/usr/sbin",
            "PATH=/bin:/sbin:/usr/bin",
            "HOSTNAME=spec-test",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in {out}");
        }
        assert!(!lines.contains(&"FROM_IMAGE=1"), "{out}");
    }
}

#[test]
fn runc_refuses_writes_to_a_readonly_rootfs() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let write = ["sh", "-c", "echo x > /written"];
        let (code, _, err) = b.run(&container(&write, |s| s.readonly_rootfs = true), &image(""));
        assert_ne!(code, 0, "a write to a read-only rootfs must fail");
        assert!(err.contains("Read-only file system"), "stderr: {err}");
        assert!(!b.rootfs().join("written").exists());

        let (code, _, err) = b.run(&container(&write, |_| {}), &image(""));
        assert_eq!(code, 0, "stderr: {err}");
        assert!(b.rootfs().join("written").exists());
    }
}

#[test]
fn runc_applies_dropped_and_added_capabilities() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let chown = ["chown", "1", "/tmp"];
        let drop_chown = |s: &mut v1::LinuxContainerSecurityContext| {
            s.capabilities = Some(v1::Capability {
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            })
        };
        let (code, _, err) = b.run(&container(&chown, drop_chown), &image(""));
        assert_ne!(code, 0, "chown without CAP_CHOWN must fail");
        assert!(err.contains("Operation not permitted"), "stderr: {err}");

        let (code, _, err) = b.run(&container(&chown, |_| {}), &image(""));
        assert_eq!(code, 0, "stderr: {err}");

        // An added capability: sethostname needs CAP_SYS_ADMIN, which the default set lacks.
        let sethostname = ["hostname", "renamed"];
        let (code, _, _) = b.run(&container(&sethostname, |_| {}), &image(""));
        assert_ne!(code, 0, "sethostname without CAP_SYS_ADMIN must fail");
        let (code, _, err) = b.run(
            &container(&sethostname, |s| {
                s.capabilities = Some(v1::Capability {
                    add_capabilities: vec!["SYS_ADMIN".into()],
                    ..Default::default()
                })
            }),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
    }
}

#[test]
fn runc_runtime_default_seccomp_blocks_unshare() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let unshare = ["unshare", "-U", "true"];
        let (code, _, err) = b.run(&container(&unshare, |_| {}), &image(""));
        assert_eq!(code, 0, "unconfined, a user namespace is allowed: {err}");

        let (code, _, err) = b.run(
            &container(&unshare, |s| s.seccomp = runtime_default()),
            &image(""),
        );
        assert_ne!(code, 0, "RuntimeDefault must refuse unshare");
        assert!(err.contains("Operation not permitted"), "stderr: {err}");

        // The profile still lets ordinary programs fork and exec.
        let (code, out, err) = b.run(
            &container(
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/comm & wait; echo $(echo forked)",
                ],
                |s| s.seccomp = runtime_default(),
            ),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out.trim(), "cat\nforked", "{runtime:?}");
    }
}

#[test]
fn runc_puts_the_container_in_its_cgroup_and_hostname() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(
            &container(&["sh", "-c", "cat /proc/self/cgroup; hostname"], |_| {}),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        let own = format!("/{}", b.id);
        assert!(
            out.lines().any(|l| l.ends_with(&own)),
            "no cgroup named {own} in:\n{out}"
        );
        assert_eq!(out.lines().last(), Some("spec-test"));
    }
}

/// clone(CLONE_NEWUSER) as a plain fork: `Ok` when the kernel (and seccomp) allowed it.
fn clone_newuser() -> Result<(), std::io::Error> {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child gets a copy of this process and only calls _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the child must not run anything of the parent's; _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child created above.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    Ok(())
}

const PROBE_ENV: &str = "CRIOX_CLONE_PROBE";
const PROBE_TEST: &str = "container::runc_tests::clone_newuser_probe";

/// Inside a container (started by the test below with this executable mounted at /probe)
/// it reports whether clone(CLONE_NEWUSER) is allowed. On the host, as root, it checks that
/// the call is allowed there, so that a refusal inside a container means the container's
/// confinement refused it.
#[test]
fn clone_newuser_probe() {
    let result = clone_newuser();
    if std::env::var_os(PROBE_ENV).is_some() {
        match result {
            Ok(()) => println!("clone-newuser: allowed"),
            Err(e) => println!("clone-newuser: refused ({e})"),
        }
        return;
    }
    assert!(nix::unistd::geteuid().is_root(), "run hack/test as root");
    result.expect("root on the host may clone a user namespace");
}

/// Runs the probe above in a container without seccomp and with RuntimeDefault.
fn assert_clone_newuser_refused(runtime: Runtime) {
    let exe = std::env::current_exe().expect("test executable");
    let b = Bundle::new(runtime);
    let probe = |seccomp: Option<v1::SecurityProfile>| {
        let mut config = container(
            &[
                "/probe",
                "--exact",
                PROBE_TEST,
                "--nocapture",
                "--test-threads=1",
            ],
            |s| s.seccomp = seccomp,
        );
        config.envs = vec![v1::KeyValue {
            key: PROBE_ENV.into(),
            value: "1".into(),
        }];
        config.mounts = vec![v1::Mount {
            container_path: "/probe".into(),
            host_path: exe.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }];
        let (code, out, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: probe failed: {out}\n{err}");
        // libtest prints the test name on the same line first.
        out.lines()
            .find_map(|l| l.find("clone-newuser: ").map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("{runtime:?}: no probe output in {out}\n{err}"))
    };
    assert_eq!(
        probe(None),
        "clone-newuser: allowed",
        "{runtime:?} unconfined"
    );
    let confined = probe(runtime_default());
    assert!(
        confined.starts_with("clone-newuser: refused (Operation not permitted"),
        "{runtime:?}: RuntimeDefault let clone(CLONE_NEWUSER) through: {confined}"
    );
}

#[test]
fn runc_runtime_default_seccomp_refuses_namespaces_through_clone() {
    assert_clone_newuser_refused(Runtime::Runc);
}

#[test]
fn embedded_runtime_default_seccomp_refuses_namespaces_through_clone() {
    assert_clone_newuser_refused(Runtime::Embedded);
}

#[test]
fn runc_applies_memory_and_cpu_limits() {
    // On cgroup v2 the shares become a weight: 1 + (256 - 2) * 9999 / 262142.
    let (files, expected) = if NodeFacts::detect().cgroup_v2 {
        (
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight",
            vec!["67108864", "20000 100000", "10"],
        )
    } else {
        (
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
             /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares",
            vec!["67108864", "20000", "100000", "256"],
        )
    };
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let mut config = container(&["sh", "-c", files], |_| {});
        config.linux.as_mut().expect("linux config").resources =
            Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_quota: 20_000,
                cpu_period: 100_000,
                cpu_shares: 256,
                ..Default::default()
            });
        let (code, out, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        let values: Vec<&str> = out.lines().collect();
        assert_eq!(values, expected, "{runtime:?}");
    }
}

#[test]
fn runc_mounts_pod_files_and_cri_binds() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let host = tempfile::tempdir().expect("temp dir");
        let files = host.path();
        std::fs::write(files.join("hostname"), "pod-hostname\n").expect("hostname");
        std::fs::write(files.join("hosts"), "127.0.0.1 pod-hosts\n").expect("hosts");
        std::fs::write(files.join("resolv.conf"), "nameserver 192.0.2.53\n").expect("resolv");
        std::fs::create_dir(files.join("shm")).expect("shm");
        std::fs::create_dir(files.join("data")).expect("data");
        std::fs::write(files.join("data/f"), "from the host\n").expect("data file");
        let mut pod = test_pod();
        pod.hostname_path = Some(files.join("hostname"));
        pod.hosts_path = Some(files.join("hosts"));
        pod.resolv_conf_path = Some(files.join("resolv.conf"));
        pod.shm_path = Some(files.join("shm"));

        let script = "cat /etc/hostname /etc/hosts /etc/resolv.conf /data/f; \
                      echo x > /dev/shm/written; \
                      if echo x > /data/g 2>/dev/null; then echo data-writable; fi";
        let mut config = container(&["sh", "-c", script], |_| {});
        config.mounts = vec![v1::Mount {
            container_path: "/data".into(),
            host_path: files.join("data").to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }];
        let (code, out, err) = b.run_in(&pod, &config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec![
                "pod-hostname",
                "127.0.0.1 pod-hosts",
                "nameserver 192.0.2.53",
                "from the host"
            ],
            "{runtime:?}"
        );
        assert!(
            files.join("shm/written").exists(),
            "{runtime:?}: /dev/shm is the pod's"
        );
        assert!(
            !files.join("data/g").exists(),
            "{runtime:?}: /data is read-only"
        );
    }
}

#[test]
fn runc_loads_a_localhost_seccomp_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = dir.path().join("deny-mkdir.json");
    // Docker's format: allow everything, refuse mkdir and mkdirat with EACCES.
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "comment": "no new directories"}]}"#,
    )
    .expect("write profile");
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let localhost = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::Localhost as i32,
            localhost_ref: profile.to_string_lossy().into_owned(),
        });
        let (code, _, err) = b.run(
            &container(&["mkdir", "/tmp/made"], |s| s.seccomp = localhost),
            &image(""),
        );
        assert_ne!(code, 0, "{runtime:?}: the profile must refuse mkdir");
        assert!(err.contains("Permission denied"), "{runtime:?}: {err}");
        assert!(!b.rootfs().join("tmp/made").exists());
        let (code, _, err) = b.run(&container(&["mkdir", "/tmp/made"], |_| {}), &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
    }
}

#[test]
fn runc_privileged_sees_host_devices_and_writable_sysfs() {
    let script = "test -b /dev/loop0 && echo loop0; test -c /dev/kmsg && echo kmsg; \
                  grep -q ' /sys sysfs rw' /proc/mounts && echo sysfs-rw; \
                  grep CapEff /proc/self/status | cut -f2";
    // Privileged means every capability this node can give: the test's own bounding set.
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim)
        .expect("CapBnd line")
        .to_string();
    // The default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let default_set = "00000000a80425fb";
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(&container(&["sh", "-c", script], |_| {}), &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.trim(),
            default_set,
            "{runtime:?}: an ordinary container sees no host device and holds the default set"
        );

        let mut pod = test_pod();
        pod.privileged = true;
        let privileged = container(&["sh", "-c", script], |s| s.privileged = true);
        let (code, out, err) = b.run_in(&pod, &privileged, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["loop0", "kmsg", "sysfs-rw", bounding.as_str()],
            "{runtime:?}"
        );
    }
}

/// A tmpfs mounted for the length of a test, lazily unmounted when dropped.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(at: &Path) -> TmpfsMount {
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount tmpfs");
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn recursive_read_only_reaches_submounts_where_the_runtime_supports_it() {
    let host = tempfile::tempdir().expect("temp dir");
    let data = host.path().join("data");
    std::fs::create_dir_all(data.join("sub")).expect("dirs");
    let _sub = TmpfsMount::new(&data.join("sub"));
    let write = ["sh", "-c", "echo x > /data/sub/written"];
    let mount = |rro: bool| v1::Mount {
        container_path: "/data".into(),
        host_path: data.to_string_lossy().into_owned(),
        readonly: true,
        recursive_read_only: rro,
        ..Default::default()
    };
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        // Plain read-only covers the top mount only.
        let mut config = container(&write, |_| {});
        config.mounts = vec![mount(false)];
        let (code, _, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        std::fs::remove_file(data.join("sub/written")).expect("written through the submount");

        config.mounts = vec![mount(true)];
        if !runtime.supports_recursive_read_only() {
            let e = b.build(&test_pod(), &config, &image("")).unwrap_err();
            assert!(
                e.to_string().contains("does not support"),
                "{runtime:?}: {e}"
            );
            continue;
        }
        let (code, _, err) = b.run(&config, &image(""));
        assert_ne!(code, 0, "{runtime:?}: rro must cover the submount");
        assert!(err.contains("Read-only file system"), "{runtime:?}: {err}");
        assert!(!data.join("sub/written").exists());
    }
}

/// A process this test started, killed and reaped when dropped.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process this test started indirectly, killed by pid when dropped.
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A named network namespace (`ip netns`), deleted when dropped.
struct NetNs(String);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// The pid of a child of `parent`, found through /proc (the stat's fourth field).
fn child_of(parent: u32) -> Option<u32> {
    for _ in 0..200 {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let ppid = after_comm.split_whitespace().nth(1);
            if ppid == Some(parent.to_string().as_str()) {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

#[test]
fn runc_joins_the_pods_network_and_pid_namespaces_by_path() {
    // The pod's network namespace, told apart from any other by its default TTL.
    let name = format!("criox-spec-{}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(ok.is_ok_and(|s| s.success()), "ip netns add {name}");
    let netns = NetNs(name);
    let ok = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.0,
            "sysctl",
            "-qw",
            "net.ipv4.ip_default_ttl=77",
        ])
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "set the ttl in {}", netns.0);

    // The pod's PID namespace, with `sleep` as its PID 1.
    let infra = Started(
        Command::new("unshare")
            .args(["--pid", "--fork", "sleep", "600"])
            .spawn()
            .expect("start unshare"),
    );
    let infra_pid = child_of(infra.0.id()).expect("the pid namespace's first process");
    // Dropped before `infra`: unshare then reaps its child and exits on its own.
    let _infra_pid_one = KillPid(infra_pid);

    let mut pod = test_pod();
    pod.network = PodNamespace::Path(PathBuf::from("/run/netns").join(&netns.0));
    pod.pid = PodPid::of_infra(infra_pid);
    let config = container(
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_default_ttl /proc/1/comm",
        ],
        |s| {
            let ns = s.namespace_options.as_mut().expect("namespace options");
            ns.network = v1::NamespaceMode::Pod as i32;
            ns.pid = v1::NamespaceMode::Pod as i32;
        },
    );
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run_in(&pod, &config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["77", "sleep"],
            "{runtime:?}"
        );
    }
}
