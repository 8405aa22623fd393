//! The built spec, written as config.json into a busybox bundle and run by Debian's runc
//! and by this build's embedded backend (`criox oci`), both through the runc command
//! line. These run as root: they create real containers.
//!
//! This file is the harness (runtimes, bundles, the pod, image and container the tests
//! start from); the tests are grouped by the part of the spec they exercise.

mod cgroups;
mod mounts;
mod namespaces;
mod process;
mod security;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criox::container::{
    ContainerSpec, ContainerSpecInput, NodeFacts, PodNamespace, PodPid, PodSpecContext, SpecError,
    build_container_spec,
};
use criox_proto::v1;
use criox_testkit::runtime::copy_rootfs;
use criox_testkit::{criox_bin, unique};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

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
                let mut c = Command::new(criox_bin());
                c.arg("oci");
                c
            }
        }
    }
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
        copy_rootfs(&dir.path().join("rootfs"));
        Bundle {
            dir,
            id: unique("criox-spec-"),
            runtime,
        }
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
        uid: "spec-test-uid".into(),
        hostname: "spec-test".into(),
        // runc removes the container's own cgroup on exit; a parent would be left behind.
        cgroup_parent: "/".into(),
        ..criox_testkit::spec::pod_context()
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

/// A container running `cmd` on the node's network in its own PID namespace, with the
/// pod's IPC namespace and the security context `sc` makes.
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
