//! The container's cgroup, its hostname, and the resource limits in the cgroup.

use super::*;

#[test]
fn runc_puts_the_container_in_its_cgroup_and_hostname() {
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let (code, out, err) = b.run(
            &container(&["sh", "-c", "cat /proc/self/cgroup; hostname"], |_| {}),
            &image(""),
        );
        assert_eq!(code, 0, "stderr: {err}");
        let own = format!("/{}", b.id);
        assert!(
            out.lines().any(|l| l.ends_with(&own)),
            "no cgroup named {own} in:\n{out}"
        );
        assert_eq!(out.lines().last(), Some("spec-test"));
    }
}

#[test]
fn runc_applies_memory_and_cpu_limits() {
    // On cgroup v2 the shares become a weight: 1 + (256 - 2) * 9999 / 262142.
    let (files, expected) = if NodeFacts::detect().cgroup_v2 {
        (
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight",
            vec!["67108864", "20000 100000", "10"],
        )
    } else {
        (
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
             /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares",
            vec!["67108864", "20000", "100000", "256"],
        )
    };
    for runtime in RUNTIMES {
        let b = Bundle::new(runtime);
        let mut config = container(&["sh", "-c", files], |_| {});
        config.linux.as_mut().expect("linux config").resources =
            Some(v1::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_quota: 20_000,
                cpu_period: 100_000,
                cpu_shares: 256,
                ..Default::default()
            });
        let (code, out, err) = b.run(&config, &image(""));
        assert_eq!(code, 0, "{runtime:?}: {err}");
        let values: Vec<&str> = out.lines().collect();
        assert_eq!(values, expected, "{runtime:?}");
    }
}
