//! The external backend: any runc-compatible binary (runc, crun, youki), with its own `--root`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio as ProcStdio};

use oci_spec::runtime::LinuxResources;

use crate::backend::{Backend, BackendError, ContainerState, CreateOptions};
use crate::bundle;

pub mod exec_relay;

#[derive(Debug, Clone)]
pub struct External {
    binary: PathBuf,
    /// Arguments placed before the global options (`oci` when the binary is criox itself).
    prefix: Vec<String>,
    root: PathBuf,
    /// `--systemd-cgroup` on every command: the runtime makes the container's cgroup as a
    /// systemd scope from a `slice:prefix:name` cgroupsPath (as CRI-O and containerd
    /// drive runc and crun on systemd nodes), and every later verb must agree on that.
    systemd_cgroup: bool,
}

impl External {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        External {
            binary: binary.into(),
            prefix: Vec::new(),
            root: root.into(),
            systemd_cgroup: false,
        }
    }

    /// Drives the runtime with `--systemd-cgroup`.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    /// The global options every command of this runtime starts with.
    fn global_args(&self, cmd: &mut Command) {
        cmd.args(&self.prefix).arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
    }

    /// A runc command line served by a binary under a subcommand, such as `criox oci`.
    pub fn with_prefix(mut self, prefix: Vec<String>) -> Self {
        self.prefix = prefix;
        self
    }

    /// The command with the global options set; callers append the verb and its options.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        self.global_args(&mut cmd);
        container_umask(&mut cmd);
        cmd
    }

    fn run(&self, id: &str, op: &'static str, cmd: &mut Command) -> Result<Output, BackendError> {
        let out = cmd
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::piped())
            .output()
            .map_err(|source| BackendError::Spawn {
                id: id.to_string(),
                op,
                program: self.binary.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(self.failure(id, op, &out.stderr))
        }
    }

    fn failure(&self, id: &str, op: &'static str, stderr: &[u8]) -> BackendError {
        let text = runtime_message(stderr);
        let lower = text.to_lowercase();
        if lower.contains("does not exist") || lower.contains("not found") {
            BackendError::NotFound { id: id.to_string() }
        } else if lower.contains("already exists") {
            BackendError::AlreadyExists { id: id.to_string() }
        } else {
            BackendError::failed(id, op, format!("{}: {text}", self.binary.display()))
        }
    }
}

/// The useful part of a runtime's error output: the `msg` of JSON log lines, or the text.
fn runtime_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut msgs = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                    msgs.push(m.to_string());
                }
            }
            Err(_) if !line.trim().is_empty() => msgs.push(line.trim().to_string()),
            Err(_) => {}
        }
    }
    msgs.join("; ")
}

/// A runtime makes the directories for mount points inside the root filesystem before
/// its container's process sets its own umask, and an exec'd process keeps the one it
/// was started with: the container's side gets the 022 that runc gives a container and
/// images expect, not the private umask of the daemon and its monitors. The runtime's
/// own state files have explicit modes.
fn container_umask(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
}

impl Backend for External {
    fn create(&self, opts: CreateOptions<'_>) -> Result<i32, BackendError> {
        let id = opts.id;
        bundle::check_id(id)?;
        bundle::load(id, opts.bundle, false)?;
        let io = |e: std::io::Error| BackendError::failed(id, "create", e.to_string());
        let work = self.root.join(format!(".{id}.create"));
        std::fs::create_dir_all(&work).map_err(io)?;
        let pid_file = opts
            .pid_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| work.join("pid"));
        // The runtime's own errors go to a log file: the container's stderr may be a pipe
        // that stays open as long as the container runs.
        let log = work.join("log");
        let mut cmd = Command::new(&self.binary);
        container_umask(&mut cmd);
        self.global_args(&mut cmd);
        cmd.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("create")
            .arg("--bundle")
            .arg(opts.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some(sock) = opts.console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.arg(id);
        cmd.stdin(
            opts.stdio
                .stdin
                .map_or_else(ProcStdio::null, ProcStdio::from),
        );
        cmd.stdout(
            opts.stdio
                .stdout
                .map_or_else(ProcStdio::null, ProcStdio::from),
        );
        cmd.stderr(
            opts.stdio
                .stderr
                .map_or_else(ProcStdio::null, ProcStdio::from),
        );
        let outcome = match cmd.status() {
            Err(source) => Err(BackendError::Spawn {
                id: id.to_string(),
                op: "create",
                program: self.binary.clone(),
                source,
            }),
            Ok(status) if !status.success() => {
                let text = std::fs::read(&log).unwrap_or_default();
                Err(self.failure(id, "create", &text))
            }
            Ok(_) => std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .ok_or_else(|| BackendError::failed(id, "create", "runtime wrote no pid file")),
        };
        let _ = std::fs::remove_dir_all(&work);
        outcome
    }

    fn start(&self, id: &str) -> Result<(), BackendError> {
        self.run(id, "start", self.command().arg("start").arg(id))
            .map(drop)
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), BackendError> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run(id, "kill", &mut cmd).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), BackendError> {
        // runc, crun and youki keep one directory per container under the root; with
        // --force they report success for ids they do not know.
        bundle::check_id(id)?;
        if !self.root.join(id).exists() {
            return Err(BackendError::NotFound { id: id.to_string() });
        }
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run(id, "delete", &mut cmd).map(drop)
    }

    fn state(&self, id: &str) -> Result<ContainerState, BackendError> {
        let out = self.run(id, "state", self.command().arg("state").arg(id))?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| BackendError::failed(id, "state", format!("parsing runtime output: {e}")))
    }

    fn pause(&self, id: &str) -> Result<(), BackendError> {
        self.run(id, "pause", self.command().arg("pause").arg(id))
            .map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), BackendError> {
        self.run(id, "resume", self.command().arg("resume").arg(id))
            .map(drop)
    }

    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), BackendError> {
        let json = serde_json::to_vec(resources)
            .map_err(|e| BackendError::failed(id, "update", e.to_string()))?;
        let mut child = self
            .command()
            .args(["update", "--resources", "-", id])
            .stdin(ProcStdio::piped())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::piped())
            .spawn()
            .map_err(|source| BackendError::Spawn {
                id: id.to_string(),
                op: "update",
                program: self.binary.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&json);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| BackendError::failed(id, "update", e.to_string()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure(id, "update", &out.stderr))
        }
    }
}
