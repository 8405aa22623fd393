//! The daemon under a service manager: readiness and stopping notices on
//! `$NOTIFY_SOCKET` (`Type=notify`), and a CRI socket passed by socket activation that
//! survives restarts of the daemon.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use criox_proto::v1::VersionRequest;
use criox_testkit::Daemon;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket
        .recv(&mut buf)
        .expect("a notice from the daemon before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_once_serving_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let notices = UnixDatagram::bind(&path).unwrap();
    notices
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    let mut daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start()
        .await;
    assert_eq!(receive(&notices), "READY=1");
    // Ready means a client is served, not merely that the process exists.
    let version = daemon
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .expect("Version after READY=1")
        .into_inner();
    assert_eq!(version.runtime_name, "criox");

    let status = daemon.stop();
    assert_eq!(receive(&notices), "STOPPING=1");
    assert!(status.success(), "daemon exit: {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn abstract_notify_socket_is_reached() {
    let name = format!("criox-test-{}", criox_testkit::unique("n"));
    let address =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let notices = UnixDatagram::bind_addr(&address).unwrap();
    notices
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut daemon = Daemon::builder()
        .env("NOTIFY_SOCKET", &format!("@{name}"))
        .start()
        .await;
    assert_eq!(receive(&notices), "READY=1");
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_activation_serves_the_passed_socket_across_restarts() {
    let mut daemon = Daemon::builder().socket_activated().start().await;
    let inode = |path: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("socket file"))
    };
    let before = inode(&daemon.socket);
    let listed = daemon.ctl(&["version"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(daemon.log().contains("criox is serving the CRI"));

    // The manager owns the socket: a stopping daemon leaves it for the next start, and
    // the next start serves the same socket instead of binding a new one.
    assert!(daemon.stop().success());
    assert!(
        criox_testkit::is_socket(&daemon.socket),
        "the activated socket was removed on shutdown"
    );
    daemon.spawn().await;
    assert_eq!(inode(&daemon.socket), before, "the socket was bound anew");
    let version = daemon.ctl(&["version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains("criox"));
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_variables_for_another_process_are_ignored() {
    // A daemon started from a shell that was itself socket-activated inherits the
    // variables; they name the shell's pid, so the daemon binds its own socket.
    let daemon = Daemon::builder()
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .start()
        .await;
    assert!(criox_testkit::is_socket(&daemon.socket));
    let version = daemon.ctl(&["version"]);
    assert!(version.status.success());
}
