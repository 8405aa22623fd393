//! Pod cgroups under the kubelet's `cgroup_parent`, made by the cgroupfs driver on cgroup
//! v1, v2 and hybrid hosts.
//!
//! Only directories are made here (and a few limit files written): the containers'
//! own cgroups below it belong to the OCI runtime. Directories that existed already
//! (the kubelet usually makes the pod's) are left alone on removal.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set {file} of cgroup {path}: {source}")]
    Limit {
        path: PathBuf,
        file: &'static str,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Layout {
    /// cgroup v1 controllers only.
    Legacy,
    /// v1 controllers plus a cgroup2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    Unified,
}

/// The node's cgroup layout and hierarchies, found once: cgroup filesystems are mounted at
/// boot and stay, while mountinfo, which finding them reads, grows with every pod and
/// container.
struct Node {
    layout: Layout,
    hierarchies: Vec<PathBuf>,
    unified: Option<PathBuf>,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let layout = find_layout();
        let (hierarchies, unified) = find_hierarchies(layout);
        Node {
            layout,
            hierarchies,
            unified,
        }
    })
}

pub fn detect() -> Layout {
    node().layout
}

/// Mount points of every hierarchy a pod cgroup (or a monitor's) goes in.
pub(crate) fn hierarchies() -> &'static [PathBuf] {
    &node().hierarchies
}

/// The mount point of the cgroup2 hierarchy, where the node has one.
pub(crate) fn unified() -> Option<&'static Path> {
    node().unified.as_deref()
}

fn find_layout() -> Layout {
    let is_v2 =
        |p: &str| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == CGROUP2_MAGIC);
    if is_v2(CGROUP_ROOT) {
        Layout::Unified
    } else if is_v2("/sys/fs/cgroup/unified") {
        Layout::Hybrid
    } else {
        Layout::Legacy
    }
}

fn find_hierarchies(layout: Layout) -> (Vec<PathBuf>, Option<PathBuf>) {
    if layout == Layout::Unified {
        return (
            vec![PathBuf::from(CGROUP_ROOT)],
            Some(PathBuf::from(CGROUP_ROOT)),
        );
    }
    let mut points = Vec::new();
    let mut unified = None;
    for m in criox_runtime::mountinfo::current() {
        if !m.mount_point.starts_with(CGROUP_ROOT) {
            continue;
        }
        if m.fs_type == "cgroup" {
            points.push(m.mount_point);
        } else if m.fs_type == "cgroup2" && layout == Layout::Hybrid && unified.is_none() {
            // One cgroup2 mount is the hierarchy; another would be the same tree again.
            unified = Some(m.mount_point.clone());
            points.push(m.mount_point);
        }
    }
    points.sort();
    points.dedup();
    (points, unified)
}

/// Limits that apply to the pod as a whole (its resources plus overhead).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodLimits {
    pub memory_limit: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
}

/// The pod cgroup: its path relative to each hierarchy, and the directories this pod
/// made, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodCgroup {
    pub path: String,
    pub created: Vec<PathBuf>,
}

/// Creates `path` (absolute, like `/kubepods/besteffort/pod123`) in every hierarchy.
pub fn create(path: &str, limits: Option<&PodLimits>) -> Result<PodCgroup, CgroupError> {
    let layout = detect();
    let mut cgroup = PodCgroup {
        path: path.to_string(),
        created: Vec::new(),
    };
    let relative = path.trim_start_matches('/');
    for hierarchy in hierarchies() {
        let full = hierarchy.join(relative);
        let mut missing: Vec<PathBuf> = full
            .ancestors()
            .take_while(|a| *a != hierarchy && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for dir in missing {
            match std::fs::create_dir(&dir).and_then(|()| super::searchable(&dir)) {
                Ok(()) => cgroup.created.push(dir),
                // Another pod made the same parent at the same moment; it is theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    let _ = remove(&cgroup);
                    return Err(CgroupError::Create { path: dir, source });
                }
            }
        }
        if let Some(limits) = limits
            && let Err(e) = apply(hierarchy, &full, layout, limits)
        {
            let _ = remove(&cgroup);
            return Err(e);
        }
    }
    Ok(cgroup)
}

fn apply(hierarchy: &Path, dir: &Path, layout: Layout, l: &PodLimits) -> Result<(), CgroupError> {
    for (file, value) in limit_files(hierarchy, layout, l) {
        std::fs::write(dir.join(file), value).map_err(|source| CgroupError::Limit {
            path: dir.to_path_buf(),
            file,
            source,
        })?;
    }
    Ok(())
}

