//! Joining the pod's network and PID namespaces by path.

use criox_testkit::streaming::{KillOnDrop, Netns};

use super::*;

/// A process this test started indirectly, killed by pid when dropped.
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The pid of a child of `parent`, found through /proc (the stat's fourth field).
fn child_of(parent: u32) -> Option<u32> {
    for _ in 0..200 {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let ppid = after_comm.split_whitespace().nth(1);
            if ppid == Some(parent.to_string().as_str()) {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

#[test]
fn runc_joins_the_pods_network_and_pid_namespaces_by_path() {
    // The pod's network namespace, told apart from any other by its default TTL.
    let netns = Netns::new(&unique("criox-spec-"));
    let ok = netns
        .exec(&["sysctl", "-qw", "net.ipv4.ip_default_ttl=77"])
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "set the ttl in {}", netns.0);

    // The pod's PID namespace, with `sleep` as its PID 1.
    let infra = KillOnDrop(
        Command::new("unshare")
            .args(["--pid", "--fork", "sleep", "600"])
            .spawn()
            .expect("start unshare"),
    );
    let infra_pid = child_of(infra.0.id()).expect("the pid namespace's first process");
    // Dropped before `infra`: unshare then reaps its child and exits on its own.
    let _infra_pid_one = KillPid(infra_pid);

    let mut pod = test_pod();
    pod.network = PodNamespace::Path(PathBuf::from(netns.path()));
    pod.pid = PodPid::of_infra(infra_pid);
    let config = container(
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_default_ttl /proc/1/comm",
        ],
        |s| {
            let ns = s.namespace_options.as_mut().expect("namespace options");
            ns.network = v1::NamespaceMode::Pod as i32;
            ns.pid = v1::NamespaceMode::Pod as i32;
        },
    );
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run_in(&pod, &config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            vec!["77", "sleep"],
            "{runtime:?}"
        );
    }
}
