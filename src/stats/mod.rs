//! Container and pod statistics read straight from kernel files: cgroup v1 and v2
//! controllers, the pod's network namespace, and the writable layer on disk. Nothing here
//! spawns a process, so a kubelet can poll many containers every second.

pub mod cgroup;
pub mod cgroup_detail;
pub mod cpu_rate;
pub mod disk;
pub mod network;
pub mod psi;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected content in {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("no cgroup hierarchy provides the {0} controller")]
    NoController(&'static str),
    #[error("cannot enter network namespace {path}: {source}")]
    Netns { path: PathBuf, source: nix::Error },
}

impl StatsError {
    /// True when the cgroup or namespace is gone, as it is for a container that just
    /// exited: callers report such a container without figures rather than failing.
    pub fn is_gone(&self) -> bool {
        match self {
            StatsError::Read { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            StatsError::Netns { source, .. } => *source == nix::Error::ENOENT,
            _ => false,
        }
    }
}

fn read_to_string(path: PathBuf) -> Result<String, StatsError> {
    std::fs::read_to_string(&path).map_err(|source| StatsError::Read { path, source })
}
