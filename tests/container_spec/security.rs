//! Capabilities, seccomp (RuntimeDefault and Localhost profiles) and privileged containers.

use super::*;

#[test]
fn runc_applies_dropped_and_added_capabilities() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let chown = ["chown", "1", "/tmp"];
        let drop_chown = |s: &mut v1::LinuxContainerSecurityContext| {
            s.capabilities = Some(v1::Capability {
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            })
        };
        let (code, _, err) = b.run(&container(&chown, drop_chown), &image(""));
        assert_ne!(code, 0, "chown without CAP_CHOWN must fail");
        assert!(err.contains("Operation not permitted"), "stderr: {err}");

        let (code, _, err) = b.run(&container(&chown, |_| {}), &image(""));
        assert_eq!(code, 0, "stderr: {err}");

        // An added capability: sethostname needs CAP_SYS_ADMIN, which the default set lacks.
        let sethostname = ["hostname", "renamed"];
        let (code, _, _) = b.run(&container(&sethostname, |_| {}), &image(""));
        assert_ne!(code, 0, "sethostname without CAP_SYS_ADMIN must fail");
        let (code, _, err) = b.run(
            &container(&sethostname, |s| {
                s.capabilities = Some(v1::Capability {
                    add_capabilities: vec!["SYS_ADMIN".into()],
                    ..Default::default()
                })
            }),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
    }
}

#[test]
fn runc_runtime_default_seccomp_blocks_unshare() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let unshare = ["unshare", "-U", "true"];
        let (code, _, err) = b.run(&container(&unshare, |_| {}), &image(""));
        assert_eq!(code, 0, "unconfined, a user namespace is allowed: {err}");

        let (code, _, err) = b.run(
            &container(&unshare, |s| s.seccomp = runtime_default()),
            &image(""),
        );
        assert_ne!(code, 0, "RuntimeDefault must refuse unshare");
        assert!(err.contains("Operation not permitted"), "stderr: {err}");

        // The profile still lets ordinary programs fork and exec.
        let (code, out, err) = b.run(
            &container(
                &[
                    "sh",
                    "-c",
                    "cat /proc/self/comm & wait; echo $(echo forked)",
                ],
                |s| s.seccomp = runtime_default(),
            ),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out.trim(), "cat\nforked", "{runtime:?}");
    }
}

/// clone(CLONE_NEWUSER) as a plain fork: `Ok` when the kernel (and seccomp) allowed it.
fn clone_newuser() -> Result<(), std::io::Error> {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child gets a copy of this process and only calls _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the child must not run anything of the parent's; _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child created above.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    Ok(())
}

const PROBE_ENV: &str = "CRIOX_CLONE_PROBE";
const PROBE_TEST: &str = "security::clone_newuser_probe";

/// Inside a container (started by the test below with this executable mounted at /probe)
/// it reports whether clone(CLONE_NEWUSER) is allowed. On the host, as root, it checks that
/// the call is allowed there, so that a refusal inside a container means the container's
/// confinement refused it.
#[test]
fn clone_newuser_probe() {
    let result = clone_newuser();
    if std::env::var_os(PROBE_ENV).is_some() {
        match result {
            Ok(()) => println!("clone-newuser: allowed"),
            Err(e) => println!("clone-newuser: refused ({e})"),
        }
        return;
    }
    assert!(nix::unistd::geteuid().is_root(), "run hack/test as root");
    result.expect("root on the host may clone a user namespace");
}

/// Runs the probe above in a container without seccomp and with RuntimeDefault.
fn assert_clone_newuser_refused(runtime: Runtime) {
    let exe = std::env::current_exe().expect("test executable");
    let b = Bundle::new(runtime);
    let probe = |seccomp: Option<v1::SecurityProfile>| {
        let mut config = container(
            &[
                "/probe",
                "--exact",
                PROBE_TEST,
                "--nocapture",
                "--test-threads=1",
            ],
            |s| s.seccomp = seccomp,
        );
        config.envs = vec![v1::KeyValue {
            key: PROBE_ENV.into(),
            value: "1".into(),
        }];
        config.mounts = vec![v1::Mount {
            container_path: "/probe".into(),
            host_path: exe.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }];
        let (code, out, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: probe failed: {out}\n{err}");
        // libtest prints the test name on the same line first.
        out.lines()
            .find_map(|l| l.find("clone-newuser: ").map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("{runtime:?}: no probe output in {out}\n{err}"))
    };
    assert_eq!(
        probe(None),
        "clone-newuser: allowed",
        "{runtime:?} unconfined"
    );
    let confined = probe(runtime_default());
    assert!(
        confined.starts_with("clone-newuser: refused (Operation not permitted"),
        "{runtime:?}: RuntimeDefault let clone(CLONE_NEWUSER) through: {confined}"
    );
}

#[test]
fn runc_runtime_default_seccomp_refuses_namespaces_through_clone() {
    assert_clone_newuser_refused(Runtime::Runc);
}

#[test]
fn embedded_runtime_default_seccomp_refuses_namespaces_through_clone() {
    assert_clone_newuser_refused(Runtime::Embedded);
}

#[test]
fn runc_loads_a_localhost_seccomp_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile = dir.path().join("deny-mkdir.json");
    // Docker's format: allow everything, refuse mkdir and mkdirat with EACCES.
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "comment": "no new directories"}]}"#,
    )
    .expect("write profile");
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let localhost = Some(v1::SecurityProfile {
            profile_type: v1::security_profile::ProfileType::Localhost as i32,
            localhost_ref: profile.to_string_lossy().into_owned(),
        });
        let (code, _, err) = b.run(
            &container(&["mkdir", "/tmp/made"], |s| s.seccomp = localhost),
            &image(""),
        );
        assert_ne!(code, 0, "{runtime:?}: the profile must refuse mkdir");
        assert!(err.contains("Permission denied"), "{runtime:?}: {err}");
        assert!(!b.rootfs().join("tmp/made").exists());
        let (code, _, err) = b.run(&container(&["mkdir", "/tmp/made"], |_| {}), &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
    }
}

#[test]
fn runc_privileged_sees_host_devices_and_writable_sysfs() {
    let script = "test -b /dev/loop0 && echo loop0; test -c /dev/kmsg && echo kmsg; \
                  grep -q ' /sys sysfs rw' /proc/mounts && echo sysfs-rw; \
                  grep CapEff /proc/self/status | cut -f2";
    // Privileged means every capability this node can give: the test's own bounding set.
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(str::trim)
        .expect("CapBnd line")
        .to_string();
    // The default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    let default_set = "00000000a80425fb";
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(&container(&["sh", "-c", script], |_| {}), &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.trim(),
            default_set,
            "{runtime:?}: an ordinary container sees no host device and holds the default set"
        );

        let mut pod = test_pod();
        pod.privileged = true;
        let privileged = container(&["sh", "-c", script], |s| s.privileged = true);
        let (code, out, err) = b.run_in(&pod, &privileged, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["loop0", "kmsg", "sysfs-rw", bounding.as_str()],
            "{runtime:?}"
        );
    }
}
