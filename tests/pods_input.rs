//! Bad pod requests: each is refused naming the field, and nothing is left behind.

use criox_proto::v1::{LinuxPodSandboxConfig, PodSandboxConfig, PortMapping, RunPodSandboxRequest};
use criox_testkit::Daemon;
use criox_testkit::pods::*;
use criox_testkit::{cgroup_dirs, dir_entries, mounts_below};

async fn refused(
    rt: &mut criox_proto::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    config: Option<PodSandboxConfig>,
    handler: &str,
) -> tonic::Status {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config,
        runtime_handler: handler.to_string(),
    })
    .await
    .expect_err("pod should be refused")
}

fn assert_nothing_left(daemon: &Daemon) {
    daemon.assert_nothing_mounted();
    assert!(dir_entries(&daemon.state.join("pods")).is_empty());
    assert!(dir_entries(&daemon.root.join("pods")).is_empty());
    assert!(dir_entries(&daemon.root.join("network")).is_empty());
}

#[tokio::test]
async fn invalid_configs_are_refused_with_the_field_named() {
    let daemon = Daemon::start().await;
    let (_leftovers, net) = criox_testkit::pods::private_network(&daemon);
    let mut rt = daemon.runtime().await;
    let uid = criox_testkit::unique("ui");

    let cases: Vec<(PodSandboxConfig, &str, &str)> = vec![
        (
            PodSandboxConfig {
                metadata: None,
                ..pod_config("x", &uid)
            },
            "",
            "config.metadata",
        ),
        (
            PodSandboxConfig {
                hostname: "bad_host!".into(),
                ..pod_config("x", &uid)
            },
            "",
            "config.hostname",
        ),
        (
            PodSandboxConfig {
                log_directory: "relative/logs".into(),
                ..pod_config("x", &uid)
            },
            "",
            "config.log_directory",
        ),
        (
            PodSandboxConfig {
                log_directory: "/var/log/pods/../../etc".into(),
                ..pod_config("x", &uid)
            },
            "",
            "config.log_directory",
        ),
        (
            PodSandboxConfig {
                port_mappings: vec![PortMapping {
                    protocol: 7,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                }],
                ..pod_config("x", &uid)
            },
            "",
            "config.port_mappings[0].protocol",
        ),
        (
            PodSandboxConfig {
                linux: Some(LinuxPodSandboxConfig {
                    sysctls: labels(&[("vm.swappiness", "10")]),
                    ..LinuxPodSandboxConfig::default()
                }),
                ..pod_config("x", &uid)
            },
            "",
            "config.linux.sysctls[vm.swappiness]",
        ),
        (pod_config("x", &uid), "no-such-handler", "runtime_handler"),
    ];
    for (config, handler, field) in cases {
        let status = refused(&mut rt, Some(config), handler).await;
        criox_testkit::assert_invalid(&status, field);
    }
    let status = refused(&mut rt, None, "").await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_nothing_left(&daemon);
    assert!(net.allocations().is_empty());
}

#[tokio::test]
async fn a_failing_or_hanging_plugin_leaves_nothing_and_frees_the_name() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = tempfile::tempdir().unwrap();
    for (name, body) in [
        (
            "fail-plugin",
            "cat >/dev/null; echo '{\"code\":11,\"msg\":\"refusing on purpose\"}'; exit 1",
        ),
        ("hang-plugin", "exec sleep 60"),
    ] {
        let path = plugins.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let daemon = Daemon::builder()
        .drop_in(
            "10-plugins.toml",
            &format!(
                "[network]\ncni_plugin_timeout = 2\ncni_plugin_dirs = [{:?}, \"/usr/lib/cni\"]\n",
                plugins.path().display().to_string()
            ),
        )
        .start()
        .await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let net = TestNetwork::new(&daemon.dir);
    let mut rt = daemon.runtime().await;
    let uid = criox_testkit::unique("uf");
    // The bridge runs first and takes an address; the plugin after it fails or hangs,
    // and neither the address, the veth nor anything else may stay.
    for (plugin, expected) in [
        ("fail-plugin", "refusing on purpose"),
        ("hang-plugin", "did not finish within 2s"),
    ] {
        let mut list: serde_json::Value = serde_json::from_str(&net.conflist()).unwrap();
        list["plugins"][1] = serde_json::json!({"type": plugin});
        std::fs::write(daemon.cni_dir.join("10-test.conflist"), list.to_string()).unwrap();
        let status = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("flaky", &uid)),
                runtime_handler: String::new(),
            })
            .await
            .expect_err("plugin failure must fail the pod");
        assert!(
            status.message().contains(plugin) && status.message().contains(expected),
            "{status:?}"
        );
        assert_nothing_left(&daemon);
        assert!(net.allocations().is_empty(), "{:?}", net.allocations());
        assert_eq!(net.veths(), 0);
    }
    // The name is free again: the same pod runs once the network works.
    net.install(&daemon.cni_dir);
    let id = run_pod(&mut rt, pod_config("flaky", &uid)).await;
    let listed = criox_testkit::list_pods(&mut rt).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let dup = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("flaky", &uid)),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a live pod holds its name");
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    assert!(dup.message().contains(&id), "{dup:?}");
    rt.stop_pod_sandbox(criox_proto::v1::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(criox_proto::v1::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    assert_nothing_left(&daemon);
}

#[tokio::test]
async fn a_pod_half_made_when_the_daemon_crashed_is_cleaned_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let plugins = tempfile::tempdir().unwrap();
    let pid_file = plugins.path().join("stall.pid");
    let path = plugins.path().join("stall-plugin");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > {}; exec sleep 60; fi\necho '{{}}'\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = Daemon::builder()
        .drop_in(
            "10-plugins.toml",
            &format!(
                "[network]\ncni_plugin_dirs = [{:?}, \"/usr/lib/cni\"]\n",
                plugins.path().display().to_string()
            ),
        )
        .start()
        .await;
    let _leftovers = PodLeftovers::new(&daemon.root);
    let net = TestNetwork::new(&daemon.dir);
    let mut list: serde_json::Value = serde_json::from_str(&net.conflist()).unwrap();
    list["plugins"][1] = serde_json::json!({"type": "stall-plugin"});
    std::fs::write(daemon.cni_dir.join("10-test.conflist"), list.to_string()).unwrap();
    let mut rt = daemon.runtime().await;
    let uid = criox_testkit::unique("uh");
    let cgroup = format!("/criox-half-{uid}");
    let mut config = pod_config("half", &uid);
    config.linux = Some(LinuxPodSandboxConfig {
        cgroup_parent: format!("{cgroup}/pod"),
        ..LinuxPodSandboxConfig::default()
    });
    let call = tokio::spawn(async move {
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
    });
    // Wait until the pod is mid-way: namespaces pinned, address taken, plugin stalled.
    let stalled = criox_testkit::wait_for_pid_file(&pid_file)
        .await
        .expect("the plugin was called");
    assert!(!mounts_below(&daemon.dir).is_empty());
    assert_eq!(net.allocations().len(), 1);
    assert!(!cgroup_dirs(&cgroup).is_empty());
    daemon.kill();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stalled),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(call.await.unwrap().is_err());

    daemon.spawn().await;
    assert_nothing_left(&daemon);
    assert!(
        cgroup_dirs(&cgroup).is_empty(),
        "{:?}",
        cgroup_dirs(&cgroup)
    );
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    assert_eq!(net.veths(), 0);
    let listed = criox_testkit::list_pods(&mut daemon.runtime().await).await;
    assert!(listed.is_empty());
}
