//! grpc-go clients reach the CRI socket whatever HTTP/2 :authority they send: the socket
//! path (cri-tools up to 1.29 and older kubelets), `localhost` (today's `unix://`
//! targets) or an empty one. Needs the grpcprobe client that `hack/clients` builds into
//! the directory named by CRIOX_TEST_GO_CLIENTS.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Daemon;

fn grpcprobe() -> PathBuf {
    let dir = std::env::var("CRIOX_TEST_GO_CLIENTS").unwrap_or_else(|_| {
        panic!(
            "CRIOX_TEST_GO_CLIENTS is not set: build the Go clients with `hack/clients target/go` \
             and set it to that directory (hack/test does both)"
        )
    });
    let bin = PathBuf::from(dir).join("grpcprobe");
    assert!(
        bin.exists(),
        "{} is missing: run `hack/clients <dir> grpcprobe`",
        bin.display()
    );
    bin
}

fn probe(daemon: &Daemon, mode: &str) {
    let out = Command::new(grpcprobe())
        .arg("-mode")
        .arg(mode)
        .arg("-socket")
        .arg(&daemon.socket)
        .output()
        .expect("run grpcprobe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpcprobe -mode {mode} failed ({}):\n{stdout}{stderr}\ndaemon log:\n{}",
        out.status,
        daemon.log()
    );
    assert!(
        stdout.lines().any(|l| l == "RuntimeName: criox"),
        "grpcprobe -mode {mode} printed no runtime name criox:\n{stdout}{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("Images: ")),
        "grpcprobe -mode {mode} did not list images:\n{stdout}{stderr}"
    );
}

#[tokio::test]
async fn client_sending_the_socket_path_as_authority() {
    let daemon = Daemon::start().await;
    probe(&daemon, "path");
}

#[tokio::test]
async fn client_sending_localhost_as_authority() {
    let daemon = Daemon::start().await;
    probe(&daemon, "localhost");
}

#[tokio::test]
async fn client_sending_an_empty_authority() {
    let daemon = Daemon::start().await;
    probe(&daemon, "empty");
}
