//! The criox daemon: the CRI server and everything behind it. `src/main.rs` is the
//! command line over it; the integration tests under `tests/` reach the parts they drive
//! directly (the container manager, the spec builder, the streaming server) through it.
//!
//! Only what those two callers need is public; everything else stays private to the crate,
//! so unused code is still reported.

mod call_layer;
mod cgroup_driver;
pub mod config;
pub mod container;
pub mod ctl;
pub mod daemon;
mod ids;
mod image;
mod metrics;
mod network;
mod sandbox;
mod server;
pub mod service_manager;
mod stats;
mod storage;
mod store;
pub mod streaming;
mod timeline;

/// The pod infra process (`criox pod-infra`), which holds a pod's namespaces.
pub use sandbox::infra as pod_infra;

#[cfg(test)]
mod test_support {
    /// Fails a test that needs root with a hint at how to run it.
    pub fn assert_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root: run through hack/test"
        );
    }
}
