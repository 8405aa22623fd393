//! A first pull with no registries configuration: a plain-HTTP registry on loopback is
//! reached as containerd and Docker reach it, and a registry that cannot be reached is
//! named with the real cause, not the connection pool's "Connect".

use criox_testkit::{ACCEPT_ANYTHING, Daemon, fixtures};

/// A daemon with an empty registries.conf (nothing marked insecure) and an accepting
/// policy.
async fn daemon_without_registry_config() -> Daemon {
    Daemon::builder()
        .images("", ACCEPT_ANYTHING, "certs_dir = \"/nonexistent\"")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_registry_on_loopback_needs_no_configuration() {
    let daemon = daemon_without_registry_config().await;
    let image = fixtures()["CRIOX_TEST_IMAGE_BUSYBOX"].clone();
    let image_ref = daemon
        .pull(&image)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    assert!(
        daemon.log().contains("trying plain HTTP"),
        "the pull went over TLS first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_is_named_with_its_cause() {
    let daemon = daemon_without_registry_config().await;
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = daemon
        .pull(&format!("127.0.0.1:{port}/criox/none:latest"))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let message = err.message();
    assert!(
        message.contains(&format!(
            "cannot reach registry 127.0.0.1:{port} over https"
        )),
        "{message}"
    );
    assert!(
        message.to_ascii_lowercase().contains("connection refused"),
        "the cause is missing: {message}"
    );
}
