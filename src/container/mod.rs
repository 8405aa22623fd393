//! Containers: the translation of a CRI container request into an OCI runtime spec.
//!
//! `spec` is the entry point; the sibling modules each own one part of the translation.

// The container manager is the consumer of this translation layer; until it is wired to
// the CRI service, the builder and its helpers are only exercised by their tests.
#![allow(dead_code)]

pub mod mounts;
pub mod spec;

mod capabilities;
mod devices;
mod error;
mod namespaces;
mod process;
mod resources;
mod rootfs_path;
mod seccomp;
mod security;
mod user;

#[cfg(test)]
mod runc_tests;
