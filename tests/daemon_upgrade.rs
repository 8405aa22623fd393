//! An upgrade replaces the binary at the daemon's path while the daemon runs (hack/install
//! copies the new one beside it and renames it over). Until the service manager restarts
//! the daemon, pods and containers must still start: their infra processes and monitors
//! run the daemon's own image, whose protocol they speak, not whatever file now holds
//! its name.

use criox_proto::v1::NamespaceMode;
use criox_testkit::pods::{host_network_pod, on_host_network, run_pod_on, stop_and_remove_pod};
use criox_testkit::{Daemon, busybox_container, busybox_image, criox_bin, run_container, sh_ok};

fn install_over(path: &std::path::Path) {
    let staged = path.with_file_name(".criox.new");
    std::fs::copy(criox_bin(), &staged).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

async fn pods_start_after_the_binary_is_replaced(handler: &str) {
    let bin_dir = tempfile::tempdir().unwrap();
    let binary = bin_dir.path().join("criox");
    std::fs::copy(criox_bin(), &binary).unwrap();
    let daemon = Daemon::builder()
        .config("[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n")
        .trusting_fixture_registry()
        .binary(&binary)
        .start()
        .await;
    let image = busybox_image();
    daemon
        .pull(&image)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));

    install_over(&binary);
    let exe = std::fs::read_link(format!("/proc/{}/exe", daemon.pid())).unwrap();
    assert!(
        exe.to_string_lossy().ends_with("(deleted)"),
        "the daemon's image should be gone from its path: {exe:?}"
    );

    let mut rt = daemon.runtime().await;
    // A pod with a PID namespace of its own has an infra process to start.
    let mut config = host_network_pod("upgraded", &daemon.dir.join("logs"));
    on_host_network(&mut config, NamespaceMode::Pod);
    let pod = run_pod_on(&mut rt, config.clone(), handler).await;
    let id = run_container(
        &mut rt,
        &pod,
        &config,
        busybox_container("app", &["sleep", "1000"]),
    )
    .await;
    assert_eq!(
        sh_ok(&mut rt, &id, "echo still-serving").await.trim(),
        "still-serving",
        "handler {handler:?}: {}",
        daemon.log()
    );
    stop_and_remove_pod(&mut rt, &pod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_start_after_the_binary_is_replaced_embedded() {
    pods_start_after_the_binary_is_replaced("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_start_after_the_binary_is_replaced_runc() {
    pods_start_after_the_binary_is_replaced("runc").await;
}
