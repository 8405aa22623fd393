//! The process: its user, environment and read-only root filesystem.

use super::*;

#[test]
fn runc_runs_the_image_user_and_run_as_username() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(&container(&["id"], |_| {}), &image("daemon"));
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out.trim(), "uid=1(daemon) gid=1(daemon) groups=1(daemon)");

        let (code, out, err) = b.run(
            &container(&["id"], |s| s.run_as_username = "nobody".into()),
            &image("daemon"),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out.trim(),
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
        );

        let (code, out, err) = b.run(
            &container(&["id"], |s| {
                s.run_as_user = Some(v1::Int64Value { value: 1 });
                s.run_as_group = Some(v1::Int64Value { value: 65534 });
                s.supplemental_groups = vec![0];
            }),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out.trim(),
            "uid=1(daemon) gid=65534(nogroup) groups=0(root),65534(nogroup)"
        );
    }
}

#[test]
fn runc_sees_the_merged_environment() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let mut config = container(&["env"], |_| {});
        config.envs = vec![
            v1::KeyValue {
                key: "FROM_CRI".into(),
                value: "two words".into(),
            },
            v1::KeyValue {
                key: "FROM_IMAGE".into(),
                value: "overridden".into(),
            },
        ];
        let (code, out, err) = b.run(&config, &image("daemon"));
        assert_eq!(code, 0, "stderr: {err}");
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "FROM_CRI=two words",
            "FROM_IMAGE=overridden",
            "HOME=/usr/sbin",
            "PATH=/bin:/sbin:/usr/bin",
            "HOSTNAME=spec-test",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in {out}");
        }
        assert!(!lines.contains(&"FROM_IMAGE=1"), "{out}");
    }
}

#[test]
fn runc_refuses_writes_to_a_readonly_rootfs() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let write = ["sh", "-c", "echo x > /written"];
        let (code, _, err) = b.run(&container(&write, |s| s.readonly_rootfs = true), &image(""));
        assert_ne!(code, 0, "a write to a read-only rootfs must fail");
        assert!(err.contains("Read-only file system"), "stderr: {err}");
        assert!(!b.rootfs().join("written").exists());

        let (code, _, err) = b.run(&container(&write, |_| {}), &image(""));
        assert_eq!(code, 0, "stderr: {err}");
        assert!(b.rootfs().join("written").exists());
    }
}
