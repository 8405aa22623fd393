//! Runs an additional process inside a running container (libcontainer's tenant builder).
//! Clones into the container: call only from a single-threaded process.

use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Process, Spec};

use super::exec_seccomp::SeccompExecutor;
use super::{Embedded, error_chain};
use crate::backend::{BackendError, Stdio};

/// A process to start in container `id`.
#[derive(Debug)]
pub struct ExecRequest<'a> {
    pub id: &'a str,
    pub process: Process,
    pub pid_file: Option<&'a Path>,
    /// Required when `process.terminal` is true: the pty master is sent there.
    pub console_socket: Option<&'a Path>,
    pub stdio: Stdio,
}

/// Starts the process and returns its pid. The process is not a child of the caller: the
/// caller becomes its parent only as a child subreaper.
pub fn exec(backend: &Embedded, req: ExecRequest<'_>) -> Result<i32, BackendError> {
    let id = req.id;
    let container = backend.load(id)?;
    let mut process = req.process;
    // The spec libcontainer started the container from: the adjusted copy when there is
    // one, so the profile's operands are already in the order libcontainer reads them.
    let config = container.bundle().join("config.json");
    let spec = Spec::load(&config).map_err(|e| {
        BackendError::failed(
            id,
            "exec",
            format!("{}: {}", config.display(), error_chain(&e)),
        )
    })?;
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let executor = profile
        .map(|p| SeccompExecutor::new(&mut process, p))
        .transpose()
        .map_err(|e| BackendError::failed(id, "exec", e.to_string()))?;
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/".to_string());
        process.set_env(Some(env));
    }
    if let Some(adj) = process.oom_score_adj() {
        process.set_oom_score_adj(Some(adj.max(super::spec_fixes::own_oom_score_adj())));
    }
    let terminal = process.terminal().unwrap_or(false);

    let process_file = backend
        .container_dir(id)
        .join(format!("exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&process)
        .map_err(|e| BackendError::failed(id, "exec", format!("process spec: {e}")))?;
    std::fs::write(&process_file, json).map_err(|e| {
        BackendError::failed(id, "exec", format!("{}: {e}", process_file.display()))
    })?;

    if let Some(init) = container.pid() {
        super::exec_cgroups::join_unmanaged(init.as_raw()).map_err(|e| {
            BackendError::failed(
                id,
                "exec",
                format!("joining the cgroups of pid {init}: {e}"),
            )
        })?;
    }

    let cwd = std::env::current_dir().ok();
    let result = super::umask::container_side(&backend.root().join(id), || {
        let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(backend.root())?
            .with_pid_file(req.pid_file)?
            .with_console_socket(if terminal { req.console_socket } else { None });
        if let Some(fd) = req.stdio.stdin {
            builder = builder.with_stdin(fd);
        }
        if let Some(fd) = req.stdio.stdout {
            builder = builder.with_stdout(fd);
        }
        if let Some(fd) = req.stdio.stderr {
            builder = builder.with_stderr(fd);
        }
        if let Some(executor) = executor {
            builder = builder.with_executor(executor);
        }
        builder
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(terminal)
            .build()
    });
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    let _ = std::fs::remove_file(&process_file);
    result
        .map(|pid| pid.as_raw())
        .map_err(|e| BackendError::failed(id, "exec", error_chain(&e)))
}
