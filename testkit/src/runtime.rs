//! Shared pieces of the runtime tests: busybox bundles in a private temporary directory,
//! a [`Runtime`] per backend, and a guard that deletes every container the test launched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criox_runtime::{ExitRecord, LaunchRequest, Launched, Runtime};
use serde_json::{Value, json};

pub const RUNC: &str = "/usr/sbin/runc";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Runc,
}

/// One test's world: its directory, runtime root, and the containers it launched.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
    pub kind: Kind,
    prefix: String,
    pub launched: std::cell::RefCell<Vec<(String, PathBuf)>>,
}

pub fn copy_rootfs(to: &Path) {
    let from = crate::busybox_rootfs();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copying {} failed", from.display());
}

impl Env {
    pub fn new(kind: Kind, name: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("criox-rt-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("runtime-root");
        let rt = match kind {
            Kind::Embedded => Runtime::embedded(&root),
            Kind::Runc => Runtime::external(RUNC, &root),
        }
        .with_exe(crate::criox_bin());
        let tag = match kind {
            Kind::Embedded => "e",
            Kind::Runc => "r",
        };
        Env {
            prefix: crate::unique(&format!("{name}-{tag}")),
            dir,
            rt,
            kind,
            launched: Default::default(),
        }
    }

    pub fn id(&self, n: u32) -> String {
        format!("{}-{n}", self.prefix)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A bundle running `args` with a fresh copy of the busybox rootfs; `tweak` edits the
    /// config JSON.
    pub fn bundle(&self, id: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> PathBuf {
        let bundle = self.path(&format!("bundle-{id}"));
        std::fs::create_dir_all(&bundle).unwrap();
        copy_rootfs(&bundle.join("rootfs"));
        let mut config = default_config(id, args);
        tweak(&mut config);
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        bundle
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.path(&format!("state-{id}"))
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.path(&format!("{id}.log"))
    }

    pub fn request(&self, id: &str, bundle: &Path) -> LaunchRequest {
        LaunchRequest {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            state_dir: self.state_dir(id),
            log_path: Some(self.log_path(id)),
            stdin: false,
            stdin_once: false,
            terminal: false,
        }
    }

    pub fn launch(&self, req: &LaunchRequest) -> Result<Launched, criox_runtime::RuntimeError> {
        self.launched
            .borrow_mut()
            .push((req.id.clone(), req.state_dir.clone()));
        self.rt.launch(req)
    }

    /// Launches and starts; panics on failure.
    pub fn run(&self, id: &str, args: &[&str], tweak: impl FnOnce(&mut Value)) -> Launched {
        let bundle = self.bundle(id, args, tweak);
        let launched = self
            .launch(&self.request(id, &bundle))
            .unwrap_or_else(|e| panic!("launch {id}: {e}"));
        self.rt
            .start(id)
            .unwrap_or_else(|e| panic!("start {id}: {e}"));
        launched
    }

    pub fn wait_exit(&self, id: &str) -> ExitRecord {
        criox_runtime::wait_exit(&self.state_dir(id), Some(Duration::from_secs(60)))
            .unwrap_or_else(|| panic!("{id}: no exit record within 60s"))
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, id: &str, needle: &str) {
        for _ in 0..6000 {
            if self.log(id).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{id}: log never contained {needle:?}: {}", self.log(id));
    }

    pub fn delete(&self, id: &str) {
        self.rt
            .delete(id, &self.state_dir(id), true)
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (id, state_dir) in self.launched.borrow().iter() {
            let _ = self.rt.delete(id, state_dir, true);
        }
    }
}

/// The runtime-spec default (runc spec), without a terminal, running `args`, in cgroup
/// `/criox-test/<id>`.
pub fn default_config(id: &str, args: &[&str]) -> Value {
    let mut v = serde_json::to_value(criox_runtime::oci_spec::runtime::Spec::default()).unwrap();
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(args);
    v["root"] = json!({"path": "rootfs", "readonly": false});
    v["hostname"] = json!("criox-test");
    v["linux"]["cgroupsPath"] = json!(format!("/criox-test/{id}"));
    v
}

/// Removes the pid namespace (so that signals without handlers act as on a normal process).
pub fn without_pid_namespace(v: &mut Value) {
    if let Some(ns) = v["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "pid");
    }
}

/// Cgroup directories of the container (cgroup `/criox-test/<id>`) in every hierarchy.
pub fn container_cgroups(id: &str) -> Vec<PathBuf> {
    crate::cgroup_dirs(&format!("/criox-test/{id}"))
}

/// A test of each `fn(Kind)` on each backend: `embedded::NAME` and `runc::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $( #[test] fn $name() { super::$name($crate::runtime::Kind::Embedded) } )*
        }
        mod runc {
            use super::*;
            $( #[test] fn $name() { super::$name($crate::runtime::Kind::Runc) } )*
        }
    };
}
