//! Pulls that must fail: each with a clear error naming the image and the cause, the
//! store left as it was, and no half-made layer left behind.

use criox_proto::v1::*;
use criox_testkit::{ACCEPT_ANYTHING, Daemon, dir_entries, fixtures, insecure_registries};
use tonic::Code;

/// A daemon that pulls from the fixture registry and from an unreachable one (127.0.0.1:9,
/// discard, is closed on a test machine), trusting every image.
async fn daemon() -> Daemon {
    let registry = fixtures()["CRIOX_TEST_REGISTRY"].clone();
    Daemon::builder()
        .images(
            &insecure_registries(&[&registry, "127.0.0.1:9"]),
            ACCEPT_ANYTHING,
            "",
        )
        .start()
        .await
}

#[tokio::test]
async fn bad_pulls_fail_clearly_and_leave_the_store_as_it_was() {
    let fx = fixtures();
    let daemon = daemon().await;
    let registry = &fx["CRIOX_TEST_REGISTRY"];
    // One good image first: failures must not disturb it.
    let good = daemon.pull(&fx["CRIOX_TEST_IMAGE_BUSYBOX"]).await.unwrap();
    let layers_before = dir_entries(&daemon.root.join("storage/layers"));
    assert_eq!(layers_before.len(), 1);

    let unknown = format!("{registry}/criox/no-such-image:latest");
    let cases: Vec<(String, Code, &str)> = vec![
        (unknown, Code::NotFound, "not found"),
        (
            format!("{registry}/criox/busybox:no-such-tag"),
            Code::NotFound,
            "not found",
        ),
        (
            "127.0.0.1:9/criox/busybox:latest".to_string(),
            Code::Unavailable,
            "cannot reach registry 127.0.0.1:9",
        ),
        (
            fx["CRIOX_TEST_IMAGE_CORRUPT"].clone(),
            Code::DataLoss,
            "digest mismatch",
        ),
        (
            fx["CRIOX_TEST_IMAGE_TRUNCATED"].clone(),
            Code::DataLoss,
            "bytes",
        ),
        (
            fx["CRIOX_TEST_IMAGE_ODD_MEDIA"].clone(),
            Code::FailedPrecondition,
            "application/vnd.criox.test.unknown",
        ),
        (
            fx["CRIOX_TEST_IMAGE_ESCAPE_DOTDOT"].clone(),
            Code::FailedPrecondition,
            "escapes the layer directory",
        ),
        (
            fx["CRIOX_TEST_IMAGE_ESCAPE_SYMLINK"].clone(),
            Code::FailedPrecondition,
            "escapes the layer directory",
        ),
        (
            format!("{registry}/criox/busybox@sha256:{}", "0".repeat(64)),
            Code::NotFound,
            "not found",
        ),
        (
            "Not/A/Valid:Name".to_string(),
            Code::InvalidArgument,
            "invalid image reference",
        ),
    ];
    for (image, code, cause) in &cases {
        let e = daemon.pull(image).await.unwrap_err();
        assert_eq!(e.code(), *code, "{image}: {e}");
        assert!(e.message().contains(cause), "{image}: {e}");
        if *code != Code::InvalidArgument {
            assert!(
                e.message().contains(image.as_str()),
                "error must name {image}: {e}"
            );
        }
    }

    // Nothing escaped the layer directory.
    assert!(!std::path::Path::new("/criox-escape").exists());
    assert!(!std::path::Path::new("/tmp/criox-escape").exists());
    assert!(!daemon.root.join("criox-escape").exists());
    // The store holds exactly what it held before: no record, no layer, no temp dir.
    let images = daemon.list_images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, good);
    assert_eq!(
        dir_entries(&daemon.root.join("storage/layers")),
        layers_before
    );
    assert!(dir_entries(&daemon.root.join("storage/tmp")).is_empty());
    assert_eq!(dir_entries(&daemon.root.join("images/records")).len(), 1);

    // The next good pull still works.
    daemon.pull(&fx["CRIOX_TEST_IMAGE_PAUSE"]).await.unwrap();
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_the_work() {
    let fx = fixtures();
    let daemon = daemon().await;
    let image = fx["CRIOX_TEST_IMAGE_LAYERS"].clone();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let socket = daemon.socket.clone();
        let image = image.clone();
        tasks.push(tokio::spawn(async move {
            let channel = criox_testkit::connect(&socket).await.unwrap();
            criox_proto::v1::image_service_client::ImageServiceClient::new(channel)
                .pull_image(PullImageRequest {
                    image: Some(ImageSpec {
                        image,
                        ..Default::default()
                    }),
                    auth: None,
                    sandbox_config: None,
                })
                .await
                .map(|r| r.into_inner().image_ref)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    assert!(ids.iter().all(|i| i == &ids[0]));
    assert_eq!(dir_entries(&daemon.root.join("storage/layers")).len(), 3);
    assert!(dir_entries(&daemon.root.join("storage/tmp")).is_empty());
    // Each layer was downloaded once: the log has one "layer pulled" line per layer.
    let log = daemon.log();
    assert_eq!(log.matches("layer pulled and unpacked").count(), 3, "{log}");
}

#[tokio::test]
async fn a_pull_killed_half_way_leaves_nothing_and_the_next_pull_succeeds() {
    let fx = fixtures();
    let mut daemon = daemon().await;
    let image = fx["CRIOX_TEST_IMAGE_BIG"].clone();
    let socket = daemon.socket.clone();
    let pulling = {
        let image = image.clone();
        tokio::spawn(async move {
            let channel = criox_testkit::connect(&socket).await.unwrap();
            criox_proto::v1::image_service_client::ImageServiceClient::new(channel)
                .pull_image(PullImageRequest {
                    image: Some(ImageSpec {
                        image,
                        ..Default::default()
                    }),
                    auth: None,
                    sandbox_config: None,
                })
                .await
        })
    };
    // Kill the daemon as soon as a layer is being unpacked.
    let tmp = daemon.root.join("storage/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while dir_entries(&tmp).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never started unpacking"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    daemon.kill();
    assert!(
        pulling.await.unwrap().is_err(),
        "the pull finished before the kill"
    );

    daemon.spawn().await;
    let images = daemon.list_images().await;
    assert!(images.is_empty(), "{images:?}");
    assert!(
        dir_entries(&tmp).is_empty(),
        "half-unpacked layers were left"
    );
    assert!(dir_entries(&daemon.root.join("storage/layers")).is_empty());
    assert!(dir_entries(&daemon.root.join("images/records")).is_empty());

    daemon.pull(&image).await.unwrap();
    assert_eq!(dir_entries(&daemon.root.join("storage/layers")).len(), 4);
}
