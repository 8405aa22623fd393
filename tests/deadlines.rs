//! A deadline (grpc-timeout) that leaves time is no obstacle. That a call outliving its
//! caller's deadline ends with DEADLINE_EXCEEDED is checked on the server's side by the
//! unit test of `server::deadline` and with a real client by critest's "public image
//! should timeout" (`hack/critest`): a tonic client's own timer answers CANCELLED.

use std::time::Duration;

use criox_proto::v1::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_leaves_time_is_no_obstacle() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut images = daemon.images().await;
    let mut request = tonic::Request::new(ImageStatusRequest {
        image: Some(ImageSpec {
            image: criox_testkit::busybox_image(),
            ..Default::default()
        }),
        verbose: false,
    });
    request.set_timeout(Duration::from_secs(10));
    let status = images.image_status(request).await.expect("ImageStatus");
    assert!(status.into_inner().image.is_some());
}
