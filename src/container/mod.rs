//! Containers: CRI container lifecycle over the OCI runtime.

pub mod events;
pub mod record;
