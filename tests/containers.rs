//! Containers through the CRI, as the kubelet drives them: pull an image from the loopback
//! registry, run a pod, create, start, exec, log, stop and remove containers, and survive
//! a daemon restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::pods::{
    TestNetwork, host_network_pod, pod_config, run_pod, run_pod_on, stop_and_remove_pod,
};
use criox_testkit::{container_status, daemon_with_busybox, exec_url, wait_exited};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

/// The embedded runtime (the default handler) and runc: the lifecycle tests run on both.
const EMBEDDED: &str = "";
const RUNC: &str = "runc";

async fn exec(rt: &mut Rt, id: &str, cmd: &[&str]) -> ExecSyncResponse {
    rt.exec_sync(ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 10,
    })
    .await
    .expect("ExecSync")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_from_a_pulled_image_and_reports_its_exit_embedded() {
    a_container_runs_from_a_pulled_image_and_reports_its_exit(EMBEDDED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_from_a_pulled_image_and_reports_its_exit_runc() {
    a_container_runs_from_a_pulled_image_and_reports_its_exit(RUNC).await;
}

async fn a_container_runs_from_a_pulled_image_and_reports_its_exit(handler: &str) {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = daemon.dir.join("logs");
    let pod_config = host_network_pod("exit", &logs);
    let pod = run_pod_on(&mut rt, pod_config.clone(), handler).await;

    let mut config = criox_testkit::busybox_container(
        "job",
        &["sh", "-c", "echo hello; echo oops >&2; printf part; exit 3"],
    );
    config.envs = vec![KeyValue {
        key: "GREETING".to_string(),
        value: b"hi".to_vec(),
    }];
    let id = criox_testkit::create_container(&mut rt, &pod, &pod_config, config).await;
    let created = container_status(&mut rt, &id).await;
    assert_eq!(created.state, ContainerState::ContainerCreated as i32);
    // The pod's handler chose the runtime that holds the container's state.
    let runtime = if handler.is_empty() {
        "embedded"
    } else {
        handler
    };
    assert!(
        daemon.state.join("r").join(runtime).join(&id).exists(),
        "container {id} is not in the {runtime} runtime's state"
    );
    criox_testkit::start_container(&mut rt, &id).await;
    let exited = wait_exited(&mut rt, &id).await;
    assert_eq!(exited.exit_code, 3);
    assert_eq!(exited.reason, "Error");
    assert!(exited.finished_at >= exited.started_at && exited.started_at > 0);
    assert_eq!(exited.image.unwrap().image, criox_testkit::busybox_image());

    let log = std::fs::read_to_string(logs.join("job.log")).unwrap();
    assert!(log.contains(" stdout F hello\n"), "{log}");
    assert!(log.contains(" stderr F oops\n"), "{log}");
    assert!(log.contains(" stdout P part\n"), "{log}");

    // ctl sees the same container, by a prefix of its id.
    let out = daemon.ctl(&["ps", "-a", "-q"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // The state filter, by its short and long names, as crictl users type it.
    let out = daemon.ctl(&["ps", "-s", "exited", "-q"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id),
        "ps -s exited: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = daemon.ctl(&["ps", "--container-state", "running", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = daemon.ctl(&["logs", &id[..12]]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\npart");

    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let err = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_stop_and_the_image_entrypoint_rules_embedded() {
    exec_sync_stop_and_the_image_entrypoint_rules(EMBEDDED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_stop_and_the_image_entrypoint_rules_runc() {
    exec_sync_stop_and_the_image_entrypoint_rules(RUNC).await;
}

async fn exec_sync_stop_and_the_image_entrypoint_rules(handler: &str) {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let pod_config = host_network_pod("exec", &daemon.dir.join("logs"));
    let pod = run_pod_on(&mut rt, pod_config.clone(), handler).await;
    // args only: the image's Cmd is replaced, its Entrypoint (none) kept.
    let mut config = criox_testkit::busybox_container("server", &[]);
    config.args = vec![
        "sh".to_string(),
        "-c".to_string(),
        "trap '' TERM; while :; do sleep 1; done".to_string(),
    ];
    config.working_dir = "/tmp".to_string();
    let id = criox_testkit::create_container(&mut rt, &pod, &pod_config, config).await;
    criox_testkit::start_container(&mut rt, &id).await;

    let out = exec(
        &mut rt,
        &id,
        &["sh", "-c", "pwd; echo $HOME; id -u; exit 4"],
    )
    .await;
    assert_eq!(out.exit_code, 4);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp\n/root\n0\n");

    let err = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".to_string(), "60".to_string()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");

    // The process ignores SIGTERM: stop must kill it after the timeout.
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let stopped = container_status(&mut rt, &id).await;
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 137);

    // Exec into a stopped container is refused.
    let err = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["true".to_string()],
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Removing the pod removes its containers.
    stop_and_remove_pod(&mut rt, &pod).await;
    let left = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty(), "{left:?}");
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_in_a_bridged_pod_share_localhost_embedded() {
    two_containers_in_a_bridged_pod_share_localhost(EMBEDDED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_in_a_bridged_pod_share_localhost_runc() {
    two_containers_in_a_bridged_pod_share_localhost(RUNC).await;
}

async fn two_containers_in_a_bridged_pod_share_localhost(handler: &str) {
    let network = TestNetwork::new(Path::new("/tmp"));
    let daemon = daemon_with_busybox().await;
    network.install(&daemon.cni_dir);
    let mut rt = daemon.runtime().await;
    let mut pod_config = pod_config("talk", &criox_testkit::unique("uid"));
    pod_config.log_directory = daemon.dir.join("logs").display().to_string();
    let pod = run_pod_on(&mut rt, pod_config.clone(), handler).await;

    let server = criox_testkit::create_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container(
            "server",
            &[
                "sh",
                "-c",
                "echo pong > /tmp/index.html; httpd -f -p 127.0.0.1:8080 -h /tmp",
            ],
        ),
    )
    .await;
    criox_testkit::start_container(&mut rt, &server).await;
    let client = criox_testkit::create_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container("client", &["sleep", "60"]),
    )
    .await;
    criox_testkit::start_container(&mut rt, &client).await;

    let mut answer = String::new();
    for _ in 0..100 {
        let out = exec(
            &mut rt,
            &client,
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
        )
        .await;
        answer = String::from_utf8_lossy(&out.stdout).to_string();
        if out.exit_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer, "pong\n");
    // The pod's hostname, from the pod's UTS namespace.
    let out = exec(&mut rt, &client, &["hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "talk\n");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    for id in [&server, &client] {
        assert_eq!(
            container_status(&mut rt, id).await.state,
            ContainerState::ContainerExited as i32
        );
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
    assert!(
        network.allocations().is_empty(),
        "IP allocations left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_daemon_crash_and_exits_while_it_was_down_are_seen_embedded() {
    containers_survive_a_daemon_crash_and_exits_while_it_was_down_are_seen(EMBEDDED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_daemon_crash_and_exits_while_it_was_down_are_seen_runc() {
    containers_survive_a_daemon_crash_and_exits_while_it_was_down_are_seen(RUNC).await;
}

async fn containers_survive_a_daemon_crash_and_exits_while_it_was_down_are_seen(handler: &str) {
    let mut daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = daemon.dir.join("logs");
    let pod_config = host_network_pod("restart", &logs);
    let pod = run_pod_on(&mut rt, pod_config.clone(), handler).await;
    let long = criox_testkit::create_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container(
            "long",
            &["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
        ),
    )
    .await;
    criox_testkit::start_container(&mut rt, &long).await;
    let short = criox_testkit::create_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container("short", &["sh", "-c", "sleep 1; exit 5"]),
    )
    .await;
    criox_testkit::start_container(&mut rt, &short).await;

    daemon.kill();
    // The short container exits while no daemon runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log_size = std::fs::metadata(logs.join("long.log")).unwrap().len();
    daemon.spawn().await;
    let mut rt = daemon.runtime().await;

    assert_eq!(
        container_status(&mut rt, &long).await.state,
        ContainerState::ContainerRunning as i32
    );
    let short_status = container_status(&mut rt, &short).await;
    assert_eq!(short_status.state, ContainerState::ContainerExited as i32);
    assert_eq!(short_status.exit_code, 5);
    // Logs kept flowing through the restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(std::fs::metadata(logs.join("long.log")).unwrap().len() > log_size);

    rt.stop_container(StopContainerRequest {
        container_id: long.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    assert_eq!(
        container_status(&mut rt, &long).await.state,
        ContainerState::ContainerExited as i32
    );
    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
}

/// A runtime handler whose `create` stalls, writing its pid to `stall.pid` in `dir`, and
/// which hands every other command to runc.
fn stalling_runtime(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let pid_file = dir.join("stall.pid");
    let path = dir.join("stall-runtime");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = create ]; then echo $$ > {}; exec sleep 60; fi\ndone\nexec /usr/sbin/runc \"$@\"\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, pid_file)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_half_made_when_the_daemon_crashed_is_cleaned_at_start() {
    let scripts = tempfile::tempdir().unwrap();
    let (runtime, pid_file) = stalling_runtime(scripts.path());
    let mut daemon = criox_testkit::daemon_with_image(
        &criox_testkit::busybox_image(),
        &format!(
            "[runtime.handlers.stall]\npath = {:?}\n",
            runtime.display().to_string()
        ),
    )
    .await;
    let mut rt = daemon.runtime().await;
    let logs = daemon.dir.join("logs");
    let pod_config = host_network_pod("half", &logs);
    let pod = run_pod_on(&mut rt, pod_config.clone(), "stall").await;
    let call = {
        let mut rt = rt.clone();
        let (pod, pod_config) = (pod.clone(), pod_config.clone());
        tokio::spawn(async move {
            rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(criox_testkit::busybox_container("half", &["sleep", "60"])),
                sandbox_config: Some(pod_config),
            })
            .await
        })
    };
    let stalled = criox_testkit::wait_for_pid_file(&pid_file)
        .await
        .expect("the runtime was asked to create");
    // Half made: a record, a bundle and its root filesystem mount.
    let bundles = daemon.root.join("containers");
    let records = daemon.root.join("store/containers");
    assert_eq!(entries(&bundles).len(), 1);
    assert_eq!(entries(&records).len(), 1);
    assert!(
        criox_testkit::mounts_below(&bundles).len() == 1,
        "{:?}",
        criox_testkit::mounts_below(&bundles)
    );

    daemon.kill();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stalled),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(call.await.unwrap().is_err());
    // The monitor sees its runtime fail and leaves by itself.
    for _ in 0..500 {
        if criox_testkit::processes_naming(&daemon.state).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        criox_testkit::processes_naming(&daemon.state),
        Vec::<i32>::new()
    );
    // What a power loss leaves of a container whose record was never flushed.
    let lost = bundles.join("0".repeat(64));
    std::fs::create_dir_all(lost.join("upper/tmp")).unwrap();
    std::fs::write(lost.join("upper/tmp/written"), "data").unwrap();

    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    let listed = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(entries(&bundles), Vec::<PathBuf>::new());
    assert_eq!(entries(&records), Vec::<PathBuf>::new());
    assert_eq!(criox_testkit::mounts_below(&bundles), Vec::<PathBuf>::new());
    assert!(!logs.join("half.log").exists());
    stop_and_remove_pod(&mut rt, &pod).await;
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_container_requests_name_the_field_and_leave_nothing() {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let pod_config = host_network_pod("bad", &daemon.dir.join("logs"));
    let pod = run_pod(&mut rt, pod_config.clone()).await;
    let cases: Vec<(ContainerConfig, &str, tonic::Code)> = vec![
        (
            {
                let mut c = criox_testkit::busybox_container("a", &["true"]);
                c.log_path = "../../etc/x.log".to_string();
                c
            },
            "log_path",
            tonic::Code::InvalidArgument,
        ),
        (
            {
                let mut c = criox_testkit::busybox_container("b", &["true"]);
                c.image = Some(ImageSpec {
                    image: "127.0.0.1:1/never/pulled:latest".to_string(),
                    ..Default::default()
                });
                c
            },
            "never/pulled",
            tonic::Code::NotFound,
        ),
        (
            {
                let mut c = criox_testkit::busybox_container("c", &["true"]);
                c.mounts = vec![Mount {
                    container_path: "relative/path".to_string(),
                    host_path: "/tmp".to_string(),
                    ..Default::default()
                }];
                c
            },
            "container_path",
            tonic::Code::InvalidArgument,
        ),
        (
            {
                let mut c = criox_testkit::busybox_container("d", &["true"]);
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        memory_limit_in_bytes: -5,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                c
            },
            "memory_limit_in_bytes",
            tonic::Code::InvalidArgument,
        ),
    ];
    for (config, names, code) in cases {
        let err = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(names), "{names}: {}", err.message());
    }
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: "no-such-pod".to_string(),
            config: Some(criox_testkit::busybox_container("e", &["true"])),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let first = criox_testkit::create_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container("twin", &["sleep", "60"]),
    )
    .await;
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(criox_testkit::busybox_container("twin", &["sleep", "60"])),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains(&first), "{}", err.message());

    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    let bundles: Vec<PathBuf> = std::fs::read_dir(daemon.root.join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(bundles.is_empty(), "{bundles:?}");
    assert!(
        criox_testkit::mounts_below(&daemon.dir).is_empty(),
        "mounts left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_exec_and_attach_reach_the_container() {
    use criox_testkit::streaming::client;
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let pod_config = host_network_pod("stream", &daemon.dir.join("logs"));
    let pod = run_pod(&mut rt, pod_config.clone()).await;
    let mut config = criox_testkit::busybox_container(
        "shell",
        &["sh", "-c", "while read line; do echo got:$line; done"],
    );
    config.stdin = true;
    let id = criox_testkit::create_container(&mut rt, &pod, &pod_config, config).await;
    criox_testkit::start_container(&mut rt, &id).await;

    // Exec over SPDY and WebSocket: output, stderr kept apart, stdin, exit codes.
    for proto in ["spdy", "ws"] {
        let url = exec_url(
            &mut rt,
            &id,
            &["sh", "-c", "cat; echo err >&2; exit 3"],
            true,
            false,
        )
        .await;
        let out = client(
            &[
                "exec", "-proto", proto, "-url", &url, "-stdin", "-stdout", "-stderr",
            ],
            b"fed\n",
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{proto}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "fed\n", "{proto}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err"),
            "{proto}"
        );
    }

    // A terminal: the size the client asked for, seen inside.
    let url = exec_url(&mut rt, &id, &["stty", "size"], false, true).await;
    let out = client(
        &["exec", "-url", &url, "-stdout", "-tty", "-resize", "100x30"],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("30 100"),
        "{:?}",
        out
    );

    // Attach: stdin reaches the container's process, its output comes back.
    let url = rt
        .attach(AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let attached = std::process::Command::new(criox_testkit::streaming::streamclient())
        .args([
            "attach", "-proto", "ws", "-url", &url, "-stdin", "-stdout", "-stderr",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached_stdin = attached.stdin.as_ref().unwrap();
    use std::io::Write;
    attached_stdin.write_all(b"ping\n").unwrap();
    // The container's own log shows the line went in, whatever the attach prints.
    let log = daemon.dir.join("logs/shell.log");
    let mut seen = false;
    for _ in 0..200 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("got:ping")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if !seen {
        let out = criox_testkit::streaming::wait_output(attached, Duration::from_secs(1));
        panic!("attached stdin did not reach the container: {out:?}");
    }
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let out = criox_testkit::streaming::wait_output(attached, Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got:ping"),
        "{out:?}"
    );

    // Exec into a stopped container is refused when the URL is asked for.
    let err = rt
        .exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["true".to_string()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}

/// StopContainer is idempotent: a container that never existed or was already removed
/// is stopped, as the kubelet expects when it retries; other calls still say NotFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_container_that_is_gone_succeeds() {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let stop = |id: String| StopContainerRequest {
        container_id: id,
        timeout: 0,
    };
    rt.stop_container(stop("no-such-container".to_string()))
        .await
        .expect("stopping an unknown container");

    let logs = tempfile::tempdir().unwrap();
    let pod_config = host_network_pod("gone", logs.path());
    let pod = run_pod_on(&mut rt, pod_config.clone(), EMBEDDED).await;
    let id = criox_testkit::run_container(
        &mut rt,
        &pod,
        &pod_config,
        criox_testkit::busybox_container("gone", &["sleep", "60"]),
    )
    .await;
    rt.stop_container(stop(id.clone())).await.expect("stop");
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("remove");
    rt.stop_container(stop(id.clone()))
        .await
        .expect("stopping a removed container");
    let err = rt
        .container_status(ContainerStatusRequest {
            container_id: id,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    stop_and_remove_pod(&mut rt, &pod).await;
}

/// An image volume (a mount naming an image) shows the image's files read-only, or one
/// directory of it with image_sub_path; ContainerStatus names the image it came from, and
/// removing the container unmounts it. Bad requests name the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_mounts_the_image_read_only() {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let image_id = daemon
        .images()
        .await
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: criox_testkit::busybox_image(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .expect("the busybox image")
        .id;
    let volume = |path: &str, sub_path: &str, readonly: bool| Mount {
        container_path: path.to_string(),
        readonly,
        image: Some(ImageSpec {
            image: image_id.clone(),
            ..Default::default()
        }),
        image_sub_path: sub_path.to_string(),
        ..Default::default()
    };
    let logs = tempfile::tempdir().unwrap();
    let pod_config = host_network_pod("volume", logs.path());
    let pod = run_pod_on(&mut rt, pod_config.clone(), EMBEDDED).await;

    for (mount, field) in [
        (volume("/vol", "", false), "mounts[0].readonly"),
        (
            volume("/vol", "no/such/dir", true),
            "mounts[0].image_sub_path",
        ),
        (volume("/vol", "../..", true), "mounts[0].image_sub_path"),
    ] {
        let mut config = criox_testkit::busybox_container("bad", &["sleep", "60"]);
        config.mounts = vec![mount];
        let err = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }

    let mut config = criox_testkit::busybox_container("volume", &["sleep", "600"]);
    config.mounts = vec![volume("/vol", "", true), volume("/sub", "etc", true)];
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;
    let out = exec(&mut rt, &id, &["/vol/bin/busybox", "cat", "/sub/passwd"]).await;
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("root:x:0:0"));
    assert_eq!(
        exec(&mut rt, &id, &["test", "-e", "/sub/etc"])
            .await
            .exit_code,
        1
    );
    let out = exec(&mut rt, &id, &["touch", "/vol/written"]).await;
    assert_ne!(out.exit_code, 0, "an image volume took a write");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"));

    let mounts = container_status(&mut rt, &id).await.mounts;
    let vol = mounts.iter().find(|m| m.container_path == "/vol").unwrap();
    assert!(vol.readonly);
    assert_eq!(
        vol.image.as_ref().map(|i| i.image_ref.as_str()),
        Some(image_id.as_str())
    );

    let bundle_mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&id) && l.contains("image-volumes"))
            .count()
    };
    assert_eq!(bundle_mounts(), 2);
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("remove");
    assert_eq!(bundle_mounts(), 0, "image volumes left mounted");
    stop_and_remove_pod(&mut rt, &pod).await;
}

/// Status says which handlers apply recursive read-only mounts (both do on kernels with
/// mount_setattr), and such a mount makes the host directory's submounts read-only too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_read_only_mounts_are_advertised_and_reach_submounts() {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let handlers = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .runtime_handlers;
    for name in ["", "embedded", "runc"] {
        let handler = handlers.iter().find(|h| h.name == name).expect(name);
        let features = handler.features.as_ref().expect("features");
        assert!(features.recursive_read_only_mounts, "{name}: {handlers:?}");
    }

    // A host directory with a tmpfs mounted below it.
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(sub.clone());

    for handler in [EMBEDDED, RUNC] {
        let logs = tempfile::tempdir().unwrap();
        let pod_config = host_network_pod("rro", logs.path());
        let pod = run_pod_on(&mut rt, pod_config.clone(), handler).await;
        let mut config = criox_testkit::busybox_container("rro", &["sleep", "600"]);
        config.mounts = vec![Mount {
            container_path: "/data".to_string(),
            host_path: host.path().display().to_string(),
            readonly: true,
            recursive_read_only: true,
            ..Default::default()
        }];
        let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;
        let out = exec(&mut rt, &id, &["touch", "/data/sub/written"]).await;
        assert_ne!(out.exit_code, 0, "{handler}: the submount took a write");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only"),
            "{handler}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop_and_remove_pod(&mut rt, &pod).await;
    }
}

/// ContainerStatus.user tells the identity the container's process got, supplemental
/// groups included, and Status says so (the SupplementalGroupsPolicy feature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_status_reports_the_process_user() {
    let daemon = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let features = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .features
        .expect("runtime features");
    assert!(features.supplemental_groups_policy);

    let logs = tempfile::tempdir().unwrap();
    let pod_config = host_network_pod("user", logs.path());
    let pod = run_pod_on(&mut rt, pod_config.clone(), EMBEDDED).await;
    let mut config = criox_testkit::busybox_container("user", &["sleep", "600"]);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 3000 }),
            supplemental_groups: vec![4000],
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, config).await;
    let out = exec(&mut rt, &id, &["id", "-G"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3000 4000");
    let user = container_status(&mut rt, &id).await.user.expect("user");
    let mut linux = user.linux.expect("linux user");
    linux.supplemental_groups.sort();
    assert_eq!(
        (linux.uid, linux.gid, linux.supplemental_groups),
        (1000, 3000, vec![3000, 4000])
    );
    stop_and_remove_pod(&mut rt, &pod).await;
}
