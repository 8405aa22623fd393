//! A first pull with no registries configuration: a plain-HTTP registry on loopback is
//! reached as containerd and Docker reach it, and a registry that cannot be reached is
//! named with the real cause, not the connection pool's "Connect".

mod common;

use common::{Daemon, fixtures};
use criox_proto::v1::{ImageSpec, PullImageRequest};

/// A daemon with an empty registries.conf (nothing marked insecure) and an accepting
/// policy; keep the directory as long as the daemon.
async fn daemon_without_registry_config() -> (Daemon, tempfile::TempDir) {
    let conf = tempfile::Builder::new().prefix("cxlo").tempdir().unwrap();
    let registries = conf.path().join("registries.conf");
    std::fs::write(&registries, "").unwrap();
    let policy = conf.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let daemon = Daemon::builder()
        .config(&format!(
            "[image]\nregistries_config = {:?}\nsignature_policy = {:?}\ncerts_dir = \"/nonexistent\"\n",
            registries.display().to_string(),
            policy.display().to_string()
        ))
        .start()
        .await;
    (daemon, conf)
}

async fn pull(daemon: &Daemon, image: &str) -> Result<String, tonic::Status> {
    daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_registry_on_loopback_needs_no_configuration() {
    let (daemon, _conf) = daemon_without_registry_config().await;
    let image = fixtures()["CRIOX_TEST_IMAGE_BUSYBOX"].clone();
    let image_ref = pull(&daemon, &image)
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
    let (daemon, _conf) = daemon_without_registry_config().await;
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = pull(&daemon, &format!("127.0.0.1:{port}/criox/none:latest"))
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
