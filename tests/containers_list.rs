//! ListContainers and ListPodSandbox filters through the CRI, as the kubelet and crictl
//! use them: each filter must return exactly the matching items, not merely leave others
//! out.

use std::collections::BTreeSet;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{labels, on_host_network, pod_config, stop_and_remove_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

async fn containers(rt: &mut Rt, filter: ContainerFilter) -> BTreeSet<String> {
    criox_testkit::list_containers_where(rt, filter)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn pods(rt: &mut Rt, filter: PodSandboxFilter) -> BTreeSet<String> {
    criox_testkit::list_pods_where(rt, filter)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn state(s: ContainerState) -> Option<ContainerStateValue> {
    Some(ContainerStateValue { state: s as i32 })
}

async fn run_labelled_pod(
    rt: &mut Rt,
    name: &str,
    pod_labels: &[(&str, &str)],
    logs: &std::path::Path,
) -> (String, PodSandboxConfig) {
    let mut config = pod_config(name, &criox_testkit::unique("uid"));
    on_host_network(&mut config, NamespaceMode::Container);
    config.labels = labels(pod_labels);
    config.log_directory = logs.join(name).display().to_string();
    let id = criox_testkit::pods::run_pod(rt, config.clone()).await;
    (id, config)
}

fn labelled(name: &str, command: &[&str], pairs: &[(&str, &str)]) -> ContainerConfig {
    let mut config = criox_testkit::busybox_container(name, command);
    config.labels = labels(pairs);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_pod_filters_return_exactly_the_matches() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let mut rt = daemon.runtime().await;
    let logs = tempfile::tempdir().unwrap();

    let (pod_a, config_a) = run_labelled_pod(
        &mut rt,
        "lista",
        &[("tier", "web"), ("team", "a")],
        logs.path(),
    )
    .await;
    let (pod_b, config_b) = run_labelled_pod(
        &mut rt,
        "listb",
        &[("tier", "db"), ("team", "a")],
        logs.path(),
    )
    .await;

    // In pod A: one running web container, one exited; in pod B: one created, one running.
    let running_a = criox_testkit::run_container(
        &mut rt,
        &pod_a,
        &config_a,
        labelled(
            "web",
            &["sleep", "600"],
            &[("app", "web"), ("role", "server")],
        ),
    )
    .await;
    let exited_a = criox_testkit::run_container(
        &mut rt,
        &pod_a,
        &config_a,
        labelled("job", &["true"], &[("app", "web"), ("role", "job")]),
    )
    .await;
    let created_b = criox_testkit::create_container(
        &mut rt,
        &pod_b,
        &config_b,
        labelled(
            "idle",
            &["sleep", "600"],
            &[("app", "db"), ("role", "server")],
        ),
    )
    .await;
    let running_b = criox_testkit::run_container(
        &mut rt,
        &pod_b,
        &config_b,
        labelled(
            "db",
            &["sleep", "600"],
            &[("app", "db"), ("role", "primary")],
        ),
    )
    .await;
    for _ in 0..500 {
        let exited = containers(
            &mut rt,
            ContainerFilter {
                state: state(ContainerState::ContainerExited),
                ..Default::default()
            },
        )
        .await;
        if exited.contains(&exited_a) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let all = set(&[&running_a, &exited_a, &created_b, &running_b]);
    assert_eq!(containers(&mut rt, ContainerFilter::default()).await, all);

    // By id, full and as a unique prefix.
    for id in [&running_a, &created_b] {
        for given in [id.clone(), id[..12].to_string()] {
            let got = containers(
                &mut rt,
                ContainerFilter {
                    id: given.clone(),
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(got, set(&[id]), "id filter {given}");
        }
    }

    // By state.
    let cases = [
        (
            ContainerState::ContainerRunning,
            set(&[&running_a, &running_b]),
        ),
        (ContainerState::ContainerExited, set(&[&exited_a])),
        (ContainerState::ContainerCreated, set(&[&created_b])),
    ];
    for (wanted, expected) in cases {
        let got = containers(
            &mut rt,
            ContainerFilter {
                state: state(wanted),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(got, expected, "state filter {wanted:?}");
    }

    // By pod, alone and with a state.
    let got = containers(
        &mut rt,
        ContainerFilter {
            pod_sandbox_id: pod_a.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got, set(&[&running_a, &exited_a]));
    let got = containers(
        &mut rt,
        ContainerFilter {
            pod_sandbox_id: pod_b.clone(),
            state: state(ContainerState::ContainerRunning),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got, set(&[&running_b]));

    // By labels: every pair must match.
    let cases = [
        (vec![("app", "web")], set(&[&running_a, &exited_a])),
        (vec![("role", "server")], set(&[&running_a, &created_b])),
        (vec![("app", "db"), ("role", "server")], set(&[&created_b])),
        (vec![("app", "db"), ("role", "job")], BTreeSet::new()),
    ];
    for (pairs, expected) in cases {
        let got = containers(
            &mut rt,
            ContainerFilter {
                label_selector: labels(&pairs),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(got, expected, "label selector {pairs:?}");
    }
    // Labels together with a pod and a state.
    let got = containers(
        &mut rt,
        ContainerFilter {
            pod_sandbox_id: pod_a.clone(),
            state: state(ContainerState::ContainerRunning),
            label_selector: labels(&[("role", "server")]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got, set(&[&running_a]));

    // Pod label selectors.
    let cases = [
        (vec![("team", "a")], set(&[&pod_a, &pod_b])),
        (vec![("tier", "web")], set(&[&pod_a])),
        (vec![("tier", "db"), ("team", "a")], set(&[&pod_b])),
        (vec![("tier", "db"), ("team", "b")], BTreeSet::new()),
    ];
    for (pairs, expected) in cases {
        let got = pods(
            &mut rt,
            PodSandboxFilter {
                label_selector: labels(&pairs),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(got, expected, "pod label selector {pairs:?}");
    }
    let got = pods(
        &mut rt,
        PodSandboxFilter {
            label_selector: labels(&[("team", "a")]),
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            id: pod_b[..12].to_string(),
        },
    )
    .await;
    assert_eq!(got, set(&[&pod_b]));

    stop_and_remove_pod(&mut rt, &pod_a).await;
    stop_and_remove_pod(&mut rt, &pod_b).await;
}
