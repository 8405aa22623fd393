//! Containers: CRI container lifecycle over the OCI runtime, and the translation of a CRI
//! container request into an OCI runtime spec.
//!
//! `spec` is the entry point of the translation; the sibling modules each own one part.

#![allow(dead_code)]

pub mod events;
pub mod exec_stream;
mod exit_watch;
mod handler_features;
pub mod image_volume;
pub mod manager;
pub mod record;
pub mod spec;

// The container verbs, each an `impl ContainerManager` of its own.
mod create;
mod exec;
mod exit;
pub mod idmapped;
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

#[cfg(test)]
mod runc_tests;

#[cfg(test)]
mod manager_tests;
