//! The RuntimeDefault profile's effect, Localhost profile files, and the choice between
//! them.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator,
};

use super::localhost::{parse_profile, parse_version};
use super::oci::{ENOSYS, EPERM};
use super::*;
use crate::container::spec::capabilities;

/// Which syscall names a profile allows unconditionally.
fn unconditionally_allowed(profile: &LinuxSeccomp) -> BTreeSet<String> {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
        .flat_map(|s| s.names().iter().cloned())
        .collect()
}

#[test]
fn kernel_releases_compare_by_major_and_minor() {
    assert_eq!(parse_version("6.1.0-18-amd64"), Some((6, 1)));
    assert_eq!(parse_version("5.12.3"), Some((5, 12)));
    assert!(parse_version("5.4.0").unwrap() < (5, 12));
    assert_eq!(parse_version("weird"), None);
}

fn default_caps() -> Capabilities {
    capabilities::DEFAULT.iter().copied().collect()
}

#[test]
fn default_profile_denies_with_eperm_and_allows_basics() {
    let p = runtime_default(&default_caps()).unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret(), Some(EPERM));
    let allowed = unconditionally_allowed(&p);
    for name in [
        "pipe2",
        "read",
        "write",
        "execve",
        "openat",
        "mmap",
        "exit_group",
        "chown",
    ] {
        assert!(allowed.contains(name), "{name} must be allowed");
    }
    for name in [
        "unshare",
        "mount",
        "setns",
        "clone",
        "bpf",
        "reboot",
        "init_module",
        "kexec_load",
        "keyctl",
        "add_key",
    ] {
        assert!(!allowed.contains(name), "{name} must not be allowed");
    }
    // sys_chroot is in the default capability set, so chroot is allowed
    assert!(allowed.contains("chroot"));
}

#[test]
fn clone_is_restricted_without_sys_admin() {
    let p = runtime_default(&default_caps()).unwrap();
    let clone = p
        .syscalls()
        .iter()
        .flatten()
        .find(|s| s.names() == &["clone".to_string()])
        .unwrap();
    let a = &clone.args().as_ref().unwrap()[0];
    assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(a.value(), 2114060288);
    assert_eq!(a.value_two(), Some(0));
    let clone3 = p
        .syscalls()
        .iter()
        .flatten()
        .find(|s| s.names() == &["clone3".to_string()])
        .unwrap();
    assert_eq!(clone3.errno_ret(), Some(ENOSYS));
}

#[test]
fn sys_admin_opens_namespaces_and_mounts() {
    let mut caps = default_caps();
    caps.insert(Capability::SysAdmin);
    let p = runtime_default(&caps).unwrap();
    let allowed = unconditionally_allowed(&p);
    for name in ["unshare", "mount", "setns", "clone", "clone3"] {
        assert!(allowed.contains(name), "{name}");
    }
}

#[test]
fn dropping_sys_chroot_removes_chroot() {
    let mut caps = default_caps();
    caps.remove(&Capability::SysChroot);
    let allowed = unconditionally_allowed(&runtime_default(&caps).unwrap());
    assert!(!allowed.contains("chroot"));
}

#[test]
fn docker_format_profile_with_includes() {
    let text = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;
    let p = parse_profile(text, &default_caps(), (6, 1)).unwrap();
    let names: Vec<String> = p
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().clone())
        .collect();
    assert_eq!(names, vec!["read", "write", "ptrace", "personality"]);
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            p.architectures().as_ref().unwrap(),
            &vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
        );
    }
    let old = parse_profile(text, &default_caps(), (4, 4)).unwrap();
    assert_eq!(old.syscalls().as_ref().unwrap().len(), 2);
}

#[test]
fn oci_format_profile_round_trips() {
    let p = runtime_default(&default_caps()).unwrap();
    let text = serde_json::to_string(&p).unwrap();
    let back = parse_profile(&text, &default_caps(), (6, 1)).unwrap();
    assert_eq!(back, p);
}

#[test]
fn invalid_profiles_say_what_is_wrong() {
    let caps = default_caps();
    let bad_json = parse_profile("{", &caps, (6, 1)).unwrap_err();
    assert!(bad_json.starts_with("invalid JSON"), "{bad_json}");
    let bad_action =
        parse_profile(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, &caps, (6, 1)).unwrap_err();
    assert!(bad_action.contains("unknown action"), "{bad_action}");
    let bad_index = parse_profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        &caps,
        (6, 1),
    )
    .unwrap_err();
    assert!(bad_index.contains("syscalls[0].args[0]"), "{bad_index}");
    let no_names = parse_profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#,
        &caps,
        (6, 1),
    )
    .unwrap_err();
    assert!(no_names.contains("names"), "{no_names}");
}

#[test]
fn localhost_errors_name_the_field_and_file() {
    let caps = default_caps();
    let e = load_localhost("f", "relative.json", &caps)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("f: "), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, r#"{"defaultAction": 5}"#).unwrap();
    let e = load_localhost("f", path.to_str().unwrap(), &caps)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(path.to_str().unwrap()) && e.contains("unknown action"),
        "{e}"
    );
    let missing = dir.path().join("missing.json");
    let e = load_localhost("f", missing.to_str().unwrap(), &caps)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("f: cannot read"), "{e}");
}

#[test]
fn select_by_profile_type_and_deprecated_path() {
    use criox_proto::v1::{SecurityProfile, security_profile::ProfileType};
    let caps = default_caps();
    let rd = SecurityProfile {
        profile_type: ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    };
    assert!(select(Some(&rd), "", &caps).unwrap().is_some());
    let un = SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    };
    assert!(
        select(Some(&un), "runtime/default", &caps)
            .unwrap()
            .is_none()
    );
    assert!(select(None, "", &caps).unwrap().is_none());
    assert!(select(None, "runtime/default", &caps).unwrap().is_some());
    let e = select(None, "weird", &caps).unwrap_err().to_string();
    assert!(e.starts_with("linux.security_context.seccomp_profile_path"));
}
