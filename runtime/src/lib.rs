//! The OCI runtime-spec side of criox. It knows bundles and containers, and nothing of CRI.

pub mod cli;
pub mod monitor;
