//! Container monitors live outside the daemon's cgroup (cgroupfs driver): killing every
//! process of the daemon's cgroup, as systemd's `KillMode=control-group` does on a restart
//! or the OOM killer might on the daemon's memory limit, leaves containers and their
//! monitors running; the next daemon takes them over, and removal takes the monitor's
//! cgroup away.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criox_proto::v1::*;
use criox_testkit::container_status;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A cgroup of the test's own in every hierarchy, at each hierarchy's root; whatever is
/// left in it is killed by pid and it is removed on drop.
struct TestCgroup {
    dirs: Vec<PathBuf>,
}

/// Mount points of the cgroup hierarchies (v1 controllers, named ones, cgroup2).
fn hierarchies() -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = criox_runtime::mountinfo::current()
        .into_iter()
        .filter(|m| matches!(m.fs_type.as_str(), "cgroup" | "cgroup2"))
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .collect();
    points.sort();
    points.dedup();
    points
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let mut cgroup = TestCgroup { dirs: Vec::new() };
        for point in hierarchies() {
            let dir = point.join(name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
            // A new cpuset cgroup has no CPUs or memory nodes until given its parent's.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(point.join(file)) {
                    let _ = std::fs::write(dir.join(file), value.trim());
                }
            }
            cgroup.dirs.push(dir);
        }
        cgroup
    }

    /// Moves a process (all its threads) into the cgroup in every hierarchy.
    fn join(&self, pid: u32) {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("join {dir:?}: {e}"));
        }
    }

    fn processes(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .flat_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort();
        pids.dedup();
        pids
    }

    /// SIGKILL to every process until none is left, as systemd's control-group kill.
    fn kill_all(&self) -> Vec<i32> {
        let mut killed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return killed;
            }
            assert!(Instant::now() < deadline, "still in the cgroup: {left:?}");
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                if !killed.contains(&pid) {
                    killed.push(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.kill_all()));
        for dir in &self.dirs {
            let mut tries = 0;
            while std::fs::remove_dir(dir).is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
                && tries < 200
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The cgroup path of `pid` in each hierarchy, as /proc/<pid>/cgroup lists them.
fn cgroups_of(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie has ended; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_daemons_cgroup_leaves_containers_and_monitors_running() {
    let name = criox_testkit::unique("criox-daemon-cg");
    let cgroup = TestCgroup::new(&name);
    let mut daemon = criox_testkit::daemon_with_image(&criox_testkit::busybox_image(), "").await;
    // The daemon runs in a cgroup of its own, as a service does.
    cgroup.join(daemon.pid());
    let own = format!("/{name}");
    assert!(
        cgroups_of(daemon.pid() as i32).iter().all(|c| *c == own),
        "{:?}",
        cgroups_of(daemon.pid() as i32)
    );
    let mut rt = daemon.runtime().await;
    let uid = criox_testkit::unique("mcg");
    let mut pod_config = criox_testkit::pods::pod_config("mcg", &uid);
    criox_testkit::pods::on_host_network(&mut pod_config, NamespaceMode::Container);
    let pod = criox_testkit::pods::run_pod(&mut rt, pod_config.clone()).await;
    let mut sleeper = criox_testkit::busybox_container("sleeper", &["sleep", "1000"]);
    sleeper.log_path = String::new();
    let id = criox_testkit::run_container(&mut rt, &pod, &pod_config, sleeper).await;

    let state_dir = daemon.state.join("c").join(&id);
    let monitors = criox_testkit::processes_naming(&state_dir);
    assert_eq!(monitors.len(), 1, "monitors of {state_dir:?}: {monitors:?}");
    let monitor = monitors[0];
    let monitor_cgroup = format!("/criox-monitors/{id}");
    let placed = cgroups_of(monitor);
    // In every hierarchy: the cgroup2 one it is born in, the v1 ones it moves itself into.
    assert!(
        placed.iter().all(|c| *c == monitor_cgroup),
        "the monitor's cgroups: {placed:?}"
    );
    let monitor_dirs = criox_testkit::cgroup_dirs(&monitor_cgroup);
    assert!(!monitor_dirs.is_empty());

    // systemd's control-group kill (or an OOM kill of the whole group).
    let killed = cgroup.kill_all();
    assert!(killed.contains(&(daemon.pid() as i32)), "{killed:?}");
    assert!(
        !killed.contains(&monitor),
        "the monitor was in the daemon's cgroup"
    );
    daemon.kill();
    assert!(alive(monitor), "the monitor died with the daemon's cgroup");

    daemon.spawn().await;
    let mut rt = daemon.runtime().await;
    assert_eq!(
        container_status(&mut rt, &id).await.state,
        ContainerState::ContainerRunning as i32,
        "{}",
        daemon.log()
    );
    criox_testkit::stop_container(&mut rt, &id, 0).await;
    assert_eq!(
        container_status(&mut rt, &id).await.state,
        ContainerState::ContainerExited as i32
    );
    criox_testkit::remove_container(&mut rt, &id).await;
    let left: Vec<_> = monitor_dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "monitor cgroups left: {left:?}");
    assert!(!alive(monitor));
    criox_testkit::pods::stop_and_remove_pod(&mut rt, &pod).await;
}
