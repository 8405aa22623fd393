//! CPU, memory and process counts of one cgroup, on cgroup v1 (including hybrid hosts,
//! where the resource controllers are v1) and on the unified v2 hierarchy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{StatsError, read_to_string};

/// Where the controllers that statistics come from are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One mount point per v1 controller (absent controllers are `None`).
    V1 {
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
    /// The unified hierarchy's mount point.
    V2(PathBuf),
}

impl Hierarchy {
    /// The host's hierarchy, read once from /proc/self/mountinfo. Resource controllers
    /// mounted as v1 win over a cgroup2 mount beside them (hybrid hosts), since that is
    /// where runtimes put container limits there.
    pub fn host() -> &'static Hierarchy {
        static HOST: OnceLock<Hierarchy> = OnceLock::new();
        HOST.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            Hierarchy::from_mountinfo(&text)
        })
    }

    pub fn from_mountinfo(text: &str) -> Hierarchy {
        let mut cpu = None;
        let mut cpuacct = None;
        let mut memory = None;
        let mut pids = None;
        let mut unified = None;
        for m in criox_runtime::mountinfo::parse(text) {
            let mountpoint = m.mount_point;
            match m.fs_type.as_str() {
                "cgroup2" if unified.is_none() => unified = Some(mountpoint),
                "cgroup" => {
                    for opt in m.super_options.split(',') {
                        match opt {
                            "cpu" if cpu.is_none() => cpu = Some(mountpoint.clone()),
                            "cpuacct" if cpuacct.is_none() => cpuacct = Some(mountpoint.clone()),
                            "memory" if memory.is_none() => memory = Some(mountpoint.clone()),
                            "pids" if pids.is_none() => pids = Some(mountpoint.clone()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        match unified {
            Some(root)
                if cpu.is_none() && cpuacct.is_none() && memory.is_none() && pids.is_none() =>
            {
                Hierarchy::V2(root)
            }
            _ => Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
            },
        }
    }

    /// Reads the statistics of `cgroup`, a path relative to the hierarchy's root such as
    /// `/criox/<pod>/<container>`.
    pub fn read(&self, cgroup: &Path) -> Result<CgroupStats, StatsError> {
        let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
        match self {
            Hierarchy::V1 {
                cpuacct,
                memory,
                pids,
                ..
            } => {
                let cpuacct = cpuacct
                    .as_ref()
                    .ok_or(StatsError::NoController("cpuacct"))?;
                let memory = memory.as_ref().ok_or(StatsError::NoController("memory"))?;
                read_v1(
                    &cpuacct.join(relative),
                    &memory.join(relative),
                    pids.as_ref().map(|p| p.join(relative)),
                )
            }
            Hierarchy::V2(root) => read_v2(&root.join(relative)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time of all tasks, in nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory: MemoryStats,
    /// Tasks now in the cgroup, where the pids controller is available.
    pub processes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// All memory charged to the cgroup, page cache included.
    pub usage_bytes: u64,
    /// Usage minus inactive file pages: what the kubelet evicts on.
    pub working_set_bytes: u64,
    /// Anonymous memory and swap cache.
    pub rss_bytes: u64,
    /// Page cache.
    pub cache_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The limit, when one is set.
    pub limit_bytes: Option<u64>,
}

impl MemoryStats {
    /// Bytes left before the limit, when there is one.
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes
            .map(|limit| limit.saturating_sub(self.working_set_bytes))
    }
}

/// A limit this large means "no limit" on v1 (the page-rounded maximum of an i64).
pub(super) const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

fn read_v1(
    cpuacct: &Path,
    memory: &Path,
    pids: Option<PathBuf>,
) -> Result<CgroupStats, StatsError> {
    let cpu_usage_ns = read_u64(cpuacct.join("cpuacct.usage"))?;
    let usage_bytes = read_u64(memory.join("memory.usage_in_bytes"))?;
    let stat = read_to_string(memory.join("memory.stat"))?;
    let field = |name| flat_keyed(&stat, name).unwrap_or(0);
    let limit = read_u64(memory.join("memory.limit_in_bytes"))?;
    let memory = MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(field("total_inactive_file")),
        rss_bytes: field("total_rss"),
        cache_bytes: field("total_cache"),
        page_faults: field("total_pgfault"),
        major_page_faults: field("total_pgmajfault"),
        limit_bytes: (limit < V1_UNLIMITED).then_some(limit),
    };
    let processes = match pids {
        Some(dir) => Some(read_u64(dir.join("pids.current"))?),
        None => None,
    };
    Ok(CgroupStats {
        cpu_usage_ns,
        memory,
        processes,
    })
}

fn read_v2(dir: &Path) -> Result<CgroupStats, StatsError> {
    let cpu_path = dir.join("cpu.stat");
    let cpu = read_to_string(cpu_path.clone())?;
    let usage_usec = flat_keyed(&cpu, "usage_usec").ok_or_else(|| StatsError::Parse {
        path: cpu_path,
        detail: "no usage_usec".to_string(),
    })?;
    let usage_bytes = read_u64(dir.join("memory.current"))?;
    let stat = read_to_string(dir.join("memory.stat"))?;
    let field = |name| flat_keyed(&stat, name).unwrap_or(0);
    let max_path = dir.join("memory.max");
    let max = read_to_string(max_path.clone())?;
    let limit_bytes = match max.trim() {
        "max" => None,
        value => Some(parse_u64(value, &max_path)?),
    };
    let memory = MemoryStats {
        usage_bytes,
        working_set_bytes: usage_bytes.saturating_sub(field("inactive_file")),
        rss_bytes: field("anon"),
        cache_bytes: field("file"),
        page_faults: field("pgfault"),
        major_page_faults: field("pgmajfault"),
        limit_bytes,
    };
    let pids_path = dir.join("pids.current");
    let processes = if pids_path.exists() {
        Some(read_u64(pids_path)?)
    } else {
        None
    };
    Ok(CgroupStats {
        cpu_usage_ns: usage_usec.saturating_mul(1000),
        memory,
        processes,
    })
}

/// The value of `key` in a "key value" per line file such as memory.stat.
pub(super) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

pub(super) fn read_u64(path: PathBuf) -> Result<u64, StatsError> {
    let text = read_to_string(path.clone())?;
    parse_u64(text.trim(), &path)
}

fn parse_u64(text: &str, path: &Path) -> Result<u64, StatsError> {
    text.parse().map_err(|_| StatsError::Parse {
        path: path.to_path_buf(),
        detail: format!("{text:?} is not a number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_hosts_read_v1_controllers() {
        assert_eq!(
            Hierarchy::from_mountinfo(HYBRID),
            Hierarchy::V1 {
                cpu: Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                cpuacct: Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                memory: Some(PathBuf::from("/sys/fs/cgroup/memory")),
                pids: Some(PathBuf::from("/sys/fs/cgroup/pids")),
            }
        );
    }

    #[test]
    fn unified_hosts_read_v2() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Hierarchy::from_mountinfo(text),
            Hierarchy::V2(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn v2_files_are_read_and_unlimited_memory_has_no_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("pod/ctr");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(cg.join("memory.current"), "10000\n").unwrap();
        std::fs::write(
            cg.join("memory.stat"),
            "anon 4000\nfile 6000\ninactive_file 2500\npgfault 7\npgmajfault 1\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory.max"), "max\n").unwrap();
        let stats = Hierarchy::V2(dir.path().to_path_buf())
            .read(Path::new("/pod/ctr"))
            .unwrap();
        assert_eq!(stats.cpu_usage_ns, 1_500_000);
        assert_eq!(stats.memory.working_set_bytes, 7500);
        assert_eq!(stats.memory.rss_bytes, 4000);
        assert_eq!(stats.memory.page_faults, 7);
        assert_eq!(stats.memory.limit_bytes, None);
        assert_eq!(stats.memory.available_bytes(), None);
        assert_eq!(stats.processes, None);

        std::fs::write(cg.join("memory.max"), "20000\n").unwrap();
        let stats = Hierarchy::V2(dir.path().to_path_buf())
            .read(Path::new("/pod/ctr"))
            .unwrap();
        assert_eq!(stats.memory.available_bytes(), Some(12500));
    }

    #[test]
    fn a_vanished_cgroup_is_reported_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let err = Hierarchy::V2(dir.path().to_path_buf())
            .read(Path::new("/no/such"))
            .unwrap_err();
        assert!(err.is_gone(), "{err}");
    }

    /// A real cgroup on this host with a process burning CPU in it.
    #[test]
    fn host_cgroup_shows_cpu_use_and_processes() {
        let hierarchy = Hierarchy::host();
        let name = format!("criox-stats-test-{}", std::process::id());
        let dirs: Vec<PathBuf> = match hierarchy {
            Hierarchy::V1 {
                cpuacct,
                memory,
                pids,
                ..
            } => [cpuacct, memory, pids]
                .into_iter()
                .flatten()
                .map(|root| root.join(&name))
                .collect(),
            Hierarchy::V2(root) => vec![root.join(&name)],
        };
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap();
        }
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let cleanup = Cleanup {
            dirs: dirs.clone(),
            pid: child.id(),
        };
        for dir in &dirs {
            std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        let cgroup = PathBuf::from("/").join(&name);
        let first = hierarchy.read(&cgroup).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = hierarchy.read(&cgroup).unwrap();
        assert!(
            second.cpu_usage_ns > first.cpu_usage_ns,
            "{first:?} {second:?}"
        );
        if let Some(processes) = second.processes {
            assert_eq!(processes, 1);
        }
        let _ = child.kill();
        let _ = child.wait();
        drop(cleanup);
    }

    struct Cleanup {
        dirs: Vec<PathBuf>,
        pid: u32,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            for dir in &self.dirs {
                for _ in 0..100 {
                    if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}
