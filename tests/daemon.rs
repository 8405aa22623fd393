//! The daemon as an operator meets it: start-up, the socket, the lock, configuration
//! errors, Version/Status/RuntimeConfig, `criox ctl`, shutdown, and the static binary.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use criox_proto::v1::{RuntimeConfigRequest, VersionRequest};
use criox_testkit::{Daemon, criox_bin};

#[tokio::test]
async fn version_answers_over_the_socket() {
    let daemon = Daemon::start().await;
    let v = daemon
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "criox");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");
}

#[tokio::test]
async fn ctl_version_prints_the_runtime_name() {
    let daemon = Daemon::start().await;
    let out = daemon.ctl(&["version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("RuntimeName:  criox"), "{stdout}");
    assert!(stdout.contains("RuntimeApiVersion:  v1"), "{stdout}");
}

#[tokio::test]
async fn status_reports_network_readiness_from_the_cni_directory() {
    let daemon = Daemon::start().await;
    let mut rt = daemon.runtime().await;
    let status = criox_testkit::runtime_status(&mut rt, true).await;
    let conditions = status.status.unwrap().conditions;
    let runtime = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(runtime.status, "{runtime:?}");
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network
            .message
            .contains(&daemon.cni_dir.display().to_string()),
        "{network:?}"
    );
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["root"], daemon.root.display().to_string());

    let driver = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .linux
        .unwrap()
        .cgroup_driver;
    // The driver follows the init system: systemd as PID 1 owns the cgroup tree.
    let init = std::fs::read_to_string("/proc/1/comm").unwrap();
    let expected = if init.trim() == "systemd" {
        criox_proto::v1::CgroupDriver::Systemd
    } else {
        criox_proto::v1::CgroupDriver::Cgroupfs
    };
    assert_eq!(driver, expected as i32);
}

