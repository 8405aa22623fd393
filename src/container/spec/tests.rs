//! The translation as a whole: CRI config, image config and pod in, OCI spec out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use criox_proto::v1;
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};

use super::error::Result;
use super::*;
use crate::container::user::tests::image_rootfs;

pub fn pod() -> PodSpecContext {
    PodSpecContext {
        id: "pod0123".into(),
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        hostname: "web-host".into(),
        network: PodNamespace::Node,
        ipc: PodNamespace::New,
        uts: PodNamespace::New,
        pid: PodPid::Container,
        hostname_path: None,
        hosts_path: None,
        resolv_conf_path: None,
        shm_path: None,
        cgroup_parent: "/kubepods/pod-uid-1".into(),
        sysctls: BTreeMap::new(),
        runtime_handler: "runc".into(),
        privileged: false,
        userns: None,
    }
}

pub fn node() -> NodeFacts {
    NodeFacts {
        cgroup_v2: false,
        swap_accounting: false,
        hugetlb: true,
        apparmor: false,
        apparmor_default_profile: Err("AppArmor is off on this node".to_string()),
        oom_score_adj_floor: 0,
        recursive_read_only: false,
        runtime_systemd_cgroup: false,
        dev_dir: PathBuf::from("/dev"),
        capabilities: capabilities::all(),
    }
}

pub fn image(user: &str, env: &[&str]) -> ImageConfiguration {
    let config = ConfigBuilder::default()
        .user(user.to_string())
        .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .entrypoint(vec!["/bin/sh".to_string(), "-c".to_string()])
        .cmd(vec!["echo image".to_string()])
        .working_dir("/srv".to_string())
        .stop_signal("SIGQUIT".to_string())
        .build()
        .unwrap();
    ImageConfigurationBuilder::default()
        .config(config)
        .build()
        .unwrap()
}

pub fn security(f: impl FnOnce(&mut v1::LinuxContainerSecurityContext)) -> v1::ContainerConfig {
    let mut sc = v1::LinuxContainerSecurityContext {
        namespace_options: Some(v1::NamespaceOption {
            network: v1::NamespaceMode::Node as i32,
            pid: v1::NamespaceMode::Container as i32,
            ipc: v1::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    f(&mut sc);
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        linux: Some(v1::LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

fn build(
    config: &v1::ContainerConfig,
    img: &ImageConfiguration,
    pod: &PodSpecContext,
) -> Result<ContainerSpec> {
    let root = image_rootfs();
    build_container_spec(
        &ContainerSpecInput {
            id: "c1",
            rootfs: root.path(),
            config,
            image: img,
            image_name: "example.com/app:1",
            pod,
            target_pid_namespace: None,
        },
        &node(),
    )
}

fn env_of(spec: &Spec) -> Vec<String> {
    spec.process().as_ref().unwrap().env().clone().unwrap()
}

#[test]
fn image_defaults_flow_into_the_process() {
    let out = build(&security(|_| {}), &image("alice", &["A=1"]), &pod()).unwrap();
    let p = out.spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo image"]);
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(
        p.user().additional_gids().as_ref().unwrap(),
        &[1000, 10, 29]
    );
    assert_eq!(out.stop_signal, libc::SIGQUIT);
    let env = env_of(&out.spec);
    assert!(env.contains(&"A=1".to_string()));
    assert!(env.contains(&"HOME=/home/alice".to_string()));
    assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
    assert!(env.contains(&"HOSTNAME=web-host".to_string()));
    assert_eq!(out.spec.hostname().as_deref(), Some("web-host"));
}

#[test]
fn cri_env_wins_and_home_is_kept_when_given() {
    let mut cfg = security(|_| {});
    cfg.envs = vec![
        v1::KeyValue {
            key: "A".into(),
            value: "cri".into(),
        },
        v1::KeyValue {
            key: "HOME".into(),
            value: "/data".into(),
        },
    ];
    let out = build(&cfg, &image("", &["A=1", "PATH=/bin"]), &pod()).unwrap();
    let env = env_of(&out.spec);
    assert!(env.contains(&"A=cri".to_string()));
    assert!(!env.contains(&"A=1".to_string()));
    assert!(env.contains(&"HOME=/data".to_string()));
    assert!(env.contains(&"PATH=/bin".to_string()));
    assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
}

#[test]
fn unknown_uid_gets_home_slash() {
    let cfg = security(|s| s.run_as_user = Some(v1::Int64Value { value: 4242 }));
    let out = build(&cfg, &image("alice", &[]), &pod()).unwrap();
    assert!(env_of(&out.spec).contains(&"HOME=/".to_string()));
    assert_eq!(out.user.uid, 4242);
}

#[test]
fn missing_user_error_names_the_field() {
    let cfg = security(|s| s.run_as_username = "x".into());
    let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.security_context.run_as_username: user \"x\" not found in image /etc/passwd"
    );
    assert!(e.is_invalid_argument());
}

#[test]
fn no_new_privs_is_omitted_when_false() {
    let out = build(&security(|_| {}), &image("", &[]), &pod()).unwrap();
    assert_eq!(
        out.spec.process().as_ref().unwrap().no_new_privileges(),
        None
    );
    let json = serde_json::to_string(&out.spec).unwrap();
    assert!(!json.contains("noNewPrivileges"));
    let out = build(
        &security(|s| s.no_new_privs = true),
        &image("", &[]),
        &pod(),
    )
    .unwrap();
    assert_eq!(
        out.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
}

#[test]
fn privileged_needs_privileged_pod_and_opens_everything() {
    let cfg = security(|s| {
        s.privileged = true;
        s.seccomp = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    });
    let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.security_context.privileged")
    );
    let mut p = pod();
    p.privileged = true;
    let out = build(&cfg, &image("", &[]), &p).unwrap();
    let linux = out.spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    let devs = linux.devices().as_ref().unwrap();
    assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    let caps = out
        .spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert!(
        caps.bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin)
    );
}

#[test]
fn seccomp_runtime_default_and_readonly_rootfs() {
    let cfg = security(|s| {
        s.readonly_rootfs = true;
        s.seccomp = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
    });
    let out = build(&cfg, &image("", &[]), &pod()).unwrap();
    assert_eq!(out.spec.root().as_ref().unwrap().readonly(), Some(true));
    assert!(out.spec.linux().as_ref().unwrap().seccomp().is_some());
}

#[test]
fn namespaces_cgroups_and_annotations() {
    let mut cfg = security(|_| {});
    cfg.annotations.insert("team".into(), "blue".into());
    cfg.labels.insert("app".into(), "web".into());
    let mut p = pod();
    p.network = PodNamespace::Path("/run/criox/netns/pod0123".into());
    let mut cfg_pod_net = cfg.clone();
    if let Some(sc) = cfg_pod_net
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.namespace_options.as_mut().unwrap().network = v1::NamespaceMode::Pod as i32;
    }
    let out = build(&cfg_pod_net, &image("", &[]), &p).unwrap();
    let linux = out.spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod-uid-1/c1"))
    );
    let net = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(
        net.path().as_deref(),
        Some(Path::new("/run/criox/netns/pod0123"))
    );
    let a = out.spec.annotations().as_ref().unwrap();
    assert_eq!(a["team"], "blue");
    assert_eq!(a[annotations::CONTAINER_TYPE], "container");
    assert_eq!(a[annotations::SANDBOX_ID], "pod0123");
    assert_eq!(a[annotations::SANDBOX_NAME], "web");
    assert_eq!(a[annotations::SANDBOX_NAMESPACE], "default");
    assert_eq!(a[annotations::CONTAINER_NAME], "app");
    assert_eq!(a[annotations::IMAGE_NAME], "example.com/app:1");
    assert_eq!(a[annotations::LABELS], r#"{"app":"web"}"#);
}

#[test]
fn host_uts_has_no_hostname() {
    let mut p = pod();
    p.uts = PodNamespace::Node;
    let out = build(&security(|_| {}), &image("", &[]), &p).unwrap();
    assert!(out.spec.hostname().is_none());
    assert!(!env_of(&out.spec).iter().any(|e| e.starts_with("HOSTNAME=")));
}

#[test]
fn bad_cgroup_parent_and_resources() {
    let mut p = pod();
    p.cgroup_parent = "kubepods.slice".into();
    let e = build(&security(|_| {}), &image("", &[]), &p).unwrap_err();
    assert!(e.to_string().starts_with("pod cgroup_parent"));
    let mut cfg = security(|_| {});
    cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
        memory_limit_in_bytes: -5,
        ..Default::default()
    });
    let e = build(&cfg, &image("", &[]), &pod()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.resources.memory_limit_in_bytes")
    );
}

