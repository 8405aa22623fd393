//! Checks of the fields of CRI requests (pod sandbox and container configs) that need
//! neither the kernel nor the daemon's state: each takes the plain values the request
//! carries and, when it refuses one, names the field in the request that holds it, so
//! the server can answer `InvalidArgument` with something the user can find.

pub mod container;
pub mod pod;
pub mod quantity;
pub mod slice;
pub mod userns;

/// A request field refused: `field` is its path in the request as the CRI names it
/// (`config.port_mappings[0].host_port`, `mounts[2].container_path`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}
