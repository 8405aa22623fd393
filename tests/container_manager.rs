//! The container manager over the real embedded runtime and real overlay mounts, with the
//! busybox root filesystem from the test fixtures as the image's one layer. Pods here use
//! the node's network, so no CNI is involved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criox::container::{
    ContainerError, ContainerImage, ContainerManager, ContainerPod, ContainerRecord, EventKind,
    Filter, NodeFacts, PodSpecContext, State,
};
use criox_proto::v1;
use criox_runtime::Runtime;
use criox_testkit::{busybox_rootfs, cgroup_dirs, criox_bin, mounts_below, unmount_below};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

/// A manager with its root and state below `dir` and the embedded runtime as its one
/// handler.
async fn open_manager(dir: &Path) -> Arc<ContainerManager> {
    let state = dir.join("s");
    let runtimes = HashMap::from([(
        "embedded".to_string(),
        Runtime::embedded(state.join("r/embedded")).with_exe(criox_bin()),
    )]);
    ContainerManager::open(&dir.join("root"), &state, runtimes, NodeFacts::detect())
        .await
        .unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    manager: Arc<ContainerManager>,
    pod: ContainerPod,
    cgroup_parent: String,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::Builder::new().prefix("cx").tempdir().unwrap();
        let manager = open_manager(dir.path()).await;
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let cgroup_parent = format!("/criox-test/{name}");
        let pod = ContainerPod {
            context: PodSpecContext {
                id: format!("pod-{name}"),
                name: "pod".to_string(),
                uid: name.clone(),
                hostname: "pod".to_string(),
                cgroup_parent: cgroup_parent.clone(),
                runtime_handler: "embedded".to_string(),
                ..criox_testkit::spec::pod_context()
            },
            log_directory: Some(dir.path().join("logs")),
        };
        Setup {
            dir,
            manager,
            pod,
            cgroup_parent,
        }
    }

    fn image(&self) -> ContainerImage {
        let config: ImageConfiguration = ImageConfigurationBuilder::default()
            .config(
                ConfigBuilder::default()
                    .cmd(vec!["sh".to_string()])
                    .env(vec!["PATH=/bin".to_string(), "FROM_IMAGE=1".to_string()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        ContainerImage {
            name: "busybox:test".to_string(),
            id: "sha256:test".to_string(),
            digest_ref: "busybox@sha256:test".to_string(),
            config,
            layers: vec![busybox_rootfs()],
            volumes: Vec::new(),
        }
    }

    fn config(&self, name: &str, command: &[&str]) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    async fn create(&self, name: &str, command: &[&str]) -> Result<String, ContainerError> {
        self.manager
            .create(&self.pod, self.image(), self.config(name, command))
            .await
    }

    fn bundles(&self) -> PathBuf {
        self.dir.path().join("root/containers")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Whatever a failing test left: its mounts and cgroups.
        unmount_below(self.dir.path());
        for dir in cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn wait_exited(manager: &ContainerManager, id: &str) -> ContainerRecord {
    for _ in 0..500 {
        let record = manager.get(id).unwrap();
        if record.state == State::Exited {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("container {id} did not exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_logs_exits_and_leaves_nothing() {
    let setup = Setup::new().await;
    let mut events = setup.manager.events().subscribe();
    let id = setup
        .create(
            "hello",
            &[
                "sh",
                "-c",
                "echo out; echo err >&2; echo $FROM_IMAGE $HOME; exit 3",
            ],
        )
        .await
        .unwrap();
    let record = setup.manager.get(&id[..12]).unwrap();
    assert_eq!(record.state, State::Created);
    assert!(record.pid > 0);

    setup.manager.start(&id).await.unwrap();
    let record = wait_exited(&setup.manager, &id).await;
    let exit = record.exit.unwrap();
    assert_eq!(exit.code, 3);
    assert_eq!(exit.reason(), "Error");

    let log = read_log(&setup.dir.path().join("logs/hello/0.log"));
    assert!(log.contains(" stdout F out\n"), "{log}");
    assert!(log.contains(" stderr F err\n"), "{log}");
    assert!(log.contains(" stdout F 1 /root\n"), "{log}");

    let kinds: Vec<EventKind> = (0..3).map(|_| events.try_recv().unwrap().kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Created, EventKind::Started, EventKind::Stopped]
    );

    setup.manager.remove(&id).await.unwrap();
    assert_eq!(events.try_recv().unwrap().kind, EventKind::Deleted);
    assert!(setup.manager.get(&id).is_err());
    assert_eq!(std::fs::read_dir(setup.bundles()).unwrap().count(), 0);
    assert_eq!(mounts_below(setup.dir.path()), Vec::<PathBuf>::new());
    // Removing again, or an unknown id, succeeds.
    setup.manager.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_process_ignoring_sigterm_and_exec_sync_runs_inside() {
    let setup = Setup::new().await;
    let id = setup
        .create(
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 1; done",
            ],
        )
        .await
        .unwrap();
    setup.manager.start(&id).await.unwrap();

    let out = setup
        .manager
        .exec_sync(
            &id,
            &[
                "sh".to_string(),
                "-c".to_string(),
                "echo $FROM_IMAGE; hostname; exit 7".to_string(),
            ],
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 7);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\npod\n");

    let err = setup
        .manager
        .exec_sync(
            &id,
            &["sleep".to_string(), "30".to_string()],
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerError::ExecTimeout { .. }), "{err}");

    setup
        .manager
        .stop(&id, Duration::from_millis(300))
        .await
        .unwrap();
    let record = setup.manager.get(&id).unwrap();
    assert_eq!(record.state, State::Exited);
    assert_eq!(record.exit.unwrap().code, 137);

    let running = Filter {
        state: Some(State::Running),
        ..Default::default()
    };
    assert!(setup.manager.list(&running).is_empty());
    setup.manager.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_leave_nothing() {
    let setup = Setup::new().await;
    let mut config = setup.config("bad", &["true"]);
    config.log_path = "../escape.log".to_string();
    let err = setup
        .manager
        .create(&setup.pod, setup.image(), config)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("log_path:"), "{err}");

    let mut config = setup.config("nouser", &["true"]);
    config.linux = Some(v1::LinuxContainerConfig {
        security_context: Some(v1::LinuxContainerSecurityContext {
            run_as_username: "nobody-here".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = setup
        .manager
        .create(&setup.pod, setup.image(), config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run_as_username"), "{err}");

    // A name held by a live container is refused with the holder's id.
    let first = setup.create("dup", &["true"]).await.unwrap();
    let err = setup.create("dup", &["true"]).await.unwrap_err();
    assert!(err.to_string().contains(&first), "{err}");
    setup.manager.remove(&first).await.unwrap();

    assert!(setup.manager.list(&Filter::default()).is_empty());
    let bundles = std::fs::read_dir(setup.bundles())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(bundles, 0, "bundle directories left behind");
    assert_eq!(mounts_below(setup.dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_manager_finds_running_and_exited_containers() {
    let setup = Setup::new().await;
    let long = setup.create("long", &["sleep", "60"]).await.unwrap();
    let short = setup
        .create("short", &["sh", "-c", "exit 0"])
        .await
        .unwrap();
    setup.manager.start(&long).await.unwrap();
    setup.manager.start(&short).await.unwrap();
    wait_exited(&setup.manager, &short).await;

    // As after a daemon restart: a fresh manager over the same directories.
    let again = open_manager(setup.dir.path()).await;
    assert_eq!(again.get(&long).unwrap().state, State::Running);
    let short_record = again.get(&short).unwrap();
    assert_eq!(short_record.state, State::Exited);
    assert_eq!(short_record.exit.unwrap().reason(), "Completed");

    again.stop(&long, Duration::ZERO).await.unwrap();
    assert_eq!(again.get(&long).unwrap().state, State::Exited);
    again.remove(&long).await.unwrap();
    again.remove(&short).await.unwrap();
    drop(setup);
}
