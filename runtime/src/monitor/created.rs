//! What the monitor's creation step hands to supervision, and the errors of both, kept
//! apart from `run.rs` and `supervise.rs` so that neither file imports the other's types.

use std::fs::File;

use super::attach::AttachServer;
use super::console::ConsoleError;
use super::cri_log::{CriLog, CriLogError, Stream};
use super::exit_record::ExitRecordError;
use crate::backend::BackendError;
use crate::error::IoFailure;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Io(#[from] IoFailure),
    #[error("container {id}: {source}")]
    Console { id: String, source: ConsoleError },
    #[error("container {id}: {source}")]
    Log { id: String, source: CriLogError },
    #[error("container {id}: {source}")]
    Exit { id: String, source: ExitRecordError },
    #[error("container {id}: {what}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::Error,
    },
    #[error("container {id}: {source}")]
    Confine {
        id: String,
        source: super::confine::ConfineError,
    },
    #[error("container {id}: {source}")]
    RootFlags {
        id: String,
        source: super::root_flags::RootFlagsError,
    },
}

/// The container's streams as the monitor holds them.
pub(super) struct Created {
    pub(super) pid: i32,
    pub(super) outputs: Vec<(File, Stream)>,
    pub(super) stdin: Option<File>,
    /// The pty master, for resizing.
    pub(super) terminal: Option<File>,
    pub(super) log: CriLog,
    pub(super) attach: AttachServer,
}
