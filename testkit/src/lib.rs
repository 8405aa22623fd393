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
    assert_invalid, busybox_container, busybox_shell, container_info, container_stats,
    container_status, create_container, create_container_err, daemon_with_busybox,
    daemon_with_image, exec_ok, exec_sync, exec_url, image_container, list_containers,
    list_containers_where, list_pods, list_pods_where, memory_limit, remove_container,
    run_container, run_shell, runtime_status, sh_ok, start_container, stop_and_remove_container,
    stop_container, wait_exited,
};
pub use daemon::{ACCEPT_ANYTHING, Daemon, DaemonBuilder, connect, insecure_registries};
pub use fixtures::{
    busybox_binary, busybox_image, busybox_rootfs, criox_bin, fixtures, go_client, unique,
};
pub use host::{
    Tmpfs, cgroup_dirs, dir_entries, free_port, is_socket, monitor_pid, mounts_below, output_ok,
    proc_status_field, processes_naming, unmount_below, wait_for_pid_file,
};

/// A pair of tests for each `test => body(embedded args; runc args)`: a module `test`
/// whose tests `embedded` and `runc` run the async fn `body` with the arguments that pick
/// the embedded runtime or Debian's runc as the pod's handler.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($test:ident => $body:ident($($e:expr),+; $($r:expr),+)),+ $(,)?) => {
        $(
            mod $test {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$body($($e),+).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn runc() {
                    super::$body($($r),+).await;
                }
            }
        )+
    };
}
