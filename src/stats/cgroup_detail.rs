//! Figures of one cgroup beyond what CRI statistics carry: CPU time split into user and
//! system, memory peak and failure counters, OOM kills, CPU limits and throttling, kernel,
//! mapped and swap memory, processes, threads and their limit, open files and block I/O.
//! Only cAdvisor-style metrics use them, so the statistics hot path does not read them.
//!
//! Each figure is optional: a kernel or controller that lacks the file leaves it out rather
//! than failing the whole cgroup.

use std::path::{Path, PathBuf};

use super::cgroup::{Hierarchy, V1_UNLIMITED, flat_keyed, read_u64};
use super::read_to_string;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupDetail {
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    /// Times the memory limit was hit.
    pub memory_failcnt: Option<u64>,
    /// Highest memory usage seen.
    pub memory_max_usage_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    /// CFS quota per period, in microseconds; None when unlimited.
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// Relative CPU weight in v1 shares (v2 weights are converted).
    pub cpu_shares: Option<u64>,
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    /// CFS enforcement periods that elapsed, and those in which the cgroup was throttled.
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_ns: Option<u64>,
    /// Kernel memory (slabs, stacks, page tables) charged to the cgroup.
    pub memory_kernel_bytes: Option<u64>,
    /// Page cache mapped into processes.
    pub memory_mapped_file_bytes: Option<u64>,
    pub memory_swap_bytes: Option<u64>,
    /// Memory plus swap limit on v1, swap limit on v2; None when unlimited.
    pub memory_swap_limit_bytes: Option<u64>,
    /// Task limit of the pids controller; None when unlimited.
    pub threads_max: Option<u64>,
    /// Open file descriptors of the cgroup's processes, and how many are sockets.
    pub file_descriptors: Option<u64>,
    pub sockets: Option<u64>,
    /// Block I/O per device (v2 io.stat).
    pub io: Vec<DeviceIo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

impl Hierarchy {
    /// Reads the detail figures of `cgroup` (relative to the hierarchy's root).
    pub fn read_detail(&self, cgroup: &Path) -> CgroupDetail {
        let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
        match self {
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
            } => {
                let join = |root: &Option<PathBuf>| root.as_ref().map(|r| r.join(relative));
                detail_v1(join(cpu), join(cpuacct), join(memory), join(pids))
            }
            Hierarchy::V2(root) => detail_v2(&root.join(relative)),
        }
    }
}

fn detail_v1(
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
) -> CgroupDetail {
    let mut detail = CgroupDetail::default();
    if let Some(dir) = &cpuacct
        && let Ok(stat) = read_to_string(dir.join("cpuacct.stat"))
    {
        // cpuacct.stat counts clock ticks of USER_HZ.
        let tick_ns = 1_000_000_000 / clock_ticks_per_second();
        detail.cpu_user_ns = flat_keyed(&stat, "user").map(|t| t.saturating_mul(tick_ns));
        detail.cpu_system_ns = flat_keyed(&stat, "system").map(|t| t.saturating_mul(tick_ns));
    }
    if let Some(dir) = &cpu {
        // -1 means no quota.
        detail.cpu_quota_us = read_to_string(dir.join("cpu.cfs_quota_us"))
            .ok()
            .and_then(|q| q.trim().parse::<i64>().ok())
            .and_then(|q| u64::try_from(q).ok());
        detail.cpu_period_us = read_u64(dir.join("cpu.cfs_period_us")).ok();
        detail.cpu_shares = read_u64(dir.join("cpu.shares")).ok();
        if let Ok(stat) = read_to_string(dir.join("cpu.stat")) {
            detail.cfs_periods = flat_keyed(&stat, "nr_periods");
            detail.cfs_throttled_periods = flat_keyed(&stat, "nr_throttled");
            detail.cfs_throttled_ns = flat_keyed(&stat, "throttled_time");
        }
    }
    if let Some(dir) = &memory {
        detail.memory_kernel_bytes = read_u64(dir.join("memory.kmem.usage_in_bytes")).ok();
        if let Ok(stat) = read_to_string(dir.join("memory.stat")) {
            detail.memory_mapped_file_bytes =
                flat_keyed(&stat, "total_mapped_file").or_else(|| flat_keyed(&stat, "mapped_file"));
        }
        // memsw counts memory and swap together; without swap accounting there is none.
        let usage = read_u64(dir.join("memory.usage_in_bytes")).ok();
        let memsw = read_u64(dir.join("memory.memsw.usage_in_bytes")).ok();
        detail.memory_swap_bytes = match (memsw, usage) {
            (Some(both), Some(memory)) => Some(both.saturating_sub(memory)),
            (None, Some(_)) => Some(0),
            _ => None,
        };
        detail.memory_swap_limit_bytes = read_u64(dir.join("memory.memsw.limit_in_bytes"))
            .ok()
            .filter(|&limit| limit < V1_UNLIMITED);
        detail.memory_failcnt = read_u64(dir.join("memory.failcnt")).ok();
        detail.memory_max_usage_bytes = read_u64(dir.join("memory.max_usage_in_bytes")).ok();
        detail.oom_kills = read_to_string(dir.join("memory.oom_control"))
            .ok()
            .and_then(|text| flat_keyed(&text, "oom_kill"));
    }
    // Any v1 hierarchy lists the cgroup's processes and threads; pids is the usual one.
    if let Some(dir) = pids.as_ref().or(memory.as_ref()) {
        detail.processes = count_lines(&dir.join("cgroup.procs"));
        detail.threads = count_lines(&dir.join("tasks"));
        (detail.file_descriptors, detail.sockets) = open_files(&dir.join("cgroup.procs"));
    }
    if let Some(dir) = &pids {
        detail.threads_max = read_limit(&dir.join("pids.max"));
    }
    detail
}