/// The files of one hierarchy that hold `l`, with their values, in the order to write.
fn limit_files(hierarchy: &Path, layout: Layout, l: &PodLimits) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    let v2 = layout == Layout::Unified;
    let controllers = hierarchy.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let has = |name: &str| v2 || controllers.split(',').any(|c| c == name);
    if l.memory_limit > 0 && has("memory") {
        if v2 {
            files.push(("memory.max", l.memory_limit.to_string()));
        } else {
            files.push(("memory.limit_in_bytes", l.memory_limit.to_string()));
        }
    }
    if l.cpu_shares > 0 && has("cpu") {
        if v2 {
            // The runc conversion from shares (2..262144) to weight (1..10000).
            let weight = 1 + ((l.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            files.push(("cpu.weight", weight.to_string()));
        } else {
            files.push(("cpu.shares", l.cpu_shares.to_string()));
        }
    }
    if l.cpu_quota > 0 && has("cpu") {
        let period = if l.cpu_period > 0 {
            l.cpu_period
        } else {
            100_000
        };
        if v2 {
            files.push(("cpu.max", format!("{} {period}", l.cpu_quota)));
        } else {
            files.push(("cpu.cfs_period_us", period.to_string()));
            files.push(("cpu.cfs_quota_us", l.cpu_quota.to_string()));
        }
    }
    files
}

/// The child cgroup of the pod that its infra process runs in: the pod's own cgroup stays
/// free of processes, so that controllers can be enabled for the containers below it.
const INFRA_LEAF: &str = "infra";

/// Makes the infra process's cgroup below the pod's in every hierarchy that can take it,
/// and returns the `cgroup.procs` files to join. A v1 cpuset hierarchy is left out: a new
/// cpuset cgroup has no CPUs to run on until someone assigns some.
pub fn infra_procs(cgroup: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
    let relative = cgroup.path.trim_start_matches('/');
    let mut procs = Vec::new();
    for hierarchy in hierarchies() {
        let controllers = hierarchy.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if controllers.split(',').any(|c| c == "cpuset") {
            continue;
        }
        let leaf = hierarchy.join(relative).join(INFRA_LEAF);
        match std::fs::create_dir(&leaf).and_then(|()| super::searchable(&leaf)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: leaf, source }),
        }
        procs.push(leaf.join("cgroup.procs"));
    }
    Ok(procs)
}

/// Removes the infra cgroups, waiting briefly for an infra process that is still exiting.
fn remove_infra(cgroup: &PodCgroup) -> Result<(), CgroupError> {
    let relative = cgroup.path.trim_start_matches('/');
    for hierarchy in hierarchies() {
        let leaf = hierarchy.join(relative).join(INFRA_LEAF);
        super::remove_cgroup_dir(&leaf, std::time::Duration::from_secs(1))
            .map_err(|source| CgroupError::Remove { path: leaf, source })?;
    }
    Ok(())
}

