//! The embedded backend: youki's libcontainer linked into this binary.
//!
//! libcontainer changes process-wide state while it works: `create` and `exec` clone and
//! step into the container's directory, `start` steps into it to reach the notify socket,
//! `delete` and `start` fork hooks. Every verb therefore runs only in a process of one
//! thread (the monitor, `criox oci`), and refuses to run anywhere else.

mod exec;
mod exec_cgroups;
mod exec_seccomp;
mod propagation;
mod spec_fixes;
mod umask;

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupConfig, CgroupManager, ControllerOpt, create_cgroup_manager};
use libcontainer::config::YoukiConfig;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::LinuxResources;

pub use exec::{ExecRequest, exec};

use crate::backend::{Backend, BackendError, ContainerState, CreateOptions, Status};
use crate::bundle;

/// File in an adjusted bundle naming the bundle the caller gave.
const ORIGIN: &str = "origin";

/// libcontainer with its state under `root` (one directory per container id).
#[derive(Debug, Clone)]
pub struct Embedded {
    root: PathBuf,
}

/// Joins an error and its sources into one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl Embedded {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Embedded { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Refuses to run in a process with more than one thread: another thread would see
    /// the working directory move under it.
    fn ensure_one_thread(id: &str) -> Result<(), BackendError> {
        let threads = std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0);
        if threads == 1 {
            Ok(())
        } else {
            Err(BackendError::failed(
                id,
                "embedded runtime",
                format!("called from a process with {threads} threads; it needs exactly one"),
            ))
        }
    }

    fn lib_err(id: &str, op: &'static str, err: LibcontainerError) -> BackendError {
        BackendError::failed(id, op, error_chain(&err))
    }

    pub(crate) fn load(&self, id: &str) -> Result<Container, BackendError> {
        bundle::check_id(id)?;
        Self::ensure_one_thread(id)?;
        self.load_checked(id)
    }

    /// [`Embedded::load`] for the verbs that are safe in a process of many threads.
    fn load_from_any_thread(&self, id: &str) -> Result<Container, BackendError> {
        bundle::check_id(id)?;
        self.load_checked(id)
    }

    /// Loads the state of a container whose id has been checked.
    fn load_checked(&self, id: &str) -> Result<Container, BackendError> {
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(BackendError::NotFound { id: id.to_string() });
        }
        Container::load(dir).map_err(|e| Self::lib_err(id, "load state", e))
    }

    /// Whether the container has hooks of the kind `pick` chooses. Running hooks forks,
    /// which a process of many threads must not do. A configuration that cannot be read
    /// counts as having hooks: the process of its own then deals with it as before.
    fn has_hooks(
        &self,
        id: &str,
        pick: impl Fn(&oci_spec::runtime::Hooks) -> &Option<Vec<oci_spec::runtime::Hook>>,
    ) -> bool {
        match YoukiConfig::load(self.container_dir(id)) {
            Ok(config) => config
                .hooks
                .as_ref()
                .and_then(|h| pick(h).as_ref())
                .is_some_and(|hooks| !hooks.is_empty()),
            Err(_) => true,
        }
    }

    /// Starts a created container from a process of many threads (the daemon), without the
    /// process a `criox oci start` costs. Starting runs the container's poststart hooks:
    /// with hooks, nothing is done and `Ok(false)` says so, and the caller starts it from a
    /// process of its own. Without them, starting reads and writes the container's state
    /// and tells its init to go (no chdir: see the libcontainer patch).
    pub fn start_without_hooks(&self, id: &str) -> Result<bool, BackendError> {
        let mut c = self.load_from_any_thread(id)?;
        if self.has_hooks(id, |h| h.poststart()) {
            return Ok(false);
        }
        c.start().map_err(|e| Self::lib_err(id, "start", e))?;
        Ok(true)
    }

    /// [`Backend::delete`] from a process of many threads, as [`Embedded::start_without_hooks`]
    /// starts: `Ok(false)` when the container has poststop hooks, which deleting runs.
    /// Deleting kills through signals and the cgroup, removes the cgroup and the state:
    /// nothing there changes the process.
    pub fn delete_without_hooks(&self, id: &str, force: bool) -> Result<bool, BackendError> {
        let c = self.load_from_any_thread(id)?;
        if self.has_hooks(id, |h| h.poststop()) {
            return Ok(false);
        }
        self.delete_loaded(id, c, force)?;
        Ok(true)
    }

    fn delete_loaded(&self, id: &str, mut c: Container, force: bool) -> Result<(), BackendError> {
        if force && matches!(status_of(&c), Status::Created | Status::Running) {
            // libcontainer removes the cgroup right after its own SIGKILL, retrying for
            // about 100 ms; a loaded node can take longer to tear the processes down, and
            // the cgroup would stay behind. Killed and gone first, only the removal is left.
            if let Some(pid) = c.pid() {
                let _ = c.kill(nix::sys::signal::Signal::SIGKILL, true);
                if let Some(init) = crate::process::ProcessId::of(pid.as_raw()) {
                    init.wait_gone(std::time::Duration::from_secs(10));
                }
                c = self.load_from_any_thread(id)?;
            }
        }
        c.delete(force)
            .map_err(|e| Self::lib_err(id, "delete", e))?;
        // A container whose config never got written leaves its directory behind.
        let _ = std::fs::remove_dir_all(self.container_dir(id));
        let _ = std::fs::remove_dir_all(self.shadow_bundle_dir(id));
        Ok(())
    }

    /// The bundle the caller created the container from.
    fn reported_bundle(&self, id: &str, c: &Container) -> PathBuf {
        let shadow = self.shadow_bundle_dir(id);
        if c.bundle() == &shadow
            && let Ok(origin) = std::fs::read(shadow.join(ORIGIN))
        {
            return PathBuf::from(std::ffi::OsString::from_vec(origin));
        }
        c.bundle().clone()
    }

    fn shadow_bundle_dir(&self, id: &str) -> PathBuf {
        self.root.join(format!(".{id}.bundle"))
    }

    /// Writes the adjusted spec as a bundle of its own (libcontainer reads
    /// `<bundle>/config.json`); the root filesystem is made absolute so it stays the same.
    fn write_shadow_bundle(
        &self,
        id: &str,
        bundle: &Path,
        mut spec: oci_spec::runtime::Spec,
    ) -> Result<PathBuf, BackendError> {
        let dir = self.shadow_bundle_dir(id);
        let io = |e: std::io::Error| BackendError::failed(id, "write adjusted spec", e.to_string());
        if let Some(mut root) = spec.root().clone() {
            root.set_path(bundle::rootfs_path(bundle, root.path()));
            spec.set_root(Some(root));
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        let json = serde_json::to_vec(&spec)
            .map_err(|e| BackendError::failed(id, "write adjusted spec", e.to_string()))?;
        std::fs::write(dir.join("config.json"), json).map_err(io)?;
        Ok(dir)
    }

    /// Removes whatever a failed create left: processes, cgroup, state directory.
    fn clean_failed_create(&self, id: &str) {
        let dir = self.container_dir(id);
        if let Ok(mut c) = Container::load(dir.clone()) {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn cgroup_config(&self, id: &str, c: &Container) -> Result<CgroupConfig, BackendError> {
        let config = c.spec().map_err(|e| Self::lib_err(id, "load config", e))?;
        Ok(CgroupConfig {
            cgroup_path: config.cgroup_path,
            systemd_cgroup: false,
            container_name: id.to_string(),
        })
    }
}

fn status_of(c: &Container) -> Status {
    match c.status() {
        ContainerStatus::Creating => Status::Creating,
        ContainerStatus::Created => Status::Created,
        ContainerStatus::Running => Status::Running,
        ContainerStatus::Stopped => Status::Stopped,
        ContainerStatus::Paused => Status::Paused,
    }
}

impl Backend for Embedded {
    fn create(&self, opts: CreateOptions<'_>) -> Result<i32, BackendError> {
        let id = opts.id;
        bundle::check_id(id)?;
        Self::ensure_one_thread(id)?;
        let spec = bundle::load(id, opts.bundle, false)?;
        std::fs::create_dir_all(&self.root)
            .map_err(|e| BackendError::failed(id, "create runtime root", e.to_string()))?;
        if self.container_dir(id).exists() {
            return Err(BackendError::AlreadyExists { id: id.to_string() });
        }
        let caller_adj = spec_fixes::own_oom_score_adj();
        let shadow = match spec_fixes::apply(&spec, id, opts.bundle, caller_adj) {
            Some(fixed) => Some(self.write_shadow_bundle(id, opts.bundle, fixed)?),
            None => None,
        };
        let build_bundle = shadow.clone().unwrap_or_else(|| opts.bundle.to_path_buf());
        let cwd = std::env::current_dir().ok();

        let result = umask::container_side(&self.container_dir(id), || {
            let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_root_path(&self.root)?
                .with_pid_file(opts.pid_file)?
                .with_console_socket(opts.console_socket);
            if let Some(fd) = opts.stdio.stdin {
                builder = builder.with_stdin(fd);
            }
            if let Some(fd) = opts.stdio.stdout {
                builder = builder.with_stdout(fd);
            }
            if let Some(fd) = opts.stdio.stderr {
                builder = builder.with_stderr(fd);
            }
            builder
                .validate_id()?
                .as_init(&build_bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        });

        // libcontainer changes the caller's working directory while building.
        if let Some(cwd) = cwd {
            let _ = std::env::set_current_dir(cwd);
        }
        match result {
            Ok(container) => {
                let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
                if let Err(e) = propagation::apply(pid, propagation::steps(&spec)) {
                    self.clean_failed_create(id);
                    if let Some(dir) = shadow {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    return Err(BackendError::failed(id, "create", e.to_string()));
                }
                // The adjusted bundle stays while the container lives: exec reads the
                // container's spec from it. `state` reports the bundle the caller gave.
                if let Some(dir) = &shadow {
                    let _ = std::fs::write(dir.join(ORIGIN), opts.bundle.as_os_str().as_bytes());
                }
                Ok(pid)
            }
            Err(e) => {
                self.clean_failed_create(id);
                if let Some(dir) = shadow {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(Self::lib_err(id, "create", e))
            }
        }
    }

    fn start(&self, id: &str) -> Result<(), BackendError> {
        let mut c = self.load(id)?;
        c.start().map_err(|e| Self::lib_err(id, "start", e))
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), BackendError> {
        let mut c = self.load(id)?;
        let sig = Signal::try_from(signal)
            .map_err(|e| BackendError::failed(id, "kill", format!("signal {signal}: {e}")))?;
        c.kill(sig, all).map_err(|e| Self::lib_err(id, "kill", e))
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), BackendError> {
        let c = self.load(id)?;
        self.delete_loaded(id, c, force)
    }

    fn state(&self, id: &str) -> Result<ContainerState, BackendError> {
        let c = self.load(id)?;
        let reported = self.reported_bundle(id, &c);
        let status = status_of(&c);
        let pid = match status {
            Status::Stopped => 0,
            _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
        };
        let rootfs = oci_spec::runtime::Spec::load(reported.join("config.json"))
            .ok()
            .and_then(|s| s.root().as_ref().map(|r| r.path().clone()))
            .map(|r| bundle::rootfs_path(&reported, &r))
            .unwrap_or_default();
        Ok(ContainerState {
            oci_version: "1.0.2".to_string(),
            id: id.to_string(),
            pid,
            status,
            bundle: reported,
            rootfs,
            created: c.created().map(|t| t.to_rfc3339()),
            owner: c.creator().map(|o| o.to_string_lossy().into_owned()),
            annotations: None,
        })
    }

    fn pause(&self, id: &str) -> Result<(), BackendError> {
        let mut c = self.load(id)?;
        c.pause().map_err(|e| Self::lib_err(id, "pause", e))
    }

    fn resume(&self, id: &str) -> Result<(), BackendError> {
        let mut c = self.load(id)?;
        c.resume().map_err(|e| Self::lib_err(id, "resume", e))
    }

    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), BackendError> {
        let c = self.load(id)?;
        let cfg = self.cgroup_config(id, &c)?;
        let manager = create_cgroup_manager(cfg)
            .map_err(|e| BackendError::failed(id, "update", error_chain(&e)))?;
        manager
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| BackendError::failed(id, "update", error_chain(&e)))
    }
}
