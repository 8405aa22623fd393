//! Each container's monitor lives outside the daemon's cgroup, so that whatever ends the
//! daemon's cgroup (systemd's `KillMode=control-group` on a restart, the OOM killer on the
//! daemon's memory limit) never reaches a monitor, and through it a container.
//!
//! - cgroupfs: `/criox-monitors/<id>` in every hierarchy (v1 controllers, `name=systemd`,
//!   the unified tree), beside the kubelet's `/kubepods`. The monitor is born in the
//!   unified one and moves itself into the others before it forks anything ([`make`]
//!   feeds the launcher); the cgroup goes when the container does.
//! - systemd: a transient scope `criox-monitor-<id>.scope` in `system.slice`, as CRI-O
//!   places conmon, started with the monitor's pid once the monitor has reported.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criox_runtime::MonitorCgroup;

use super::cgroupfs::{hierarchies, unified};

/// The cgroup (below each hierarchy's root) that holds one cgroup per monitor.
pub const PARENT: &str = "criox-monitors";
/// The slice of monitor scopes under the systemd driver.
pub const SLICE: &str = "system.slice";

/// How long a monitor cgroup may stay empty before a start-up sweep takes it for an
/// orphan: every daemon on the host shares [`PARENT`], and another daemon's monitor joins
/// its cgroup within milliseconds of making it.
const ORPHAN_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MonitorCgroupError {
    #[error("container {id}: cannot create the monitor cgroup {path}: {source}")]
    Create {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: cannot remove the monitor cgroup {path}: {source}")]
    Remove {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: cannot move monitor {pid} into {path}: {source}")]
    Join {
        id: String,
        pid: i32,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: monitor scope: {message}")]
    Scope { id: String, message: String },
}

/// The scope unit of a container's monitor under the systemd driver.
pub fn scope_name(id: &str) -> String {
    format!("{}-monitor-{id}.scope", super::SCOPE_PREFIX)
}

/// The monitor cgroup's directory in every hierarchy it goes in, each with whether it is
/// the cgroup2 one.
fn dirs(id: &str) -> Vec<(PathBuf, bool)> {
    hierarchies()
        .iter()
        .map(|h| (h.join(PARENT).join(id), Some(h.as_path()) == unified()))
        .collect()
}

/// A new v1 cpuset cgroup has no CPUs or memory nodes to run on: the monitor's cgroup
/// and its parent take their parent's, level by level.
fn inherit_cpuset(dir: &std::path::Path) {
    let Some(hierarchy) = dir.parent().and_then(|p| p.parent()) else {
        return;
    };
    let name = hierarchy.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.split(',').any(|c| c == "cpuset") {
        return;
    }
    for (parent, child) in [
        (hierarchy, dir.parent().unwrap_or(dir)),
        (dir.parent().unwrap_or(dir), dir),
    ] {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = std::fs::read_to_string(child.join(file)).unwrap_or_default();
            if own.trim().is_empty()
                && let Ok(value) = std::fs::read_to_string(parent.join(file))
            {
                let _ = std::fs::write(child.join(file), value.trim());
            }
        }
    }
}

/// cgroupfs: makes the monitor's cgroup in every hierarchy and returns its directories,
/// which the monitor is started in.
pub fn make(id: &str) -> Result<MonitorCgroup, MonitorCgroupError> {
    let mut cgroup = MonitorCgroup::default();
    for (dir, is_unified) in dirs(id) {
        let made_here = std::fs::create_dir_all(&dir)
            .and_then(|()| dir.parent().map_or(Ok(()), super::searchable))
            .and_then(|()| super::searchable(&dir));
        if let Err(source) = made_here {
            for d in cgroup.unified.iter().chain(&cgroup.v1) {
                let _ = std::fs::remove_dir(d);
            }
            return Err(MonitorCgroupError::Create {
                id: id.to_string(),
                path: dir,
                source,
            });
        }
        inherit_cpuset(&dir);
        if is_unified {
            cgroup.unified = Some(dir);
        } else {
            cgroup.v1.push(dir);
        }
    }
    Ok(cgroup)
}

/// cgroupfs: moves a monitor that already runs (one started by a daemon without monitor
/// cgroups) into its cgroup.
pub fn adopt(id: &str, pid: i32) -> Result<(), MonitorCgroupError> {
    let cgroup = make(id)?;
    for dir in cgroup.unified.iter().chain(&cgroup.v1) {
        let file = dir.join("cgroup.procs");
        std::fs::write(&file, pid.to_string()).map_err(|source| MonitorCgroupError::Join {
            id: id.to_string(),
            pid,
            path: file.clone(),
            source,
        })?;
    }
    Ok(())
}

/// cgroupfs: removes the monitor's cgroup, waiting up to 2 s for a monitor that is still
/// writing the container's exit on its way out. One that is gone already is fine.
pub fn remove(id: &str) -> Result<(), MonitorCgroupError> {
    for (dir, _) in dirs(id) {
        super::remove_cgroup_dir(&dir, Duration::from_secs(2)).map_err(|source| {
            MonitorCgroupError::Remove {
                id: id.to_string(),
                path: dir.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// cgroupfs, at start-up: removes the monitor cgroups of containers no daemon knows any
/// more (a crash between a monitor's end and its container's removal): empty ones whose
/// container `known` does not name and that are older than [`ORPHAN_AGE`]. A cgroup that
/// still holds a process is never touched (rmdir refuses it).
pub fn sweep(known: impl Fn(&str) -> bool) -> usize {
    let mut removed = 0;
    for hierarchy in hierarchies() {
        let Ok(entries) = std::fs::read_dir(hierarchy.join(PARENT)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            if known(id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age >= ORPHAN_AGE);
            let empty = std::fs::read_to_string(entry.path().join("cgroup.procs"))
                .is_ok_and(|p| p.trim().is_empty());
            if old && empty && std::fs::remove_dir(entry.path()).is_ok() {
                tracing::info!(cgroup = %entry.path().display(), "removed an orphaned monitor cgroup");
                removed += 1;
            }
        }
    }
    removed
}

/// systemd: puts a running monitor in its own scope (a no-op when the scope is up).
pub async fn scope(id: &str, pid: i32) -> Result<(), MonitorCgroupError> {
    let unit = scope_name(id);
    let err = |e: super::systemd::SystemdError| MonitorCgroupError::Scope {
        id: id.to_string(),
        message: e.to_string(),
    };
    if super::systemd::active_state(&unit)
        .await
        .map_err(err)?
        .as_deref()
        == Some("active")
    {
        return Ok(());
    }
    super::systemd::start_transient(&unit, Some(SLICE), &[pid as u32], Vec::new())
        .await
        .map_err(err)
}

/// systemd: stops the monitor's scope; one that is gone already is fine.
pub async fn remove_scope(id: &str) -> Result<(), MonitorCgroupError> {
    super::systemd::stop(&scope_name(id))
        .await
        .map_err(|e| MonitorCgroupError::Scope {
            id: id.to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_units_and_cgroups_are_named_per_container() {
        assert_eq!(scope_name("abc"), "criox-monitor-abc.scope");
        for (dir, _) in dirs("abc") {
            assert!(dir.ends_with("criox-monitors/abc"), "{dir:?}");
        }
    }
}
