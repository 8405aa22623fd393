//! Cgroup resources from the CRI's `LinuxContainerResources`, and the container's cgroup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use criox_proto::v1;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use super::error::{Result, SpecError};

const FIELD: &str = "linux.resources";

fn non_negative(name: &str, value: i64) -> Result<Option<i64>> {
    match value {
        0 => Ok(None),
        v if v < 0 => Err(SpecError::invalid(
            format!("{FIELD}.{name}"),
            format!("{v} is negative"),
        )),
        v => Ok(Some(v)),
    }
}

/// A cpuset list such as `0-3,8`.
fn cpuset(name: &str, value: &str) -> Result<Option<String>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let valid = value.split(',').all(|part| {
        let mut ends = part.splitn(2, '-');
        let lo = ends.next().and_then(|s| s.trim().parse::<u32>().ok());
        match (lo, ends.next()) {
            (Some(_), None) => true,
            (Some(lo), Some(hi)) => hi.trim().parse::<u32>().is_ok_and(|hi| hi >= lo),
            _ => false,
        }
    });
    if !valid {
        return Err(SpecError::invalid(
            format!("{FIELD}.{name}"),
            format!("{value:?} is not a list of numbers and ranges"),
        ));
    }
    Ok(Some(value.to_string()))
}

/// `2MB`, `1GB`, `64KB`: what the hugetlb controller calls its page sizes.
fn page_size(i: usize, size: &str) -> Result<String> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.parse::<u64>().is_err() || !matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB") {
        return Err(SpecError::invalid(
            format!("{FIELD}.hugepage_limits[{i}].page_size"),
            format!("{size:?} is not a page size such as 2MB or 1GB"),
        ));
    }
    Ok(size.to_string())
}

/// What the node offers that decides how some resources are expressed.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupSupport {
    pub unified: bool,
    pub swap: bool,
}

/// The container's resources; the device rules are added by the caller.
pub fn build(
    r: Option<&v1::LinuxContainerResources>,
    node: CgroupSupport,
) -> Result<LinuxResources> {
    let Some(r) = r else {
        return Ok(LinuxResourcesBuilder::default().build()?);
    };
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(p) = non_negative("cpu_period", r.cpu_period)? {
        cpu = cpu.period(p as u64);
    }
    if let Some(q) = non_negative("cpu_quota", r.cpu_quota)? {
        cpu = cpu.quota(q);
    }
    if let Some(s) = non_negative("cpu_shares", r.cpu_shares)? {
        cpu = cpu.shares(s as u64);
    }
    if let Some(c) = cpuset("cpuset_cpus", &r.cpuset_cpus)? {
        cpu = cpu.cpus(c);
    }
    if let Some(m) = cpuset("cpuset_mems", &r.cpuset_mems)? {
        cpu = cpu.mems(m);
    }

    let mut memory = LinuxMemoryBuilder::default();
    let limit = non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    let swap = non_negative("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes)?;
    if let Some(l) = limit {
        memory = memory.limit(l);
    }
    if node.swap {
        // memory+swap equal to memory: no swap unless the request allows some.
        if let Some(s) = swap.or(limit) {
            memory = memory.swap(s);
        }
    } else if swap.is_some() {
        return Err(SpecError::invalid(
            format!("{FIELD}.memory_swap_limit_in_bytes"),
            "swap accounting is not available on this node",
        ));
    }

    let mut hugepages = Vec::new();
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let limit = i64::try_from(h.limit).map_err(|_| {
            SpecError::invalid(
                format!("{FIELD}.hugepage_limits[{i}].limit"),
                format!("{} is too large", h.limit),
            )
        })?;
        hugepages.push(
            LinuxHugepageLimitBuilder::default()
                .page_size(page_size(i, &h.page_size)?)
                .limit(limit)
                .build()?,
        );
    }

    let mut b = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .memory(memory.build()?);
    if !hugepages.is_empty() {
        b = b.hugepage_limits(hugepages);
    }
    if !r.unified.is_empty() {
        if !node.unified {
            return Err(SpecError::invalid(
                format!("{FIELD}.unified"),
                "requires a cgroup v2 node",
            ));
        }
        for key in r.unified.keys() {
            if key.is_empty() || key.contains('/') || !key.contains('.') {
                return Err(SpecError::invalid(
                    format!("{FIELD}.unified"),
                    format!("{key:?} is not a cgroup v2 file name"),
                ));
            }
        }
        let unified: HashMap<String, String> = r.unified.clone().into_iter().collect();
        b = b.unified(unified);
    }
    Ok(b.build()?)
}

