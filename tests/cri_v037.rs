//! The CRI of cri-api v0.37 as a kubelet uses it: the streaming list calls against a
//! client whose receive limit a unary list outgrows, in-place pod resize, the stop signal
//! from the container config, the new RuntimeFeatures, and CheckpointPod / RestorePod.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{PodLeftovers, on_host_network, pod_config, run_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

/// The test client's receive limit, below what ListPodSandbox and ListContainers answer.
const CLIENT_LIMIT: usize = 4 << 20;
/// Each pod and container carries this much annotation text: 6 of them outgrow the limit.
const ANNOTATION: usize = 900 << 10;
const ITEMS: usize = 6;

fn big_annotations(tag: &str) -> HashMap<String, String> {
    HashMap::from([(format!("criox.test/{tag}"), "x".repeat(ANNOTATION))])
}

fn host_pod(name: &str) -> PodSandboxConfig {
    let mut config = pod_config(name, &criox_testkit::unique("uid"));
    on_host_network(&mut config, NamespaceMode::Pod);
    config
}

async fn limited(daemon: &criox_testkit::Daemon) -> Rt {
    daemon
        .runtime()
        .await
        .max_decoding_message_size(CLIENT_LIMIT)
}

/// Every response of a Stream call, or the status that ended it.
async fn collect<T>(
    stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
) -> Result<Vec<T>, tonic::Status> {
    let mut stream = stream?.into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.message().await? {
        out.push(item);
    }
    Ok(out)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn lists_too_big_for_the_client_fail_and_their_streams_deliver_every_item() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let mut rt = daemon.runtime().await.max_decoding_message_size(64 << 20);
    // One container per pod: a pod's statistics hold its containers', and each item
    // must fit the client's limit on its own.
    let mut pods = BTreeSet::new();
    let mut containers = BTreeSet::new();
    for i in 0..ITEMS {
        let mut pod_cfg = host_pod(&format!("big{i}"));
        pod_cfg.annotations = big_annotations("pod");
        let pod = run_pod(&mut rt, pod_cfg.clone()).await;
        let mut config = criox_testkit::busybox_container(&format!("c{i}"), &["sleep", "600"]);
        config.log_path = String::new();
        config.annotations = big_annotations("ctr");
        containers.insert(criox_testkit::create_container(&mut rt, &pod, &pod_cfg, config).await);
        pods.insert(pod);
    }
    let first = pods.iter().next().unwrap().clone();

    let mut small = limited(&daemon).await;
    // The unary lists exceed the client's limit, as they would a kubelet's.
    let list = small
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await;
    let err = list.expect_err("ListPodSandbox fits the client's limit");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let err = small
        .list_containers(ListContainersRequest::default())
        .await
        .expect_err("ListContainers fits the client's limit");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");

    // The streams deliver each item once, in responses that fit.
    let responses = collect(
        small
            .stream_pod_sandboxes(StreamPodSandboxesRequest::default())
            .await,
    )
    .await
    .expect("StreamPodSandboxes");
    assert!(responses.len() > 1, "one response for {ITEMS} large pods");
    let streamed: Vec<String> = responses
        .iter()
        .flat_map(|r| r.pod_sandboxes.iter().map(|p| p.id.clone()))
        .collect();
    assert_eq!(streamed.len(), ITEMS, "{streamed:?}");
    assert_eq!(streamed.into_iter().collect::<BTreeSet<_>>(), pods);

    let responses = collect(
        small
            .stream_containers(StreamContainersRequest::default())
            .await,
    )
    .await
    .expect("StreamContainers");
    let streamed: Vec<String> = responses
        .iter()
        .flat_map(|r| r.containers.iter().map(|c| c.id.clone()))
        .collect();
    assert_eq!(streamed.len(), ITEMS);
    assert_eq!(streamed.into_iter().collect::<BTreeSet<_>>(), containers);

    let responses = collect(
        small
            .stream_container_stats(StreamContainerStatsRequest::default())
            .await,
    )
    .await
    .expect("StreamContainerStats");
    let streamed: BTreeSet<String> = responses
        .iter()
        .flat_map(|r| r.container_stats.iter())
        .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    assert_eq!(streamed, containers);

    let responses = collect(
        small
            .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest::default())
            .await,
    )
    .await
    .expect("StreamPodSandboxStats");
    let streamed: BTreeSet<String> = responses
        .iter()
        .flat_map(|r| r.pod_sandbox_stats.iter())
        .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    assert_eq!(streamed, pods);

    // The lists that fit give the same items through both calls.
    let metrics: BTreeSet<String> = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics
        .into_iter()
        .map(|m| m.pod_sandbox_id)
        .collect();
    let streamed: BTreeSet<String> = collect(
        small
            .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
            .await,
    )
    .await
    .expect("StreamPodSandboxMetrics")
    .into_iter()
    .flat_map(|r| r.pod_sandbox_metrics.into_iter().map(|m| m.pod_sandbox_id))
    .collect();
    assert_eq!(streamed, metrics);
    let mut images = daemon.images().await;
    let listed: Vec<String> = images
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(!listed.is_empty());
    let streamed: Vec<String> = collect(images.stream_images(StreamImagesRequest::default()).await)
        .await
        .expect("StreamImages")
        .into_iter()
        .flat_map(|r| r.images.into_iter().map(|i| i.id))
        .collect();
    assert_eq!(streamed, listed);

    // A filter applies as in the List call.
    let one = collect(
        small
            .stream_pod_sandboxes(StreamPodSandboxesRequest {
                filter: Some(PodSandboxFilter {
                    id: first.clone(),
                    ..Default::default()
                }),
            })
            .await,
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].pod_sandboxes[0].id, first);

    // A caller that gives up after the first response leaves nothing behind: the daemon's
    // descriptors return to what they were, and the next stream is whole.
    let pid = daemon.pid();
    let before = fd_count(pid);
    for _ in 0..5 {
        let mut stream = small
            .stream_containers(StreamContainersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(stream.message().await.unwrap().is_some());
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fd_count(pid),
        before,
        "descriptors left by cancelled streams"
    );
    let whole = collect(
        small
            .stream_containers(StreamContainersRequest::default())
            .await,
    )
    .await
    .unwrap();
    assert_eq!(
        whole.iter().map(|r| r.containers.len()).sum::<usize>(),
        ITEMS
    );

    for pod in &pods {
        criox_testkit::pods::stop_and_remove_pod(&mut rt, pod).await;
    }
}
