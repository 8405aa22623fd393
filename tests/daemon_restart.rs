//! A daemon that is stopped with SIGTERM, as a service manager stops it for an upgrade,
//! leaves its containers alone: running ones go on running, a created one stays created,
//! and the next daemon takes all of them over.

use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{host_network_pod, run_pod_on, stop_and_remove_pod};
use criox_testkit::{Daemon, container_status, daemon_with_busybox};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

async fn listed_state(rt: &mut Rt, id: &str) -> Option<i32> {
    criox_testkit::list_containers_where(
        rt,
        ContainerFilter {
            id: id.to_string(),
            ..Default::default()
        },
    )
    .await
    .first()
    .map(|c| c.state)
}

async fn exec_out(rt: &mut Rt, id: &str, cmd: &[&str]) -> String {
    let out = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        out.exit_code,
        0,
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Host processes running `sleep SECS`.
fn sleepers(secs: &str) -> usize {
    let wanted = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

/// Stops the daemon with SIGTERM and checks that it exits 0 within a few seconds.
fn sigterm(daemon: &mut Daemon) {
    let began = Instant::now();
    let exit = daemon.stop();
    let took = began.elapsed();
    assert!(
        exit.success(),
        "daemon exited with {exit}:\n{}",
        daemon.log()
    );
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} with running containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_running_containers_running_for_the_next_daemon() {
    let mut daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = tempfile::tempdir().unwrap();
    let mut running = Vec::new();
    let mut pods = Vec::new();
    for handler in ["", "runc"] {
        let config = host_network_pod(&format!("term{}", handler.len()), logs.path());
        let pod = run_pod_on(&mut rt, config.clone(), handler).await;
        pods.push(pod.clone());
        // A sleep of its own length, to find the process on the host.
        let secs = format!(
            "{}",
            100_000 + std::process::id() % 100_000 * 10 + handler.len() as u32
        );
        let id = criox_testkit::run_container(
            &mut rt,
            &pod,
            &config,
            criox_testkit::busybox_container(
                &format!("ticker{}", handler.len()),
                &[
                    "sh",
                    "-c",
                    &format!("date +%s%N > /tmp/mark; exec sleep {secs}"),
                ],
            ),
        )
        .await;
        let mark = exec_out(&mut rt, &id, &["cat", "/tmp/mark"]).await;
        let started_at = container_status(&mut rt, &id).await.started_at;
        running.push((handler, id, mark, started_at, secs));
    }
    drop(rt);

    sigterm(&mut daemon);
    // With no daemon at all, the containers' processes go on.
    for (handler, id, _, _, secs) in &running {
        assert_eq!(
            sleepers(secs),
            1,
            "the process of container {id} (handler {handler:?}) did not outlive the daemon"
        );
    }

    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    for (handler, id, mark, started_at, secs) in &running {
        assert_eq!(
            listed_state(&mut rt, id).await,
            Some(ContainerState::ContainerRunning as i32),
            "handler {handler:?}"
        );
        let now = container_status(&mut rt, id).await;
        assert_eq!(
            (now.state, now.started_at),
            (ContainerState::ContainerRunning as i32, *started_at),
            "the container on handler {handler:?} was restarted"
        );
        // The same process, still reachable through the new daemon.
        assert_eq!(&exec_out(&mut rt, id, &["cat", "/tmp/mark"]).await, mark);
        assert_eq!(sleepers(secs), 1);
        assert_eq!(
            exec_out(&mut rt, id, &["sh", "-c", "kill -0 1 && echo up"]).await,
            "up\n"
        );
    }
    for pod in &pods {
        stop_and_remove_pod(&mut rt, pod).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_container_stays_created_across_a_restart_and_can_then_start() {
    let mut daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = tempfile::tempdir().unwrap();
    let mut created = Vec::new();
    let mut pods = Vec::new();
    for handler in ["", "runc"] {
        let config = host_network_pod(&format!("made{}", handler.len()), logs.path());
        let pod = run_pod_on(&mut rt, config.clone(), handler).await;
        pods.push(pod.clone());
        let id = criox_testkit::create_container(
            &mut rt,
            &pod,
            &config,
            criox_testkit::busybox_container(
                &format!("later{}", handler.len()),
                &["sh", "-c", "echo started; exec sleep 600"],
            ),
        )
        .await;
        created.push((handler, id));
    }
    drop(rt);

    sigterm(&mut daemon);
    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    for (handler, id) in &created {
        assert_eq!(
            listed_state(&mut rt, id).await,
            Some(ContainerState::ContainerCreated as i32),
            "handler {handler:?}"
        );
        let before = container_status(&mut rt, id).await;
        assert_eq!(before.started_at, 0, "handler {handler:?}");

        criox_testkit::start_container(&mut rt, id).await;
        let after = container_status(&mut rt, id).await;
        assert_eq!(
            after.state,
            ContainerState::ContainerRunning as i32,
            "handler {handler:?}"
        );
        assert!(after.started_at > 0);
        assert_eq!(
            exec_out(&mut rt, id, &["sh", "-c", "kill -0 1 && echo up"]).await,
            "up\n"
        );
        let mut log = String::new();
        for _ in 0..200 {
            log = std::fs::read_to_string(logs.path().join(format!("later{}.log", handler.len())))
                .unwrap_or_default();
            if log.contains("started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(log.contains("started"), "log of {id}: {log:?}");

        criox_testkit::stop_container(&mut rt, id, 1).await;
        criox_testkit::remove_container(&mut rt, id).await;
        assert_eq!(listed_state(&mut rt, id).await, None);
    }
    for pod in &pods {
        stop_and_remove_pod(&mut rt, pod).await;
    }
}
