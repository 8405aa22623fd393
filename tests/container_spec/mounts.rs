//! Pod files, CRI bind mounts and recursive read-only mounts.

use super::*;

#[test]
fn runc_mounts_pod_files_and_cri_binds() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let host = tempfile::tempdir().expect("temp dir");
        let files = host.path();
        std::fs::write(files.join("hostname"), "pod-hostname\n").expect("hostname");
        std::fs::write(files.join("hosts"), "127.0.0.1 pod-hosts\n").expect("hosts");
        std::fs::write(files.join("resolv.conf"), "nameserver 192.0.2.53\n").expect("resolv");
        std::fs::create_dir(files.join("shm")).expect("shm");
        std::fs::create_dir(files.join("data")).expect("data");
        std::fs::write(files.join("data/f"), "from the host\n").expect("data file");
        let mut pod = test_pod();
        pod.hostname_path = Some(files.join("hostname"));
        pod.hosts_path = Some(files.join("hosts"));
        pod.resolv_conf_path = Some(files.join("resolv.conf"));
        pod.shm_path = Some(files.join("shm"));

        let script = "cat /etc/hostname /etc/hosts /etc/resolv.conf /data/f; \
                      echo x > /dev/shm/written; \
                      if echo x > /data/g 2>/dev/null; then echo data-writable; fi";
        let mut config = container(&["sh", "-c", script], |_| {});
        config.mounts = vec![v1::Mount {
            container_path: "/data".into(),
            host_path: files.join("data").to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }];
        let (code, out, err) = b.run_in(&pod, &config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec![
                "pod-hostname",
                "127.0.0.1 pod-hosts",
                "nameserver 192.0.2.53",
                "from the host"
            ],
            "{runtime:?}"
        );
        assert!(
            files.join("shm/written").exists(),
            "{runtime:?}: /dev/shm is the pod's"
        );
        assert!(
            !files.join("data/g").exists(),
            "{runtime:?}: /data is read-only"
        );
    }
}

#[test]
fn recursive_read_only_reaches_submounts_where_the_runtime_supports_it() {
    let host = tempfile::tempdir().expect("temp dir");
    let data = host.path().join("data");
    std::fs::create_dir_all(data.join("sub")).expect("dirs");
    let _sub = criox_testkit::Tmpfs::mount(&data.join("sub"));
    let write = ["sh", "-c", "echo x > /data/sub/written"];
    let mount = |rro: bool| v1::Mount {
        container_path: "/data".into(),
        host_path: data.to_string_lossy().into_owned(),
        readonly: true,
        recursive_read_only: rro,
        ..Default::default()
    };
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        // Plain read-only covers the top mount only.
        let mut config = container(&write, |_| {});
        config.mounts = vec![mount(false)];
        let (code, _, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        std::fs::remove_file(data.join("sub/written")).expect("written through the submount");

        config.mounts = vec![mount(true)];
        if !runtime.supports_recursive_read_only() {
            let e = b.build(&test_pod(), &config, &image("")).unwrap_err();
            assert!(
                e.to_string().contains("does not support"),
                "{runtime:?}: {e}"
            );
            continue;
        }
        let (code, _, err) = b.run(&config, &image(""));
        assert_ne!(code, 0, "{runtime:?}: rro must cover the submount");
        assert!(err.contains("Read-only file system"), "{runtime:?}: {err}");
        assert!(!data.join("sub/written").exists());
    }
}
