//! What the daemon leaves on the host is private to root: its root and state directories,
//! image layers, bundles (whose config.json holds the containers' environment) and
//! records are neither readable nor writable by other users, and a container's root
//! filesystem is mounted on the host without setuid or device semantics, so a setuid
//! binary planted from inside a container gives no host user root. Containers themselves,
//! non-root ones included, see the permissions they always had.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::*;
use criox_testkit::Daemon;
use criox_testkit::pods::{on_host_network, pod_config, stop_and_remove_pod};
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

async fn exec(rt: &mut Rt, id: &str, script: &str) -> String {
    let out = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container whose process runs as uid 1000, with a host directory mounted where the
/// image has no directory at all, so that the runtime creates the parents.
fn non_root_container(name: &str, volume: &Path) -> ContainerConfig {
    let mut config = criox_testkit::busybox_container(name, &["sleep", "600"]);
    config.envs = vec![KeyValue {
        key: "SECRET_TOKEN".into(),
        value: "hunter2".into(),
    }];
    config.mounts = vec![Mount {
        container_path: "/deep/down/volume".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    }];
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 1000 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// Mount points below `dir` with the overlay filesystem type and their mount options.
fn overlay_mounts_below(dir: &Path) -> Vec<(PathBuf, String)> {
    criox_runtime::mountinfo::current()
        .into_iter()
        .filter(|m| m.fs_type == "overlay" && m.mount_point.starts_with(dir))
        .map(|m| (m.mount_point, m.options))
        .collect()
}

/// Every entry below `dir` whose mode lets other users in further than allowed: a
/// directory may be searchable (`--x`) by others, nothing else may be readable or
/// writable, except the pod files its containers' users read through bind mounts.
/// The contents of container root filesystems, writable layers and image layers are the
/// image's own and keep its modes (their own directories too: an overlay's root takes the
/// upper directory's mode); they are reachable only through their parents, which the walk
/// does check. Mounted filesystems (a pod's shm) are skipped the same way.
fn too_open_below(dir: &Path, skip: &[PathBuf], found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Their own mode is the image's root directory's, which a container's users need.
        if skip.contains(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let in_pod_dir = dir.parent().is_some_and(|p| p.ends_with("pods"));
        let open = if kind.is_symlink() || meta.dev() != dir_dev(dir) {
            // A mount point (a pod's shm, a pinned namespace) has the mounted
            // filesystem's mode, which the containers need; its directory is checked.
            0
        } else if kind.is_dir() {
            mode & 0o066
        } else if kind.is_socket() {
            // Connecting takes write permission; the CRI socket is the daemon's door
            // for its group.
            mode & if name == "criox.sock" { 0o002 } else { 0o022 }
        } else if in_pod_dir && matches!(name, "hosts" | "hostname" | "resolv.conf") {
            // Bind-mounted into the pod's containers, whose users must read them.
            mode & 0o022
        } else {
            mode & 0o077
        };
        if open != 0 || mode & 0o6000 != 0 {
            found.push(format!("{:o} {}", mode, path.display()));
        }
        if kind.is_dir() && meta.dev() == dir_dev(dir) {
            too_open_below(&path, skip, found);
        }
    }
}

fn dir_dev(dir: &Path) -> u64 {
    std::fs::metadata(dir).map(|m| m.dev()).unwrap_or(0)
}

/// Directories whose contents come from images or containers, not from the daemon.
fn image_content_dirs(daemon: &Daemon) -> Vec<PathBuf> {
    let mut skip = Vec::new();
    let mut stack = vec![daemon.root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_layer = dir.file_name().is_some_and(|n| n == "layers");
            if is_layer || matches!(&*name, "rootfs" | "upper" | "work" | "empty") {
                skip.push(path);
            } else {
                stack.push(path);
            }
        }
    }
    skip
}

fn config_jsons_below(dir: &Path, found: &mut Vec<PathBuf>, skip: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !skip.contains(&path) {
            config_jsons_below(&path, found, skip);
        } else if kind.is_file() && entry.file_name() == "config.json" {
            found.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_side_files_are_private_and_root_filesystems_nosuid() {
    let daemon = criox_testkit::daemon_with_image(
        &criox_testkit::busybox_image(),
        "[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n",
    )
    .await;
    let mut rt = daemon.runtime().await;
    let logs = tempfile::tempdir().unwrap();
    let volume = tempfile::tempdir().unwrap();
    std::fs::set_permissions(volume.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(volume.path().join("data"), "shared").unwrap();

    let mut pods = Vec::new();
    let mut non_root = Vec::new();
    let mut root_id = String::new();
    for handler in ["", "runc"] {
        let mut config = pod_config(
            &format!("perm{}", handler.len()),
            &criox_testkit::unique("uid"),
        );
        config.log_directory = logs.path().join(handler).display().to_string();
        on_host_network(&mut config, NamespaceMode::Container);
        let pod = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_string(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        pods.push(pod.clone());
        let id = criox_testkit::run_container(
            &mut rt,
            &pod,
            &config,
            non_root_container("user", volume.path()),
        )
        .await;
        non_root.push((handler, id));
        if handler.is_empty() {
            root_id = criox_testkit::run_container(
                &mut rt,
                &pod,
                &config,
                criox_testkit::busybox_container("root", &["sleep", "600"]),
            )
            .await;
        }
    }

    // A non-root container still reaches its whole tree: its root directory, the files
    // bind-mounted into it, and the parents the runtime made for its volume; and it
    // creates files with the usual umask.
    for (handler, id) in &non_root {
        let out = exec(
            &mut rt,
            id,
            "id -u; ls / >/dev/null; cat /etc/hosts /etc/hostname /etc/resolv.conf >/dev/null; \
             cat /deep/down/volume/data; echo; umask; touch /tmp/mine; stat -c %a /tmp/mine; \
             stat -c %a /deep /deep/down",
        )
        .await;
        assert_eq!(
            out, "1000\nshared\n0022\n644\n755\n755\n",
            "non-root container on handler {handler:?}"
        );
    }

    // Plant a setuid copy of busybox in the root container's writable layer.
    exec(
        &mut rt,
        &root_id,
        "cp /bin/busybox /tmp/x && chmod u+s /tmp/x",
    )
    .await;
    let overlays = overlay_mounts_below(&daemon.dir);
    assert_eq!(
        overlays.len(),
        3,
        "one overlay root filesystem per container: {overlays:?}"
    );
    let planted: Vec<&(PathBuf, String)> = overlays
        .iter()
        .filter(|(point, _)| {
            std::fs::metadata(point.join("tmp/x")).is_ok_and(|m| m.mode() & 0o4000 != 0)
        })
        .collect();
    assert_eq!(
        planted.len(),
        1,
        "the setuid file is not in one root filesystem"
    );
    for (point, options) in &overlays {
        let options: Vec<&str> = options.split(',').collect();
        assert!(
            options.contains(&"nosuid") && options.contains(&"nodev"),
            "the host mount of {} has options {options:?}: a setuid binary or device node \
             planted in the container works through this path",
            point.display()
        );
    }

    // Inside, the container's root behaves as on any runtime: the host's nosuid,nodev stop
    // at the host's mount, so setuid programs in images keep working.
    for (handler, id) in &non_root {
        let root_options = exec(
            &mut rt,
            id,
            "awk '$5 == \"/\" { print $6 }' /proc/self/mountinfo",
        )
        .await;
        let root_options: Vec<&str> = root_options.trim().split(',').collect();
        assert!(
            !root_options.contains(&"nosuid") && !root_options.contains(&"nodev"),
            "the container's / on handler {handler:?} has options {root_options:?}"
        );
    }

    // Bundles hold the containers' environment.
    let skip = image_content_dirs(&daemon);
    let mut configs = Vec::new();
    config_jsons_below(&daemon.root, &mut configs, &skip);
    config_jsons_below(&daemon.state, &mut configs, &skip);
    let secret: Vec<&PathBuf> = configs
        .iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("hunter2")))
        .collect();
    assert!(
        !secret.is_empty(),
        "no bundle config.json holds the container's environment: {configs:?}"
    );
    for path in &configs {
        let mode = std::fs::metadata(path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    }

    let mut found = Vec::new();
    for dir in [&daemon.root, &daemon.state] {
        let mode = std::fs::metadata(dir).unwrap().mode() & 0o777;
        if mode & 0o066 != 0 {
            found.push(format!("{mode:o} {}", dir.display()));
        }
        too_open_below(dir, &skip, &mut found);
    }
    assert!(
        found.is_empty(),
        "{} entries below the daemon's root and state are open to other users:\n{}",
        found.len(),
        found.join("\n")
    );

    for pod in &pods {
        stop_and_remove_pod(&mut rt, pod).await;
    }
}