#[test]
fn oom_score_adj_is_clamped() {
    let mut cfg = security(|_| {});
    cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
        oom_score_adj: -997,
        ..Default::default()
    });
    let out = build(&cfg, &image("", &[]), &pod()).unwrap();
    assert_eq!(
        out.spec.process().as_ref().unwrap().oom_score_adj(),
        Some(0)
    );
}

#[test]
fn hugepage_limits_are_left_out_without_the_hugetlb_controller() {
    let mut cfg = security(|_| {});
    cfg.linux.as_mut().unwrap().resources = Some(v1::LinuxContainerResources {
        hugepage_limits: vec![v1::HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        }],
        ..Default::default()
    });
    let hugepages = |spec: &Spec| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.hugepage_limits().clone())
    };
    let out = build(&cfg, &image("", &[]), &pod()).unwrap();
    assert_eq!(hugepages(&out.spec).map(|h| h.len()), Some(1));
    let root = image_rootfs();
    let mut without = node();
    without.hugetlb = false;
    let out = build_container_spec(
        &ContainerSpecInput {
            id: "c1",
            rootfs: root.path(),
            config: &cfg,
            image: &image("", &[]),
            image_name: "example.com/app:1",
            pod: &pod(),
            target_pid_namespace: None,
        },
        &without,
    )
    .unwrap();
    assert_eq!(hugepages(&out.spec), None);
}

#[test]
fn sysctls_from_the_pod() {
    let mut p = pod();
    p.sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    let out = build(&security(|_| {}), &image("", &[]), &p).unwrap();
    assert_eq!(
        out.spec
            .linux()
            .as_ref()
            .unwrap()
            .sysctl()
            .as_ref()
            .unwrap()["kernel.shm_rmid_forced"],
        "1"
    );
    p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    let e = build(&security(|_| {}), &image("", &[]), &p).unwrap_err();
    assert!(e.to_string().starts_with("linux.sysctls"));
}

#[test]
fn no_sample_defaults_leak_into_the_spec() {
    let out = build(&security(|_| {}), &image("", &[]), &pod()).unwrap();
    let p = out.spec.process().as_ref().unwrap();
    assert_eq!(p.rlimits(), &None);
    let mut hostless = pod();
    hostless.hostname = String::new();
    let out = build(&security(|_| {}), &image("", &[]), &hostless).unwrap();
    assert_eq!(out.spec.hostname(), &None);
}

#[test]
fn spec_round_trips_through_json() {
    let out = build(&security(|_| {}), &image("daemon", &[]), &pod()).unwrap();
    let json = serde_json::to_string_pretty(&out.spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, out.spec);
    assert!(json.contains("\"ociVersion\": \"1.0.2\""));
}
