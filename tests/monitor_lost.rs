//! A container whose monitor is killed (by the OOM killer or an operator) runs on: the
//! daemon reports it running, StopContainer stops it through its init (the stop signal,
//! then SIGKILL), its end is recorded with an unknown exit code, and RemoveContainer leaves
//! no cgroup and no mount behind. An init that ends by itself is seen too. Run as root.

use std::path::Path;
use std::time::{Duration, Instant};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{host_network_pod, run_pod_on, stop_and_remove_pod};
use criox_testkit::{cgroup_dirs, container_status, mounts_below, wait_exited};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

/// The embedded runtime (the default handler) and runc.
const EMBEDDED: &str = "";
const RUNC: &str = "runc";

/// What the host knows of a running container.
struct Running {
    id: String,
    init: i32,
    monitor: i32,
    cgroup: String,
}

async fn run(
    rt: &mut Rt,
    state: &Path,
    pod: &str,
    config: &PodSandboxConfig,
    name: &str,
    command: &[&str],
) -> Running {
    let c = criox_testkit::busybox_container(name, command);
    let id = criox_testkit::run_container(rt, pod, config, c).await;
    let info = criox_testkit::container_info(rt, &id).await;
    let init = info["pid"].as_i64().expect("the init's pid") as i32;
    let cgroup = info["cgroup"].as_str().expect("the cgroup").to_string();
    let monitor = criox_testkit::monitor_pid(state, &id);
    assert!(init > 0 && !cgroup_dirs(&cgroup).is_empty(), "{info}");
    Running {
        id,
        init,
        monitor,
        cgroup,
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, after) = s.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Kills the monitor and waits until the daemon has noticed: the container still runs and
/// its status says the monitor is lost.
async fn lose_monitor(rt: &mut Rt, c: &Running) {
    kill(Pid::from_raw(c.monitor), Signal::SIGKILL).expect("kill the monitor");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = container_status(rt, &c.id).await;
        assert_eq!(
            status.state,
            ContainerState::ContainerRunning as i32,
            "a container whose monitor died while it runs: {status:?}"
        );
        if status.reason == "MonitorLost" {
            assert!(status.message.contains("monitor"), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the lost monitor went unnoticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(alive(c.init), "the container's init died with its monitor");
}

async fn stop(rt: &mut Rt, id: &str, timeout: i64) -> Duration {
    let started = Instant::now();
    criox_testkit::stop_container(rt, id, timeout).await;
    started.elapsed()
}

async fn remove_and_check(rt: &mut Rt, daemon_dir: &Path, c: &Running) {
    let exited = wait_exited(rt, &c.id).await;
    assert_eq!(
        (exited.exit_code, exited.reason.as_str()),
        (255, "MonitorLost"),
        "{exited:?}"
    );
    assert!(!alive(c.init), "the init outlived its container");
    criox_testkit::remove_container(rt, &c.id).await;
    assert_eq!(cgroup_dirs(&c.cgroup), Vec::<std::path::PathBuf>::new());
    let mounts: Vec<_> = mounts_below(daemon_dir)
        .into_iter()
        .filter(|m| m.to_string_lossy().contains(&c.id))
        .collect();
    assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
}

async fn a_container_outlives_its_monitor(handler: &str) {
    let daemon = criox_testkit::daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let config = host_network_pod("orphans", &daemon.dir.join("logs"));
    let pod = run_pod_on(&mut rt, config.clone(), handler).await;

    // The stop signal reaches the init, which leaves at once.
    let polite = run(
        &mut rt,
        &daemon.state,
        &pod,
        &config,
        "polite",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.2; done",
        ],
    )
    .await;
    lose_monitor(&mut rt, &polite).await;
    let took = stop(&mut rt, &polite.id, 60).await;
    assert!(
        took < Duration::from_secs(30),
        "TERM went unheard: {took:?}"
    );
    remove_and_check(&mut rt, &daemon.dir, &polite).await;

    // A container's PID 1 ignores TERM: SIGKILL follows after the timeout.
    let stubborn = run(
        &mut rt,
        &daemon.state,
        &pod,
        &config,
        "stubborn",
        &["sleep", "600"],
    )
    .await;
    lose_monitor(&mut rt, &stubborn).await;
    let took = stop(&mut rt, &stubborn.id, 1).await;
    assert!(took >= Duration::from_secs(1), "no grace period: {took:?}");
    remove_and_check(&mut rt, &daemon.dir, &stubborn).await;

    // An init that ends by itself (here: killed from the host) is seen without a monitor.
    let alone = run(
        &mut rt,
        &daemon.state,
        &pod,
        &config,
        "alone",
        &["sleep", "600"],
    )
    .await;
    lose_monitor(&mut rt, &alone).await;
    kill(Pid::from_raw(alone.init), Signal::SIGKILL).expect("kill the init");
    remove_and_check(&mut rt, &daemon.dir, &alone).await;

    stop_and_remove_pod(&mut rt, &pod).await;
    daemon.assert_nothing_mounted();
}

criox_testkit::on_both_runtimes!(
    a_container_outlives_its_monitor =>
        a_container_outlives_its_monitor(EMBEDDED; RUNC)
);
