//! Containers: CRI container lifecycle over the OCI runtime, and the translation of a CRI
//! container request into an OCI runtime spec.
//!
//! `spec` is the entry point of the translation; the sibling modules each own one part.
//!
//! Outside the crate, the manager and the spec builder are reached through the names
//! re-exported here; the integration tests drive both without a daemon.

pub(crate) mod events;
pub(crate) mod exec_stream;
mod exit_watch;
mod handler_features;
pub(crate) mod image_volume;
pub(crate) mod manager;
pub(crate) mod record;
pub(crate) mod spec;

// The container verbs, each an `impl ContainerManager` of its own.
mod apparmor;
mod create;
mod exec;
mod exit;
pub(crate) mod idmapped;
mod log;
mod recover;
mod remove;
mod start;
mod status;
mod stop;
mod update;

mod propagation;
mod rootfs_path;
mod user;

// The translation's error, also the user lookup's.
use self::spec::error;

pub use self::events::EventKind;
pub use self::manager::{ContainerError, ContainerImage, ContainerManager, ContainerPod};
pub use self::record::{ContainerRecord, Exit, Filter, State};
pub use self::spec::{
    ContainerSpec, ContainerSpecInput, NodeFacts, PodNamespace, PodPid, PodSpecContext, SpecError,
    build_container_spec,
};