#[tokio::test]
async fn unbuilt_rpcs_answer_unimplemented_with_their_name() {
    let daemon = Daemon::start().await;
    let err = daemon
        .runtime()
        .await
        .checkpoint_container(criox_proto::v1::CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("CheckpointContainer"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_second_daemon_on_the_same_root_is_refused() {
    let daemon = Daemon::start().await;
    let other_socket = daemon.dir.join("other.sock");
    let out = Command::new(criox_bin())
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("--listen")
        .arg(&other_socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another criox daemon"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", daemon.pid())),
        "{stderr}"
    );
    assert!(!other_socket.exists());
    // The first daemon is unharmed.
    assert!(daemon.ctl(&["version"]).status.success());
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_a_stale_socket_is_replaced() {
    let mut daemon = Daemon::start().await;
    let status = daemon.stop();
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists(), "socket left behind");

    // A socket file left by a crash must not stop the next start.
    let stale = std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap();
    drop(stale);
    assert!(criox_testkit::is_socket(&daemon.socket));
    daemon.spawn().await;
    assert!(daemon.ctl(&["version"]).status.success());
}

#[test]
fn a_bad_config_key_is_reported_with_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("criox.toml");
    std::fs::write(&config, "root = \"/tmp/x\"\n\n[streaming]\nprot = 1\n").unwrap();
    let out = run_criox(&["--config", config.to_str().unwrap(), "config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("prot"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn config_prints_the_effective_configuration_with_drop_ins_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("criox.toml");
    std::fs::write(&config, "[streaming]\nport = 10010\n").unwrap();
    std::fs::create_dir(dir.path().join("criox.conf.d")).unwrap();
    std::fs::write(
        dir.path().join("criox.conf.d/10-runc.toml"),
        "[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\n[streaming]\nport = 10011\n",
    )
    .unwrap();
    let out = run_criox(&[
        "--config",
        config.to_str().unwrap(),
        "--root",
        "/srv/criox",
        "config",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(value["root"].as_str(), Some("/srv/criox"));
    assert_eq!(value["streaming"]["port"].as_integer(), Some(10011));
    assert_eq!(
        value["runtime"]["handlers"]["runc"]["path"].as_str(),
        Some("/usr/sbin/runc")
    );
    assert!(text.contains("# "), "comments expected:\n{text}");
}

#[test]
fn start_fails_cleanly_on_bad_paths() {
    let dir = tempfile::Builder::new().prefix("cx").tempdir().unwrap();
    let base = dir.path();

    // Unreadable config: a directory where the file should be.
    let empty = base.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    std::fs::create_dir(base.join("config-is-a-dir.toml")).unwrap();
    let out = run_criox(&[
        "--config",
        base.join("config-is-a-dir.toml").to_str().unwrap(),
    ]);
    assert_one_line_failure(&out, "config-is-a-dir.toml");

    // A socket path in a missing directory.
    let root = base.join("root1");
    let state = base.join("s1");
    let out = run_criox_in(
        &empty,
        &root,
        &state,
        &[
            "--listen",
            base.join("missing/dir/criox.sock").to_str().unwrap(),
        ],
    );
    assert_one_line_failure(&out, "missing/dir");
    assert!(!root.exists() && !state.exists(), "directories left behind");

    // A root on a read-only file system.
    let ro = base.join("ro");
    std::fs::create_dir(&ro).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &ro,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let _unmount = UnmountOnDrop(ro.clone());
    let state = base.join("s2");
    let root = ro.join("root");
    let out = run_criox_in(&empty, &root, &state, &[]);
    assert_one_line_failure(&out, root.to_str().unwrap());
    assert!(!state.exists(), "state directory left behind");

    // A state directory too long for the unix sockets that containers need below it.
    let long_state = base.join("a-state-directory-whose-name-is-far-too-long");
    let out = run_criox_in(&empty, &base.join("root3"), &long_state, &[]);
    assert_one_line_failure(&out, long_state.to_str().unwrap());
    assert!(!long_state.exists() && !base.join("root3").exists());
}

#[test]
fn the_binary_is_statically_linked() {
    let elf = std::fs::read(criox_bin()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit ELF expected");
    let headers = program_headers(&elf);
    assert!(
        !headers.iter().any(|h| h.kind == PT_INTERP),
        "{} names an ELF interpreter",
        criox_bin().display()
    );
    // Fixed-address, not a static-pie: monitors share the binary's constant tables with
    // the daemon instead of each relocating a private copy.
    let kind = u16::from_le_bytes([elf[16], elf[17]]);
    assert_eq!(
        kind,
        ET_EXEC,
        "{} is not a fixed-address executable",
        criox_bin().display()
    );
    if let Some(dynamic) = headers.iter().find(|h| h.kind == PT_DYNAMIC) {
        let entries = &elf[dynamic.offset..dynamic.offset + dynamic.size];
        let needed = entries
            .chunks_exact(16)
            .filter(|e| u64::from_le_bytes(e[..8].try_into().unwrap()) == DT_NEEDED)
            .count();
        assert_eq!(
            needed,
            0,
            "{} needs {needed} shared libraries",
            criox_bin().display()
        );
    }
}

const ET_EXEC: u16 = 2;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

struct ProgramHeader {
    kind: u32,
    offset: usize,
    size: usize,
}

/// The program headers of a 64-bit little-endian ELF file.
fn program_headers(elf: &[u8]) -> Vec<ProgramHeader> {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .map(|h| ProgramHeader {
            kind: u32_at(h),
            offset: u64_at(h + 8),
            size: u64_at(h + 32),
        })
        .collect()
}

fn run_criox(args: &[&str]) -> std::process::Output {
    Command::new(criox_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `criox --config CONFIG --root ROOT --state STATE EXTRA…`.
fn run_criox_in(
    config: &std::path::Path,
    root: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(["--root", root.to_str().unwrap()]);
    args.extend(["--state", state.to_str().unwrap()]);
    args.extend(extra);
    run_criox(&args)
}

fn assert_one_line_failure(out: &std::process::Output, names: &str) {
    assert!(!out.status.success(), "start should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(names), "{names} not named: {stderr}");
}

struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