fn detail_v2(dir: &Path) -> CgroupDetail {
    let mut detail = CgroupDetail::default();
    if let Ok(stat) = read_to_string(dir.join("cpu.stat")) {
        detail.cpu_user_ns = flat_keyed(&stat, "user_usec").map(|us| us.saturating_mul(1000));
        detail.cpu_system_ns = flat_keyed(&stat, "system_usec").map(|us| us.saturating_mul(1000));
        detail.cfs_periods = flat_keyed(&stat, "nr_periods");
        detail.cfs_throttled_periods = flat_keyed(&stat, "nr_throttled");
        detail.cfs_throttled_ns =
            flat_keyed(&stat, "throttled_usec").map(|us| us.saturating_mul(1000));
    }
    if let Ok(stat) = read_to_string(dir.join("memory.stat")) {
        // Older kernels have no "kernel" total: add up its parts.
        detail.memory_kernel_bytes = flat_keyed(&stat, "kernel").or_else(|| {
            let parts = ["kernel_stack", "pagetables", "percpu", "sock", "slab"];
            Some(parts.iter().filter_map(|k| flat_keyed(&stat, k)).sum())
        });
        detail.memory_mapped_file_bytes = flat_keyed(&stat, "file_mapped");
    }
    detail.memory_swap_bytes = read_u64(dir.join("memory.swap.current")).ok().or(Some(0));
    detail.memory_swap_limit_bytes = read_limit(&dir.join("memory.swap.max"));
    detail.threads_max = read_limit(&dir.join("pids.max"));
    (detail.file_descriptors, detail.sockets) = open_files(&dir.join("cgroup.procs"));
    if let Ok(stat) = read_to_string(dir.join("io.stat")) {
        detail.io = parse_io_stat(&stat);
    }
    if let Ok(max) = read_to_string(dir.join("cpu.max")) {
        let mut fields = max.split_whitespace();
        detail.cpu_quota_us = fields.next().and_then(|q| q.parse().ok());
        detail.cpu_period_us = fields.next().and_then(|p| p.parse().ok());
    }
    detail.cpu_shares = read_u64(dir.join("cpu.weight")).ok().map(weight_to_shares);
    if let Ok(events) = read_to_string(dir.join("memory.events")) {
        // "max" counts the times usage hit the limit, as failcnt does on v1.
        detail.memory_failcnt = flat_keyed(&events, "max");
        detail.oom_kills = flat_keyed(&events, "oom_kill");
    }
    detail.memory_max_usage_bytes = read_u64(dir.join("memory.peak")).ok();
    detail.processes = count_lines(&dir.join("cgroup.procs"));
    detail.threads = count_lines(&dir.join("cgroup.threads"));
    detail
}

/// A limit file holding a number or "max" (None).
fn read_limit(path: &Path) -> Option<u64> {
    read_to_string(path.to_path_buf())
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// io.stat: one line per device, "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...".
fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut io = DeviceIo {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let value = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => io.read_bytes = value,
                    "wbytes" => io.write_bytes = value,
                    "rios" => io.reads = value,
                    "wios" => io.writes = value,
                    _ => {}
                }
            }
            Some(io)
        })
        .collect()
}