/// The CRI's oom_score_adj, raised to `floor` when the node cannot go below it.
pub fn oom_score_adj(value: i64, floor: i32) -> Result<i32> {
    if !(-1000..=1000).contains(&value) {
        return Err(SpecError::invalid(
            format!("{FIELD}.oom_score_adj"),
            format!("{value} is outside -1000 to 1000"),
        ));
    }
    Ok((value as i32).max(floor))
}

/// `<parent>/<id>` in cgroupfs form; `<parent>/criox-<id>.scope` under the systemd driver,
/// or runc's `<slice>:criox:<id>` there when the runtime makes the scope itself
/// (`runtime_scope`).
pub fn cgroups_path(parent: &str, id: &str, runtime_scope: bool) -> Result<PathBuf> {
    let parent = if parent.is_empty() { "/criox" } else { parent };
    if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(
            "pod cgroup_parent",
            format!("{parent:?} is not an absolute cgroupfs path"),
        ));
    }
    if id.is_empty() || id.contains('/') || id == ".." {
        return Err(SpecError::invalid(
            "container id",
            format!("{id:?} cannot name a cgroup"),
        ));
    }
    if crate::cgroup_driver::is_systemd() {
        // The container's scope in the pod's slice (the parent is the slice's path).
        if runtime_scope {
            return crate::cgroup_driver::systemd_cgroups_path(parent, id)
                .map(PathBuf::from)
                .map_err(|e| SpecError::invalid("pod cgroup_parent", e.to_string()));
        }
        return Ok(PathBuf::from(crate::cgroup_driver::scope_path(parent, id)));
    }
    Ok(Path::new(parent).join(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> v1::LinuxContainerResources {
        v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![v1::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn all_fields_map() {
        let r = build(
            Some(&full()),
            CgroupSupport {
                unified: false,
                swap: true,
            },
        )
        .unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1,3"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(
            mem.swap(),
            Some(64 << 20),
            "no swap beyond the limit by default"
        );
        let huge = &r.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((huge.page_size().as_str(), huge.limit()), ("2MB", 4 << 20));
    }

    #[test]
    fn without_swap_accounting_swap_is_left_out() {
        let r = build(Some(&full()), CgroupSupport::default()).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().swap(), None);
        let mut req = full();
        req.memory_swap_limit_in_bytes = 1 << 30;
        assert!(build(Some(&req), CgroupSupport::default()).is_err());
    }

    #[test]
    fn negative_values_name_the_field() {
        for (name, set) in [
            (
                "cpu_period",
                (|r: &mut v1::LinuxContainerResources| r.cpu_period = -1) as fn(&mut _),
            ),
            ("cpu_quota", |r| r.cpu_quota = -5),
            ("cpu_shares", |r| r.cpu_shares = -2),
            ("memory_limit_in_bytes", |r| r.memory_limit_in_bytes = -1),
            ("memory_swap_limit_in_bytes", |r| {
                r.memory_swap_limit_in_bytes = -1
            }),
        ] {
            let mut r = full();
            set(&mut r);
            let e = build(
                Some(&r),
                CgroupSupport {
                    unified: true,
                    swap: true,
                },
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("linux.resources.{name}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn unified_needs_cgroup_v2_and_file_names() {
        let mut r = full();
        r.unified.insert("memory.high".into(), "1000000".into());
        assert!(
            build(
                Some(&r),
                CgroupSupport {
                    unified: false,
                    swap: false
                }
            )
            .is_err()
        );
        let ok = build(
            Some(&r),
            CgroupSupport {
                unified: true,
                swap: false,
            },
        )
        .unwrap();
        assert_eq!(ok.unified().as_ref().unwrap()["memory.high"], "1000000");
        r.unified.insert("../escape".into(), "1".into());
        assert!(
            build(
                Some(&r),
                CgroupSupport {
                    unified: true,
                    swap: false
                }
            )
            .is_err()
        );
    }

    #[test]
    fn bad_cpuset_and_page_size() {
        let mut r = full();
        r.cpuset_cpus = "3-1".into();
        assert!(
            build(Some(&r), CgroupSupport::default())
                .unwrap_err()
                .to_string()
                .contains("cpuset_cpus")
        );
        let mut r = full();
        r.hugepage_limits[0].page_size = "2M".into();
        assert!(
            build(Some(&r), CgroupSupport::default())
                .unwrap_err()
                .to_string()
                .contains("hugepage_limits[0].page_size")
        );
    }

    #[test]
    fn oom_score_adj_is_clamped_to_the_floor() {
        assert_eq!(oom_score_adj(-998, 0).unwrap(), 0);
        assert_eq!(oom_score_adj(-998, -1000).unwrap(), -998);
        assert_eq!(oom_score_adj(1000, 0).unwrap(), 1000);
        assert!(oom_score_adj(1001, 0).is_err());
    }
}
