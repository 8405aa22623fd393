//! A container's security context through the CRI, as a user sees it from inside: users
//! and groups, a read-only root, capabilities, seccomp profiles, privileged containers,
//! no_new_privs, masked and read-only paths, and sysctls. Every case runs on the embedded
//! backend and on runc as a runtime handler.

use std::path::Path;

use criox_proto::v1::security_profile::ProfileType;
use criox_proto::v1::*;
use criox_testkit::node::{
    Backend, Node, cap_eff, caps, container, own_bounding_set, seccomp, secured, sleeper,
};

/// Docker's and containerd's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE,
/// SETFCAP.
const DEFAULT_CAPS: u64 = 0xa80425fb;

fn user(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> LinuxContainerSecurityContext {
    let mut sc = LinuxContainerSecurityContext::default();
    f(&mut sc);
    sc
}

async fn users(backend: Backend) {
    let mut node = Node::start(backend).await;
    let config_uid = criox_testkit::fixtures()["CRIOX_TEST_IMAGE_CONFIG_UID"].clone();
    node.daemon
        .images()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: config_uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull the image whose User is 1000:1000");
    let (pod, pod_config) = node.pod("users").await;

    // Refused users first, while the pod holds no container: nothing may be left.
    let mounts_before = criox_testkit::mounts_below(&node.daemon.dir);
    let refused = [
        (
            user(|s| s.run_as_username = "nosuch".into()),
            "linux.security_context.run_as_username",
        ),
        (
            user(|s| s.run_as_group = Some(Int64Value { value: 5 })),
            "linux.security_context.run_as_group",
        ),
        (
            user(|s| s.run_as_user = Some(Int64Value { value: -1 })),
            "linux.security_context.run_as_user",
        ),
        (
            user(|s| {
                s.run_as_user = Some(Int64Value { value: 0 });
                s.supplemental_groups = vec![-7];
            }),
            "linux.security_context.supplemental_groups",
        ),
    ];
    for (sc, field) in refused {
        let err = node
            .create(&pod, &pod_config, secured("refused", sc))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert!(node.containers().await.is_empty());
    let bundles = criox_testkit::dir_entries(&node.daemon.root.join("containers"));
    assert!(bundles.is_empty(), "{bundles:?}");
    assert_eq!(criox_testkit::mounts_below(&node.daemon.dir), mounts_before);

    let from_image = |name: &str, sc: LinuxContainerSecurityContext| {
        let mut c = secured(name, sc);
        c.image.as_mut().unwrap().image = config_uid.clone();
        c
    };
    let cases = [
        (
            secured("root", user(|_| {})),
            "uid=0(root) gid=0(root) groups=0(root)",
        ),
        // A uid the image's passwd lacks gets group 0, as with every CRI runtime.
        (
            secured(
                "unknown-uid",
                user(|s| s.run_as_user = Some(Int64Value { value: 1000 })),
            ),
            "uid=1000 gid=0(root) groups=0(root)",
        ),
        (
            secured(
                "known-uid",
                user(|s| s.run_as_user = Some(Int64Value { value: 1 })),
            ),
            "uid=1(daemon) gid=1(daemon) groups=1(daemon)",
        ),
        (
            secured(
                "name-group-extra",
                user(|s| {
                    s.run_as_username = "daemon".into();
                    s.run_as_group = Some(Int64Value { value: 65534 });
                    s.supplemental_groups = vec![4242, 1];
                }),
            ),
            "uid=1(daemon) gid=65534(nogroup) groups=1(daemon),4242,65534(nogroup)",
        ),
        (
            from_image("image-user", user(|_| {})),
            "uid=1000 gid=1000 groups=1000",
        ),
        (
            from_image(
                "image-user-overridden",
                user(|s| s.run_as_username = "nobody".into()),
            ),
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        ),
    ];
    for (config, expected) in cases {
        let name = config.metadata.as_ref().unwrap().name.clone();
        let id = node.run(&pod, &pod_config, config).await;
        let out = node.exec(&id, &["id"]).await;
        assert_eq!(out.ok().trim(), expected, "{backend:?} {name}");
        // The process itself, not only what exec gets.
        let status = node.sh(&id, "grep -E '^(Uid|Gid)' /proc/1/status").await;
        let uid = expected
            .split_once('=')
            .unwrap()
            .1
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap();
        assert!(
            status.ok().starts_with(&format!("Uid:\t{uid}\t")),
            "{backend:?} {name}: {status:?}"
        );
    }
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups_embedded() {
    users(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups_runc() {
    users(Backend::Runc).await;
}

async fn readonly_rootfs(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("ro").await;
    let volume = node.daemon.dir.join("volume");
    std::fs::create_dir(&volume).unwrap();
    let mut config = secured("ro", user(|s| s.readonly_rootfs = true));
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    }];
    let id = node.run(&pod, &pod_config, config).await;
    node.exec(&id, &["touch", "/written"])
        .await
        .failed_with("Read-only file system");
    node.exec(&id, &["mkdir", "/tmp/dir"])
        .await
        .failed_with("Read-only file system");
    node.sh(&id, "echo kept > /data/file").await.ok();
    assert_eq!(
        std::fs::read_to_string(volume.join("file")).unwrap(),
        "kept\n"
    );
    // The writable twin in the same pod.
    let rw = node.run(&pod, &pod_config, sleeper("rw")).await;
    node.exec(&rw, &["touch", "/written"]).await.ok();
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_rootfs_embedded() {
    readonly_rootfs(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_rootfs_runc() {
    readonly_rootfs(Backend::Runc).await;
}

async fn capabilities(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("caps").await;
    let cap_sets = [
        ("default", user(|_| {}), DEFAULT_CAPS),
        (
            "no-chown",
            user(|s| s.capabilities = caps(&[], &["CHOWN"])),
            DEFAULT_CAPS & !1,
        ),
        (
            "sys-admin",
            user(|s| s.capabilities = caps(&["CAP_SYS_ADMIN"], &[])),
            DEFAULT_CAPS | 1 << 21,
        ),
        ("none", user(|s| s.capabilities = caps(&[], &["ALL"])), 0),
        (
            "only-chown",
            user(|s| s.capabilities = caps(&["CHOWN"], &["ALL"])),
            1,
        ),
        (
            "all",
            user(|s| s.capabilities = caps(&["ALL"], &[])),
            own_bounding_set(),
        ),
    ];
    let mut ids = Vec::new();
    for (name, sc, mask) in cap_sets {
        let id = node.run(&pod, &pod_config, secured(name, sc)).await;
        let status = node.exec(&id, &["cat", "/proc/self/status"]).await;
        assert_eq!(
            cap_eff(status.ok()),
            mask,
            "{backend:?} {name}: CapEff {status:?}"
        );
        // The container's own process too, not only the exec'ed one.
        let status = node.exec(&id, &["cat", "/proc/1/status"]).await;
        assert_eq!(cap_eff(status.ok()), mask, "{backend:?} {name}: pid 1");
        ids.push(id);
    }
    let [default, no_chown, sys_admin, none, only_chown, _all] = &ids[..] else {
        unreachable!()
    };
    let chown = ["chown", "1", "/tmp"];
    node.exec(default, &chown).await.ok();
    node.exec(only_chown, &chown).await.ok();
    node.exec(no_chown, &chown)
        .await
        .failed_with("Operation not permitted");
    node.exec(none, &chown)
        .await
        .failed_with("Operation not permitted");
    // mount(2) needs CAP_SYS_ADMIN; the mount stays in the container's own namespace.
    let mount = "mkdir -p /tmp/m && mount -t tmpfs scratch /tmp/m && \
                 grep -c ' /tmp/m tmpfs' /proc/mounts && umount /tmp/m";
    let out = node.sh(default, mount).await;
    assert_ne!(out.code, 0, "mount without CAP_SYS_ADMIN: {out:?}");
    assert_eq!(node.sh(sys_admin, mount).await.ok(), "1\n");
    // Without DAC_OVERRIDE, file modes bind root too.
    node.sh(
        none,
        "touch /tmp/locked && chmod 000 /tmp/locked && cat /tmp/locked",
    )
    .await
    .failed_with("Permission denied");
    node.sh(
        default,
        "touch /tmp/locked && chmod 000 /tmp/locked && cat /tmp/locked",
    )
    .await
    .ok();

    let err = node
        .create(
            &pod,
            &pod_config,
            secured(
                "bogus",
                user(|s| s.capabilities = caps(&["NOT_A_CAP"], &[])),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("linux.security_context.capabilities.add_capabilities"),
        "{}",
        err.message()
    );
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_embedded() {
    capabilities(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_runc() {
    capabilities(Backend::Runc).await;
}

/// Docker's profile format: allow everything, refuse mkdir and mkdirat with EACCES.
const DENY_MKDIR: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;

async fn seccomp_profiles(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("seccomp").await;
    let profiles = node.daemon.dir.join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(profiles.join("deny-mkdir.json"), DENY_MKDIR).unwrap();
    std::fs::write(profiles.join("broken.json"), "{\"defaultAction\": ").unwrap();

    let mounts_before = criox_testkit::mounts_below(&node.daemon.dir);
    let field = "linux.security_context.seccomp.localhost_ref";
    for bad in [
        profiles.join("broken.json").display().to_string(),
        profiles.join("missing.json").display().to_string(),
        "relative/profile.json".to_string(),
    ] {
        let err = node
            .create(
                &pod,
                &pod_config,
                secured(
                    "bad-profile",
                    user(|s| s.seccomp = seccomp(ProfileType::Localhost, &bad)),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains(field), "{bad}: {}", err.message());
    }
    assert!(node.containers().await.is_empty());
    assert_eq!(criox_testkit::mounts_below(&node.daemon.dir), mounts_before);

    let deny_mkdir = profiles.join("deny-mkdir.json").display().to_string();
    let runtime_default = || user(|s| s.seccomp = seccomp(ProfileType::RuntimeDefault, ""));
    let unconfined = || user(|s| s.seccomp = seccomp(ProfileType::Unconfined, ""));
    let localhost = || user(|s| s.seccomp = seccomp(ProfileType::Localhost, &deny_mkdir));
    // A user namespace needs no capability: only the profile stands in the way.
    let unshare: &[&str] = &["unshare", "-U", "true"];
    let mkdir: &[&str] = &["mkdir", "/tmp/made"];
    let cases = [
        (
            "default-unshare",
            runtime_default(),
            unshare,
            Some("Operation not permitted"),
        ),
        ("unconfined-unshare", unconfined(), unshare, None),
        ("localhost-unshare", localhost(), unshare, None),
        (
            "localhost-mkdir",
            localhost(),
            mkdir,
            Some("Permission denied"),
        ),
        ("default-mkdir", runtime_default(), mkdir, None),
    ];
    for (name, sc, command, refused) in cases {
        let mut config = container(name, command);
        config.linux = Some(LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        });
        let id = node.run(&pod, &pod_config, config).await;
        let exited = node.wait_exited(&id).await;
        let log = std::fs::read_to_string(node.logs.join(format!("{name}.log"))).unwrap();
        match refused {
            Some(message) => {
                assert_ne!(exited.exit_code, 0, "{backend:?} {name}: {log}");
                assert!(log.contains(message), "{backend:?} {name}: {log}");
            }
            None => assert_eq!(exited.exit_code, 0, "{backend:?} {name}: {log}"),
        }
    }
    // Seccomp mode 2 (filter) where a profile applies, 0 where none does.
    for (name, sc, mode) in [
        ("default", runtime_default(), "2"),
        ("unconfined", unconfined(), "0"),
        ("localhost", localhost(), "2"),
    ] {
        let id = node.run(&pod, &pod_config, secured(name, sc)).await;
        let out = node.sh(&id, "grep '^Seccomp:' /proc/1/status").await;
        assert_eq!(
            out.ok().split_whitespace().nth(1),
            Some(mode),
            "{backend:?} {name}"
        );
    }
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_embedded() {
    seccomp_profiles(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_runc() {
    seccomp_profiles(Backend::Runc).await;
}

/// What confines a process, as /proc shows it: capabilities, no_new_privs, seccomp mode and
/// filter count, cgroups and resource limits.
fn confinement_of(pid: &str) -> String {
    format!(
        "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' \
         /proc/{pid}/status; cat /proc/{pid}/cgroup /proc/{pid}/limits"
    )
}

/// Processes exec'ed into a container are held to its profile, as its own process is, and
/// keep the rest of its confinement: whether the filter goes in before the capabilities
/// are dropped (no no_new_privs) or after (no_new_privs), for root and for another user.
async fn exec_keeps_the_profile(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("seccomp-exec").await;
    let runtime_default = || seccomp(ProfileType::RuntimeDefault, "");
    let cases = [
        ("confined", user(|s| s.seccomp = runtime_default())),
        (
            "confined-user",
            user(|s| {
                s.seccomp = runtime_default();
                s.run_as_user = Some(Int64Value { value: 1000 });
                s.capabilities = caps(&[], &["ALL"]);
            }),
        ),
        (
            "confined-nnp",
            user(|s| {
                s.seccomp = runtime_default();
                s.no_new_privs = true;
                s.capabilities = caps(&["NET_ADMIN"], &["CHOWN"]);
            }),
        ),
    ];
    for (name, sc) in cases {
        let id = node.run(&pod, &pod_config, secured(name, sc)).await;
        let out = node.sh(&id, "grep '^Seccomp:' /proc/self/status").await;
        assert_eq!(
            out.ok().split_whitespace().nth(1),
            Some("2"),
            "{backend:?} {name}"
        );
        node.exec(&id, &["unshare", "-U", "true"])
            .await
            .failed_with("Operation not permitted");
        let own = node.sh(&id, &confinement_of("1")).await;
        let exec = node.sh(&id, &confinement_of("self")).await;
        assert_eq!(
            exec.ok(),
            own.ok(),
            "{backend:?} {name}: exec'd vs own process"
        );
    }
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_the_seccomp_profile_embedded() {
    exec_keeps_the_profile(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_the_seccomp_profile_runc() {
    exec_keeps_the_profile(Backend::Runc).await;
}

/// Entries of /dev, whether /dev/loop0 is there, the size of /proc/timer_list (masked:
/// empty) and the CapEff mask.
const LOOK_AROUND: &str = "ls /dev | wc -l; test -b /dev/loop0 && echo loop0 || echo no-loop0; \
                           wc -c < /proc/timer_list; grep CapEff /proc/self/status";

async fn privileged(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (plain_pod, plain_pod_config) = node.pod("plain").await;
    let err = node
        .create(
            &plain_pod,
            &plain_pod_config,
            secured("priv", user(|s| s.privileged = true)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("linux.security_context.privileged"),
        "{}",
        err.message()
    );

    let mut pod_config = node.pod_config("priv");
    let sandbox = pod_config.linux.as_mut().unwrap();
    sandbox.security_context.as_mut().unwrap().privileged = true;
    let pod = node.run_pod(&pod_config).await;
    let privileged = node
        .run(
            &pod,
            &pod_config,
            secured("priv", user(|s| s.privileged = true)),
        )
        .await;
    let plain = node.run(&pod, &pod_config, sleeper("plain")).await;
    let priv_out = node.sh(&privileged, LOOK_AROUND).await;
    let plain_out = node.sh(&plain, LOOK_AROUND).await;
    let lines = |out: &str| -> Vec<String> { out.lines().map(str::to_string).collect() };
    let p = lines(priv_out.ok());
    let n = lines(plain_out.ok());
    let host_devices = std::fs::read_dir("/dev").unwrap().count();
    let priv_devices: usize = p[0].trim().parse().unwrap();
    let plain_devices: usize = n[0].trim().parse().unwrap();
    assert!(
        priv_devices > plain_devices && priv_devices + 10 >= host_devices,
        "{backend:?}: /dev entries privileged {priv_devices}, plain {plain_devices}, host {host_devices}"
    );
    assert_eq!(
        (p[1].as_str(), n[1].as_str()),
        ("loop0", "no-loop0"),
        "{backend:?}"
    );
    assert!(
        p[2].trim().parse::<u64>().unwrap() > 0,
        "{backend:?}: /proc/timer_list masked in a privileged container"
    );
    assert_eq!(n[2].trim(), "0", "{backend:?}: /proc/timer_list not masked");
    assert_eq!(cap_eff(&p[3]), own_bounding_set(), "{backend:?}");
    assert_eq!(cap_eff(&n[3]), DEFAULT_CAPS, "{backend:?}");
    // /sys is writable only for the privileged one.
    let sys_rw = "grep -q ' /sys sysfs rw' /proc/mounts && echo rw || echo ro";
    assert_eq!(node.sh(&privileged, sys_rw).await.ok(), "rw\n");
    assert_eq!(node.sh(&plain, sys_rw).await.ok(), "ro\n");
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_embedded() {
    privileged(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_runc() {
    privileged(Backend::Runc).await;
}

async fn process_and_path_overrides(backend: Backend) {
    let mut node = Node::start(backend).await;
    let (pod, pod_config) = node.pod("paths").await;
    let plain = node.run(&pod, &pod_config, sleeper("plain")).await;
    let no_new_privs = node
        .run(
            &pod,
            &pod_config,
            secured("nnp", user(|s| s.no_new_privs = true)),
        )
        .await;
    let overridden = node
        .run(
            &pod,
            &pod_config,
            secured(
                "paths",
                user(|s| {
                    s.masked_paths = vec!["/etc/passwd".into()];
                    s.readonly_paths = vec!["/tmp".into()];
                }),
            ),
        )
        .await;
    let nnp = "grep '^NoNewPrivs:' /proc/1/status | cut -f2";
    assert_eq!(node.sh(&no_new_privs, nnp).await.ok(), "1\n");
    assert_eq!(node.sh(&plain, nnp).await.ok(), "0\n");

    // The request's lists replace the defaults.
    let probe = "wc -c < /etc/passwd; wc -c < /proc/timer_list; \
                 touch /tmp/x 2>&1 && echo tmp-rw; \
                 grep -q ' /proc/sys proc ro' /proc/mounts && echo sys-ro || echo sys-rw";
    let out = node.sh(&overridden, probe).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0].trim(), "0", "/etc/passwd masked: {out:?}");
    assert_ne!(lines[1].trim(), "0", "/proc/timer_list unmasked: {out:?}");
    assert!(lines[2].contains("Read-only file system"), "{out:?}");
    assert_eq!(lines[3], "sys-rw", "{out:?}");
    let out = node.sh(&plain, probe).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_ne!(lines[0].trim(), "0", "{out:?}");
    assert_eq!(lines[1].trim(), "0", "{out:?}");
    assert_eq!(lines[2], "tmp-rw", "{out:?}");
    assert_eq!(lines[3], "sys-ro", "{out:?}");

    let err = node
        .create(
            &pod,
            &pod_config,
            secured("bad", user(|s| s.masked_paths = vec!["proc/x".into()])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("masked_paths"), "{}", err.message());
    node.end_all_and_check_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_privs_and_path_overrides_embedded() {
    process_and_path_overrides(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_privs_and_path_overrides_runc() {
    process_and_path_overrides(Backend::Runc).await;
}

/// A pod with its own network namespace on a private bridge: namespaced sysctls reach its
/// containers, and NET_ADMIN lets one change that namespace's links and no other.
async fn own_network_namespace(backend: Backend) {
    let network = criox_testkit::pods::TestNetwork::new(Path::new("/tmp"));
    let mut node = Node::start(backend).await;
    network.install(&node.daemon.cni_dir);
    let mut pod_config = criox_testkit::pods::pod_config("net", &criox_testkit::unique("uid"));
    pod_config.log_directory = node.logs.display().to_string();
    pod_config.linux = Some(LinuxPodSandboxConfig {
        sysctls: [
            ("net.ipv4.ip_local_port_range", "20000 30000"),
            ("kernel.shmmni", "1024"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    });
    let pod = node.run_pod(&pod_config).await;
    let plain = node.run(&pod, &pod_config, sleeper("plain")).await;
    let admin = node
        .run(
            &pod,
            &pod_config,
            secured(
                "admin",
                user(|s| s.capabilities = caps(&["NET_ADMIN"], &[])),
            ),
        )
        .await;
    let out = node
        .sh(
            &plain,
            "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/shmmni",
        )
        .await;
    assert_eq!(
        out.ok().split_whitespace().collect::<Vec<_>>(),
        ["20000", "30000", "1024"]
    );
    let link = criox_testkit::unique("cxv");
    let add = [
        "ip", "link", "add", &link, "type", "veth", "peer", "name", "cxpeer0",
    ];
    node.exec(&plain, &add)
        .await
        .failed_with("Operation not permitted");
    node.exec(&admin, &add).await.ok();
    // Both containers share the pod's namespace: the plain one sees the new link.
    node.exec(&plain, &["ip", "link", "show", &link]).await.ok();
    assert!(
        !Path::new("/sys/class/net").join(&link).exists(),
        "the link was made on the host"
    );

    // A host-network pod cannot take network sysctls: they would change the node.
    let mut host_pod = node.pod_config("hostnet");
    host_pod.linux.as_mut().unwrap().sysctls = [(
        "net.ipv4.ip_local_port_range".to_string(),
        "20000 30000".to_string(),
    )]
    .into_iter()
    .collect();
    let refused = match node
        .rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(host_pod.clone()),
            runtime_handler: backend.handler().to_string(),
        })
        .await
    {
        Err(err) => err,
        Ok(resp) => {
            let id = resp.into_inner().pod_sandbox_id;
            node.create(&id, &host_pod, container("c", &["true"]))
                .await
                .unwrap_err()
        }
    };
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("sysctls"),
        "{}",
        refused.message()
    );
    node.end_all_and_check_clean().await;
    assert!(network.allocations().is_empty(), "IP allocations left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_network_namespace_sysctls_and_net_admin_embedded() {
    own_network_namespace(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_network_namespace_sysctls_and_net_admin_runc() {
    own_network_namespace(Backend::Runc).await;
}
