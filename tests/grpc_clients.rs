//! grpc-go clients reach the CRI socket whatever HTTP/2 :authority they send: the socket
//! path (cri-tools up to 1.29 and older kubelets), `localhost` (today's `unix://`
//! targets) or an empty one. Needs the grpcprobe client that `hack/clients` builds into
//! the directory named by CRIOX_TEST_GO_CLIENTS.

use std::process::Command;

use criox_testkit::Daemon;

fn probe(daemon: &Daemon, mode: &str) {
    let out = Command::new(criox_testkit::go_client("grpcprobe"))
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
