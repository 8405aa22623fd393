//! What tests look at on the host: mounts, cgroups, processes, directories, ports.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lazily unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let mut points = mounts_below(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A small tmpfs mounted at a directory for the length of a test, lazily unmounted when
/// dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path) -> Tmpfs {
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs at {}: {e}", at.display()));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    criox_runtime::mountinfo::current()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// True when `path` is a unix socket.
pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Names in a directory (empty when it is gone).
pub fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup directories named `rel` (an absolute cgroup path) in any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = entry.path().join(rel);
        if p.is_dir() {
            found.push(p);
        }
    }
    if Path::new("/sys/fs/cgroup").join(rel).is_dir() {
        found.push(Path::new("/sys/fs/cgroup").join(rel));
    }
    found
}

/// Pids of processes whose command line names `path` (a daemon's monitors name its state
/// directory).
pub fn processes_naming(path: &Path) -> Vec<i32> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// The pid a stalled helper script wrote to `path`, waiting up to ten seconds for it. The
/// file appears before the shell has written the pid into it.
pub async fn wait_for_pid_file(path: &Path) -> Option<i32> {
    for _ in 0..500 {
        let pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if pid.is_some() {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pid of container `id`'s monitor, from the pid file it keeps below the daemon's
/// state directory `state`.
pub fn monitor_pid(state: &Path, id: &str) -> i32 {
    let text = std::fs::read_to_string(state.join("c").join(id).join("monitor.pid"))
        .expect("the monitor's pid file");
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("pid file of {id}: {text:?}"))
}

/// Runs `command`, expected to exit 0 (its stderr in the failure message); its stdout.
pub fn output_ok(command: &mut std::process::Command) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The value of field `name` (e.g. "Uid:") in /proc/PID/status, trimmed; empty when the
/// process or the field is gone.
pub fn proc_status_field(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}