/// Open descriptors and sockets of the processes listed in `procs`; processes that end
/// while being read count as having none.
fn open_files(procs: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = read_to_string(procs.to_path_buf()) else {
        return (None, None);
    };
    let (mut files, mut sockets) = (0, 0);
    for pid in text.split_whitespace() {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            files += 1;
            if std::fs::read_link(entry.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            }) {
                sockets += 1;
            }
        }
    }
    (Some(files), Some(sockets))
}

/// The inverse of the runtimes' shares→weight mapping ([2, 262144] onto [1, 10000]).
fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
}

fn count_lines(path: &Path) -> Option<u64> {
    read_to_string(path.to_path_buf())
        .ok()
        .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v2_detail_comes_from_cpu_and_memory_files() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("pod/ctr");
        std::fs::create_dir_all(&cg).unwrap();
        write(
            &cg,
            "cpu.stat",
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n",
        );
        write(&cg, "cpu.max", "50000 100000\n");
        write(&cg, "cpu.weight", "100\n");
        write(
            &cg,
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        write(&cg, "cgroup.procs", "10\n11\n");
        write(&cg, "cgroup.threads", "10\n11\n12\n");
        let detail = Hierarchy::V2(dir.path().to_path_buf()).read_detail(Path::new("/pod/ctr"));
        assert_eq!(detail.cpu_user_ns, Some(2_000_000));
        assert_eq!(detail.cpu_system_ns, Some(1_000_000));
        assert_eq!(detail.cpu_quota_us, Some(50_000));
        assert_eq!(detail.cpu_period_us, Some(100_000));
        assert_eq!(detail.cpu_shares, Some(weight_to_shares(100)));
        assert_eq!(detail.memory_failcnt, Some(4));
        assert_eq!(detail.oom_kills, Some(1));
        assert_eq!(detail.memory_max_usage_bytes, None);
        assert_eq!(detail.processes, Some(2));
        assert_eq!(detail.threads, Some(3));

        write(&cg, "cpu.max", "max 100000\n");
        let detail = Hierarchy::V2(dir.path().to_path_buf()).read_detail(Path::new("/pod/ctr"));
        assert_eq!(detail.cpu_quota_us, None);
        assert_eq!(detail.cpu_period_us, Some(100_000));
    }

    #[test]
    fn v1_detail_reads_each_controller_and_no_quota_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.join("c")).unwrap();
            p
        };
        let (cpu, memory, pids) = (root("cpu"), root("memory"), root("pids"));
        write(&cpu.join("c"), "cpuacct.stat", "user 30\nsystem 20\n");
        write(&cpu.join("c"), "cpu.cfs_quota_us", "-1\n");
        write(&cpu.join("c"), "cpu.cfs_period_us", "100000\n");
        write(&cpu.join("c"), "cpu.shares", "512\n");
        write(&memory.join("c"), "memory.failcnt", "7\n");
        write(&memory.join("c"), "memory.max_usage_in_bytes", "4096\n");
        write(
            &memory.join("c"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(&pids.join("c"), "cgroup.procs", "1\n");
        write(&pids.join("c"), "tasks", "1\n2\n");
        let hierarchy = Hierarchy::V1 {
            cpu: Some(cpu.clone()),
            cpuacct: Some(cpu),
            memory: Some(memory),
            pids: Some(pids),
        };
        let detail = hierarchy.read_detail(Path::new("/c"));
        let tick = 1_000_000_000 / clock_ticks_per_second();
        assert_eq!(detail.cpu_user_ns, Some(30 * tick));
        assert_eq!(detail.cpu_system_ns, Some(20 * tick));
        assert_eq!(detail.cpu_quota_us, None);
        assert_eq!(detail.cpu_period_us, Some(100_000));
        assert_eq!(detail.cpu_shares, Some(512));
        assert_eq!(detail.memory_failcnt, Some(7));
        assert_eq!(detail.memory_max_usage_bytes, Some(4096));
        assert_eq!(detail.oom_kills, Some(2));
        assert_eq!(detail.processes, Some(1));
        assert_eq!(detail.threads, Some(2));
    }

    #[test]
    fn default_weight_maps_to_default_shares() {
        assert_eq!(weight_to_shares(100), 2 + 99 * 262_142 / 9_999);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }
}
