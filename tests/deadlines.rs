//! A call that outlives the caller's deadline (grpc-timeout) ends with DEADLINE_EXCEEDED,
//! the code gRPC clients check for, whoever notices first.

mod common;

use std::time::Duration;

use criox_proto::v1::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_past_the_callers_deadline_is_deadline_exceeded() {
    let (daemon, _conf) = common::daemon_with_image(&common::busybox_image(), "").await;
    let mut images = daemon.images().await;
    // 48 MiB of layers take longer than 50 ms to fetch and unpack; the client only sends
    // the deadline and waits, so the answer is the server's.
    let big = common::fixtures()["CRIOX_TEST_IMAGE_BIG"].clone();
    let mut request = tonic::Request::new(PullImageRequest {
        image: Some(ImageSpec {
            image: big,
            ..Default::default()
        }),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(50));
    let err = images.pull_image(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");

    // A deadline that leaves time is no obstacle.
    let mut request = tonic::Request::new(ImageStatusRequest {
        image: Some(ImageSpec {
            image: common::busybox_image(),
            ..Default::default()
        }),
        verbose: false,
    });
    request.set_timeout(Duration::from_secs(10));
    let status = images.image_status(request).await.expect("ImageStatus");
    assert!(status.into_inner().image.is_some());
}
