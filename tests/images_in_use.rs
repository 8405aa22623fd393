//! An image that a container uses keeps its layers: RemoveImage refuses to take it away
//! (a tag of several may still go), and succeeds once the container is gone.

use criox_proto::v1::*;
use criox_testkit::pods::{pod_config, run_pod};
use criox_testkit::{Daemon, fixtures};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_in_use_by_a_container_is_not_removed() {
    let fx = fixtures();
    let registry = fx["CRIOX_TEST_REGISTRY"].clone();
    let daemon = Daemon::builder().trusting_fixture_registry().start().await;
    let images = daemon.images().await;
    let image = fx["CRIOX_TEST_IMAGE_BUSYBOX"].clone();
    let second_tag = format!("{registry}/criox/busybox:stable");
    let mut id = String::new();
    for name in [&image, &second_tag] {
        id = daemon.pull(name).await.unwrap();
    }

    let mut rt = daemon.runtime().await;
    let mut pod_cfg = pod_config("inuse", &criox_testkit::unique("uid"));
    pod_cfg.log_directory = daemon.dir.join("logs").display().to_string();
    criox_testkit::pods::on_host_network(&mut pod_cfg, NamespaceMode::Pod);
    let pod = run_pod(&mut rt, pod_cfg.clone()).await;
    let config = criox_testkit::image_container(&image, "user", &["true"]);
    let container = criox_testkit::create_container(&mut rt, &pod, &pod_cfg, config).await;

    let remove = |name: String| {
        let mut images = images.clone();
        async move {
            images
                .remove_image(RemoveImageRequest {
                    image: Some(ImageSpec {
                        image: name,
                        ..Default::default()
                    }),
                })
                .await
        }
    };
    // One tag of two may go; the image itself may not.
    remove(second_tag.clone()).await.unwrap();
    let e = remove(id.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains(&container), "{e}");
    let e = remove(image.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let layers = daemon.root.join("storage/layers");
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1);

    criox_testkit::remove_container(&mut rt, &container).await;
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
    remove(id).await.unwrap();
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
}
