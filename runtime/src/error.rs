//! Errors of the library API, by what the caller should do about them.

use std::path::PathBuf;

use crate::backend::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: not found")]
    NotFound { id: String },
    #[error("container {id}: already exists")]
    AlreadyExists { id: String },
    /// Bad input: the message names the id and the field.
    #[error("{message}")]
    InvalidArgument { id: String, message: String },
    #[error("container {id}: {op}: {message}")]
    Failed {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error("container {id}: {op}: timed out")]
    Timeout { id: String, op: &'static str },
    #[error(transparent)]
    Io(#[from] IoFailure),
}

/// A file, pipe or socket operation on a container's behalf that failed: `what` it was
/// for and the `path` it worked on.
#[derive(Debug, thiserror::Error)]
#[error("container {id}: {what} {path}: {source}")]
pub struct IoFailure {
    pub id: String,
    pub what: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl From<BackendError> for RuntimeError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound { id } => RuntimeError::NotFound { id },
            BackendError::AlreadyExists { id } => RuntimeError::AlreadyExists { id },
            BackendError::InvalidBundle { ref id, .. } => RuntimeError::InvalidArgument {
                id: id.clone(),
                message: e.to_string(),
            },
            BackendError::Failed { id, op, message } => RuntimeError::Failed { id, op, message },
            BackendError::Spawn {
                id,
                op,
                program,
                source,
            } => RuntimeError::Failed {
                id,
                op,
                message: format!("running {}: {source}", program.display()),
            },
        }
    }
}

pub(crate) fn io_err(
    id: &str,
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> IoFailure {
    let id = id.to_string();
    let path = path.into();
    move |source| IoFailure {
        id,
        what,
        path,
        source,
    }
}
