//! The built spec, written as config.json into a busybox bundle, run by Debian's runc.
//! These run as root: they create real containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use criox_proto::v1;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

use super::spec::{
    ContainerSpecInput, NodeFacts, PodNamespace, PodPid, PodSpecContext, build_container_spec,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A bundle directory with its own runc state root; the container is force-deleted and
/// the directory removed when dropped, also when the test fails.
struct Bundle {
    dir: tempfile::TempDir,
    id: String,
}

impl Bundle {
    fn new() -> Bundle {
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
        Bundle { dir, id }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("runc-state")
    }

    /// Builds the spec for `config`, runs it to completion, returns (exit code, stdout,
    /// stderr).
    fn run(
        &self,
        config: &v1::ContainerConfig,
        image: &ImageConfiguration,
    ) -> (i32, String, String) {
        let pod = test_pod();
        let mut node = NodeFacts::detect();
        node.recursive_read_only = false;
        let rootfs = self.rootfs();
        let built = build_container_spec(
            &ContainerSpecInput {
                id: &self.id,
                rootfs: &rootfs,
                config,
                image,
                image_name: "busybox",
                pod: &pod,
                target_pid_namespace: None,
            },
            &node,
        )
        .expect("spec builds");
        let json = serde_json::to_vec_pretty(&built.spec).expect("spec serializes");
        std::fs::write(self.dir.path().join("config.json"), json).expect("write config.json");
        let out = Command::new("runc")
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
        let _ = Command::new("runc")
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
    let b = Bundle::new();
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

#[test]
fn runc_sees_the_merged_environment() {
    let b = Bundle::new();
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

#[test]
fn runc_refuses_writes_to_a_readonly_rootfs() {
    let b = Bundle::new();
    let write = ["sh", "-c", "echo x > /written"];
    let (code, _, err) = b.run(&container(&write, |s| s.readonly_rootfs = true), &image(""));
    assert_ne!(code, 0, "a write to a read-only rootfs must fail");
    assert!(err.contains("Read-only file system"), "stderr: {err}");
    assert!(!b.rootfs().join("written").exists());

    let (code, _, err) = b.run(&container(&write, |_| {}), &image(""));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(b.rootfs().join("written").exists());
}

#[test]
fn runc_applies_dropped_and_added_capabilities() {
    let b = Bundle::new();
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

#[test]
fn runc_runtime_default_seccomp_blocks_unshare() {
    let b = Bundle::new();
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
        &container(&["sh", "-c", "echo $(echo forked)"], |s| {
            s.seccomp = runtime_default()
        }),
        &image(""),
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.trim(), "forked");
}

#[test]
fn runc_puts_the_container_in_its_cgroup_and_hostname() {
    let b = Bundle::new();
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
