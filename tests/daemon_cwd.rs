//! The daemon's working directory is process-wide: no runtime operation may move it, even
//! for a moment. Pods and containers churn on the embedded runtime while many clients list
//! and exec; afterwards the daemon still sits in the directory it started in, and
//! CreateContainer still works. Run as root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{on_host_network, pod_config, run_pod, stop_and_remove_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

const CHURNERS: usize = 10;
const ROUNDS: usize = 3;
const PER_POD: usize = 3;
const LISTERS: usize = 50;

fn cwd_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).expect("daemon cwd")
}

fn host_pod(name: &str, logs: &Path) -> PodSandboxConfig {
    let mut pod = pod_config(name, &criox_testkit::unique("uid"));
    pod.log_directory = logs.join(name).display().to_string();
    on_host_network(&mut pod, NamespaceMode::Container);
    pod
}

/// One pod's life, `ROUNDS` times: run the pod, run a container, exec in it, stop it
/// gracefully or not, remove it, end the pod.
async fn churn(mut rt: Rt, n: usize, logs: PathBuf) {
    for round in 0..ROUNDS {
        let pod = host_pod(&format!("churn{n}r{round}"), &logs);
        let pod_id = run_pod(&mut rt, pod.clone()).await;
        // Several containers started at once: starts are where a runtime is tempted to
        // step into the container's state directory.
        let mut ids = Vec::new();
        for k in 0..PER_POD {
            let config =
                criox_testkit::busybox_container(&format!("sleeper{k}"), &["sleep", "3600"]);
            ids.push(criox_testkit::create_container(&mut rt, &pod_id, &pod, config).await);
        }
        let starts: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut rt = rt.clone();
                let id = id.clone();
                tokio::spawn(async move { criox_testkit::start_container(&mut rt, &id).await })
            })
            .collect();
        for s in starts {
            s.await.expect("StartContainer");
        }
        for id in &ids {
            let out = rt
                .exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["true".to_string()],
                    timeout: 10,
                })
                .await
                .expect("ExecSync")
                .into_inner();
            assert_eq!(out.exit_code, 0, "exec in {id}");
            rt.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: (round % 2) as i64,
            })
            .await
            .expect("StopContainer");
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("RemoveContainer");
        }
        stop_and_remove_pod(&mut rt, &pod_id).await;
    }
}

/// Lists pods and containers, and asks for each container's status, until told to stop.
async fn list(mut rt: Rt, stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let _ = rt.list_pod_sandbox(ListPodSandboxRequest::default()).await;
        let Ok(listed) = rt.list_containers(ListContainersRequest::default()).await else {
            continue;
        };
        for c in listed.into_inner().containers {
            let _ = rt
                .container_status(ContainerStatusRequest {
                    container_id: c.id,
                    verbose: true,
                })
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_leaves_the_daemon_working_directory_alone() {
    let daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    let pid = daemon.pid();
    let before = cwd_of(pid);
    let rt = daemon.runtime().await;

    // Watches the daemon's working directory all along: even a moment elsewhere is a
    // moment in which another thread's relative path resolves in a container's directory.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let before = before.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while sampling.load(Ordering::Relaxed) {
                if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd"))
                    && cwd != before
                {
                    seen.insert(cwd);
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            seen
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listers: Vec<_> = (0..LISTERS)
        .map(|_| tokio::spawn(list(rt.clone(), stop_rx.clone())))
        .collect();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|n| tokio::spawn(churn(rt.clone(), n, daemon.dir.join("logs"))))
        .collect();
    let mut failures = Vec::new();
    for c in churners {
        if let Err(e) = c.await {
            failures.push(e.to_string());
        }
    }
    let _ = stop_tx.send(true);
    for l in listers {
        let _ = tokio::time::timeout(Duration::from_secs(30), l).await;
    }

    sampling.store(false, Ordering::Relaxed);
    let elsewhere = sampler.join().expect("sampler");
    let after = cwd_of(pid);
    assert_eq!(
        after, before,
        "the daemon's working directory moved (churn failures: {failures:?})"
    );
    assert!(
        elsewhere.is_empty(),
        "the daemon's working directory was elsewhere during the churn: {elsewhere:?}"
    );
    assert!(failures.is_empty(), "churn failed: {failures:?}");

    // And the daemon still creates containers.
    let mut rt = rt;
    let pod = host_pod("aftercwd", &daemon.dir.join("logs"));
    let pod_id = run_pod(&mut rt, pod.clone()).await;
    let config = criox_testkit::busybox_container("after", &["sleep", "3600"]);
    let id = criox_testkit::run_container(&mut rt, &pod_id, &pod, config).await;
    assert!(!id.is_empty());
    stop_and_remove_pod(&mut rt, &pod_id).await;
}