/// Removes the directories this pod created, deepest first. Processes that are still
/// exiting keep the pod's cgroup busy for a moment, so it is retried briefly; a parent
/// this pod made that other pods' cgroups now live in is left to them.
pub fn remove(cgroup: &PodCgroup) -> Result<(), CgroupError> {
    if !cgroup.path.is_empty() {
        remove_infra(cgroup)?;
    }
    let own = Path::new(cgroup.path.trim_start_matches('/'));
    for dir in cgroup.created.iter().rev() {
        let shared_parent = !dir.ends_with(own);
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e)
                    if shared_parent
                        && matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) =>
                {
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 500 => {
                    // The pod is stopped: whatever still runs in its cgroup or in a
                    // container cgroup below it is the pod's and is only exiting slowly
                    // (a loaded node) or was left by an interrupted create.
                    if tries % 10 == 0 {
                        empty_subtree(dir);
                    }
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Kills every process in `dir` and the cgroups below it, and removes those below.
fn empty_subtree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            empty_subtree(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Writes `limits` in every hierarchy of an existing pod cgroup (UpdatePodSandboxResources); on a failure, puts back what each
/// file written so far held, so the pod keeps its old limits.
pub fn resize(path: &str, limits: &PodLimits) -> Result<(), CgroupError> {
    let layout = detect();
    let relative = path.trim_start_matches('/');
    let mut plan: Vec<(PathBuf, &'static str, String)> = Vec::new();
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(relative);
        for (file, value) in limit_files(hierarchy, layout, limits) {
            plan.push((dir.clone(), file, value));
        }
    }
    // Memory first: a CPU value the kernel refuses then shows that the undo works.
    plan.sort_by_key(|(_, file, _)| !file.starts_with("memory"));
    let mut undo: Vec<(PathBuf, String)> = Vec::new();
    for (dir, file, value) in plan {
        let target = dir.join(file);
        // Every limit file reads back in a form it accepts ("max 100000", "-1", a number).
        let before = std::fs::read_to_string(&target).map(|s| s.trim().to_string());
        let written = before
            .and_then(|before| std::fs::write(&target, &value).map(|()| before))
            .map_err(|source| CgroupError::Limit {
                path: dir.clone(),
                file,
                source,
            });
        match written {
            Ok(before) => undo.push((target, before)),
            Err(e) => {
                for (target, before) in undo.iter().rev() {
                    let _ = std::fs::write(target, before);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_hierarchy_is_the_cgroup2_one_among_the_hierarchies() {
        let magic = |p: &Path| nix::sys::statfs::statfs(p).unwrap().filesystem_type().0;
        assert!(!hierarchies().is_empty());
        match unified() {
            Some(u) => {
                assert!(hierarchies().iter().any(|h| h == u), "{u:?}");
                assert_eq!(magic(u), CGROUP2_MAGIC);
            }
            None => assert_eq!(detect(), Layout::Legacy),
        }
        for h in hierarchies()
            .iter()
            .filter(|h| Some(h.as_path()) != unified())
        {
            assert_ne!(magic(h), CGROUP2_MAGIC, "{h:?}");
        }
    }

    #[test]
    fn pod_cgroup_is_made_in_every_hierarchy_and_removed() {
        crate::test_support::assert_root();
        let name = format!("/criox-test-{}/pod-a", std::process::id());
        let limits = PodLimits {
            memory_limit: 64 << 20,
            cpu_shares: 512,
            ..PodLimits::default()
        };
        let cgroup = create(&name, Some(&limits)).unwrap();
        let layout = detect();
        let points = hierarchies();
        assert!(!points.is_empty());
        for point in points {
            assert!(
                point.join(name.trim_start_matches('/')).is_dir(),
                "{point:?}"
            );
        }
        // Parent and pod directory in each hierarchy.
        assert_eq!(cgroup.created.len(), points.len() * 2);
        let memory = points.iter().find(|p| p.ends_with("memory")).map(|p| {
            p.join(name.trim_start_matches('/'))
                .join("memory.limit_in_bytes")
        });
        if layout != Layout::Unified
            && let Some(file) = memory
        {
            assert_eq!(std::fs::read_to_string(file).unwrap().trim(), "67108864");
        }
        remove(&cgroup).unwrap();
        for point in points {
            assert!(
                !point
                    .join(format!("criox-test-{}", std::process::id()))
                    .exists()
            );
        }
    }

    #[test]
    fn limits_are_written_and_a_failure_puts_the_old_ones_back() {
        crate::test_support::assert_root();
        let name = format!("/criox-resize-{}/pod", std::process::id());
        let start = PodLimits {
            memory_limit: 64 << 20,
            cpu_shares: 512,
            ..PodLimits::default()
        };
        let pod = create(&name, Some(&start)).unwrap();
        struct Remove(PodCgroup);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = remove(&self.0);
            }
        }
        let pod = Remove(pod);
        let layout = detect();
        let memory_file = hierarchies().iter().find_map(|h| {
            let file = if layout == Layout::Unified {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            let f = h.join(name.trim_start_matches('/')).join(file);
            (layout == Layout::Unified || h.ends_with("memory")).then_some(f)
        });
        let memory_file = memory_file.expect("a memory hierarchy");
        let read = || {
            std::fs::read_to_string(&memory_file)
                .unwrap()
                .trim()
                .to_string()
        };

        let bigger = PodLimits {
            memory_limit: 128 << 20,
            ..start.clone()
        };
        resize(&pod.0.path, &bigger).unwrap();
        assert_eq!(read(), (128u64 << 20).to_string());

        // A CPU share the kernel refuses comes after the memory limit: the memory limit
        // must be back at 128 MiB afterwards.
        let refused = PodLimits {
            memory_limit: 96 << 20,
            cpu_shares: 512,
            cpu_quota: 1,
            cpu_period: 100_000,
        };
        assert!(resize(&pod.0.path, &refused).is_err());
        assert_eq!(read(), (128u64 << 20).to_string());
    }
}
