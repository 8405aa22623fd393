//! The interface every OCI runtime backend offers for one container of a bundle.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Lifecycle status as the OCI runtime-spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        }
    }
}

/// The state of a container, shaped like `runc state` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    /// Process id of the container's init; 0 once it is gone.
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    #[serde(default)]
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

/// Standard streams handed to the container's init process. `None` inherits the caller's.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What `create` needs.
#[derive(Debug)]
pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    /// Unix socket on which the pty master is sent when the process asks for a terminal.
    pub console_socket: Option<&'a Path>,
    pub stdio: Stdio,
}

/// Errors of a backend operation; each names the container and the operation.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("container {id}: not found")]
    NotFound { id: String },
    #[error("container {id}: already exists")]
    AlreadyExists { id: String },
    #[error("container {id}: invalid bundle: {field}: {reason}")]
    InvalidBundle {
        id: String,
        field: String,
        reason: String,
    },
    #[error("container {id}: {op}: {message}")]
    Failed {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error("container {id}: {op}: running {program}: {source}")]
    Spawn {
        id: String,
        op: &'static str,
        program: PathBuf,
        source: std::io::Error,
    },
}

impl BackendError {
    pub(crate) fn failed(id: &str, op: &'static str, message: impl Into<String>) -> Self {
        BackendError::Failed {
            id: id.to_string(),
            op,
            message: message.into(),
        }
    }
}

/// One OCI runtime (embedded libcontainer, or a runc-compatible binary).
///
/// `create` clones into new namespaces: call it only from a single-threaded process.
pub trait Backend {
    fn create(&self, opts: CreateOptions<'_>) -> Result<i32, BackendError>;
    fn start(&self, id: &str) -> Result<(), BackendError>;
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), BackendError>;
    fn delete(&self, id: &str, force: bool) -> Result<(), BackendError>;
    fn state(&self, id: &str) -> Result<ContainerState, BackendError>;
    fn pause(&self, id: &str) -> Result<(), BackendError>;
    fn resume(&self, id: &str) -> Result<(), BackendError>;
    fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), BackendError>;
}
