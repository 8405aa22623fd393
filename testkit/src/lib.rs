//! What the integration tests under `tests/` share, in one crate so that every test binary
//! links the same code instead of compiling its own copy:
//!
//! - the crate root: a test daemon ([`Daemon`]) running the real `criox` binary in a private
//!   root, state and socket, the fixtures `hack/fixtures` prepares, the Go clients
//!   `hack/clients` builds, CRI calls every suite makes, and what tests look at on the host
//!   (mounts, cgroups, processes);
//! - [`pods`]: a private CNI network per test, pod configs, namespaces of a pod;
//! - [`runtime`]: the runtime crate driven directly, on bundles of the busybox rootfs;
//! - [`spec`]: the daemon's container manager and spec builder driven directly;
//! - [`node`]: a daemon whose pods run on the embedded runtime or on runc;
//! - [`streaming`]: the Go streaming client and the streaming server over host processes;
//! - [`kubelet`]: a real kubelet and crictl on a test daemon;
//! - [`systemd`]: a private systemd with its own system bus.
//!
//! Everything here cleans up on drop, so a failing test leaves nothing behind either.

mod cri;
mod daemon;
mod fixtures;
mod host;
pub mod kubelet;
pub mod node;
pub mod pods;
pub mod runtime;
pub mod spec;
pub mod streaming;
pub mod systemd;

pub use cri::{
    busybox_container, container_status, create_container, daemon_with_busybox, daemon_with_image,
    exec_sync, exec_url, run_container, sh_ok, start_container, wait_exited,
};
pub use daemon::{ACCEPT_ANYTHING, Daemon, DaemonBuilder, connect, insecure_registries};
pub use fixtures::{
    busybox_binary, busybox_image, busybox_rootfs, criox_bin, fixtures, go_client, unique,
};
pub use host::{
    Tmpfs, cgroup_dirs, dir_entries, free_port, is_socket, mounts_below, processes_naming,
    unmount_below, wait_for_pid_file,
};
