//! The Prometheus endpoint as a scraper sees it.

use std::io::{Read, Write};
use std::net::TcpStream;

use criox_proto::v1::{CheckpointContainerRequest, VersionRequest};
use criox_testkit::Daemon;

fn scrape(port: u16) -> prometheus_parse::Scrape {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let port = criox_testkit::free_port();
    let daemon = Daemon::builder()
        .config(&format!("[metrics]\nenabled = true\nport = {port}\n"))
        .start()
        .await;
    let mut rt = daemon.runtime().await;
    let before = scrape(port);
    let versions_before = value(
        &before,
        "criox_grpc_requests_total",
        &[("method", "Version"), ("code", "OK")],
    )
    .unwrap_or(0.0);
    rt.version(VersionRequest::default()).await.unwrap();
    rt.version(VersionRequest::default()).await.unwrap();
    rt.checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();

    let after = scrape(port);
    let versions_after = value(
        &after,
        "criox_grpc_requests_total",
        &[("method", "Version"), ("code", "OK")],
    )
    .unwrap();
    assert_eq!(versions_after - versions_before, 2.0);
    assert_eq!(
        value(
            &after,
            "criox_grpc_requests_total",
            &[("method", "CheckpointContainer"), ("code", "Unimplemented")]
        ),
        Some(1.0)
    );
    let rss = value(&after, "criox_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 1_000_000.0, "daemon RSS {rss}");
}

#[tokio::test]
async fn image_pulls_are_counted() {
    let port = criox_testkit::free_port();
    let image = criox_testkit::fixtures()["CRIOX_TEST_IMAGE_BUSYBOX"].clone();
    let daemon = criox_testkit::daemon_with_image(
        &image,
        &format!("[metrics]\nenabled = true\nport = {port}\n"),
    )
    .await;
    let scraped = scrape(port);
    assert_eq!(
        value(
            &scraped,
            "criox_image_pulls_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
    let bytes = value(&scraped, "criox_image_pull_bytes_total", &[]).unwrap();
    assert!(bytes > 100_000.0, "pulled bytes {bytes}");
    let err = daemon
        .images()
        .await
        .pull_image(criox_proto::v1::PullImageRequest {
            image: Some(criox_proto::v1::ImageSpec {
                image: format!("{image}-no-such-tag"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(err.is_err());
    assert_eq!(
        value(
            &scrape(port),
            "criox_image_pulls_total",
            &[("result", "failure")]
        ),
        Some(1.0)
    );
}
