//! The node's cgroup driver (`runtime.cgroup_manager`): cgroupfs, where criox makes
//! cgroup directories itself, or systemd, where systemd owns the cgroup tree and every
//! cgroup is a unit (`cgroupDriver: systemd` in the kubelet).
//!
//! Under systemd a pod's `cgroup_parent` is a slice name as the kubelet sends it
//! (`kubepods-besteffort-pod<uid>.slice`), which [`expand_slice`] turns into its cgroup
//! path (`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`)
//! where a path is needed (statistics, the runtime's cgroupfs view). Each container runs
//! in a transient scope `criox-<id>.scope` in the pod's slice, made through systemd's
//! D-Bus API ([`systemd`]) with the container's resources as unit properties.
//!
//! Container monitors live outside the daemon's cgroup under either driver ([`monitor`]).
//!
//! The driver is chosen once, when the daemon starts ([`set`]); everything else asks
//! [`is_systemd`].

pub mod cgroupfs;
pub mod monitor;
pub mod systemd;

use std::sync::OnceLock;
use std::time::Duration;

static SYSTEMD: OnceLock<bool> = OnceLock::new();

/// Records the configured driver; the first call wins (the daemon calls it at start).
pub fn set(systemd: bool) {
    let _ = SYSTEMD.set(systemd);
}

/// Whether the systemd driver is in use. Unit tests and `criox oci` never set it: cgroupfs.
pub fn is_systemd() -> bool {
    SYSTEMD.get().copied().unwrap_or(false)
}

/// Removes a cgroup directory, retrying every 10 ms for up to `patience` while it is busy
/// with processes still on their way out; one that is gone already is fine.
pub fn remove_cgroup_dir(dir: &std::path::Path, patience: Duration) -> std::io::Result<()> {
    const PAUSE: Duration = Duration::from_millis(10);
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && PAUSE * tries < patience => {
                tries += 1;
                std::thread::sleep(PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The prefix of every unit criox makes: `criox-<id>.scope`, as runc's `slice:criox:<id>`.
pub const SCOPE_PREFIX: &str = "criox";

/// The slice of pods that gave no `cgroup_parent`, under the systemd driver.
pub fn default_pod_slice(pod_id: &str) -> String {
    format!("{SCOPE_PREFIX}-pod{pod_id}.slice")
}

/// The scope unit of a container (or of a pod's infra process).
pub fn scope_name(id: &str) -> String {
    format!("{SCOPE_PREFIX}-{id}.scope")
}

pub use criox_formats::cri_fields::slice::{SliceError, check_slice};

/// The cgroup path of a slice: `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, as
/// systemd places it (and runc's `ExpandSlice`); `-.slice` is `/`.
pub fn expand_slice(name: &str) -> Result<String, SliceError> {
    check_slice(name)?;
    if name == "-.slice" {
        return Ok("/".to_string());
    }
    let stem = name.strip_suffix(".slice").unwrap_or(name);
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

/// The slice a cgroup path made by [`expand_slice`] ends in: `/a.slice/a-b.slice` → `a-b.slice`.
pub fn slice_of_path(path: &str) -> Option<String> {
    if path == "/" {
        return Some("-.slice".to_string());
    }
    let last = path.rsplit('/').next()?;
    (check_slice(last).is_ok() && expand_slice(last).ok()? == path).then(|| last.to_string())
}

/// A container's cgroup path under the systemd driver: its scope in the pod's slice,
/// given the pod's expanded slice path.
pub fn scope_path(pod_path: &str, id: &str) -> String {
    format!("{}/{}", pod_path.trim_end_matches('/'), scope_name(id))
}

/// runc's systemd form of a container's cgroupsPath, `<pod slice>:criox:<id>`, for a
/// runtime driven with `--systemd-cgroup`: it makes the scope `criox-<id>.scope` in the
/// pod's slice itself, with the container's resources as unit properties, as runc and crun
/// do under CRI-O and containerd. `pod_path` is the pod's expanded slice path.
pub fn systemd_cgroups_path(pod_path: &str, id: &str) -> Result<String, SliceError> {
    let slice = slice_of_path(pod_path).ok_or_else(|| SliceError {
        name: pod_path.to_string(),
        reason: "it is not the cgroup path of a slice",
    })?;
    Ok(format!("{slice}:{SCOPE_PREFIX}:{id}"))
}

/// The cgroup directory of a container's cgroupsPath: runc's `slice:prefix:name` becomes
/// the path systemd gives the scope (`<slice path>/<prefix>-<name>.scope`); a cgroupfs
/// path is that path already.
pub fn cgroup_dir(cgroups_path: &str) -> String {
    let mut parts = cgroups_path.splitn(3, ':');
    if let (Some(slice), Some(prefix), Some(name)) = (parts.next(), parts.next(), parts.next())
        && !cgroups_path.starts_with('/')
    {
        // runc: an empty slice is system.slice; an empty prefix names the scope `<name>`.
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        let scope = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}-{name}.scope")
        };
        if let Ok(path) = expand_slice(slice) {
            return format!("{}/{scope}", path.trim_end_matches('/'));
        }
    }
    cgroups_path.to_string()
}

/// A marker in the pod's directory: criox started the pod's slice (nobody else had) and
/// stops it when the pod goes.
const SLICE_MARKER: &str = "systemd-slice";

/// Under the systemd driver: the pod's slice (the kubelet's `cgroup_parent`, or a slice of
/// its own), started as a transient slice with the pod's limits unless it is already
/// active; returns the slice's cgroup path, which is the pod's cgroup.
pub async fn pod_slice(
    pod_dir: &std::path::Path,
    pod_id: &str,
    cgroup_parent: &str,
    limits: Option<(i64, i64, i64, i64)>,
) -> Result<String, String> {
    let slice = if cgroup_parent.is_empty() {
        default_pod_slice(pod_id)
    } else {
        cgroup_parent.to_string()
    };
    let path = expand_slice(&slice).map_err(|e| e.to_string())?;
    if slice == "-.slice" {
        return Ok(path);
    }
    let state = systemd::active_state(&slice)
        .await
        .map_err(|e| e.to_string())?;
    if !matches!(state.as_deref(), Some("active" | "activating")) {
        let (memory, shares, quota, period) = limits.unwrap_or_default();
        let props = systemd::pod_properties(memory, shares, quota, period, cgroup_v2());
        // Written first: a crash between the two leaves a trail for removal to follow.
        std::fs::write(pod_dir.join(SLICE_MARKER), &slice).map_err(|e| e.to_string())?;
        systemd::start_transient(&slice, None, &[], props)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(path)
}

/// Under the systemd driver: sets a pod's slice (given its cgroup path) to new limits
/// (UpdatePodSandboxResources), as unit properties so that systemd keeps them.
pub async fn resize_pod_slice(pod_path: &str, limits: &cgroupfs::PodLimits) -> Result<(), String> {
    let slice = slice_of_path(pod_path).ok_or_else(|| format!("{pod_path} is not a slice path"))?;
    let props = systemd::pod_properties(
        limits.memory_limit,
        limits.cpu_shares,
        limits.cpu_quota,
        limits.cpu_period,
        cgroup_v2(),
    );
    systemd::set_properties(&slice, props)
        .await
        .map_err(|e| e.to_string())
}

/// Puts a pod's infra process in a scope of its own in the pod's slice.
pub async fn pod_infra_scope(pod_id: &str, pod_path: &str, pid: u32) -> Result<(), String> {
    let slice = slice_of_path(pod_path).ok_or_else(|| format!("{pod_path} is not a slice path"))?;
    systemd::start_transient(&scope_name(pod_id), Some(&slice), &[pid], Vec::new())
        .await
        .map_err(|e| e.to_string())
}

/// Stops what [`pod_slice`] and [`pod_infra_scope`] started for a pod.
pub async fn pod_teardown(pod_dir: &std::path::Path, pod_id: &str) -> Result<(), String> {
    systemd::stop(&scope_name(pod_id))
        .await
        .map_err(|e| e.to_string())?;
    let marker = pod_dir.join(SLICE_MARKER);
    if let Ok(slice) = std::fs::read_to_string(&marker) {
        systemd::stop(slice.trim())
            .await
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&marker);
    }
    Ok(())
}

/// Puts a created (not yet started) container's init process in its scope, with the
/// container's resources as the scope's properties.
pub async fn container_scope(
    id: &str,
    cgroups_path: &str,
    pid: u32,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<(), String> {
    let pod_path = cgroups_path
        .rsplit_once('/')
        .map(|(parent, _)| if parent.is_empty() { "/" } else { parent })
        .unwrap_or("/");
    let slice = slice_of_path(pod_path)
        .ok_or_else(|| format!("{cgroups_path} is not in a systemd slice"))?;
    let props = systemd::resource_properties(resources, cgroup_v2());
    systemd::start_transient(&scope_name(id), Some(&slice), &[pid], props)
        .await
        .map_err(|e| e.to_string())?;
    rejoin(cgroups_path, pid);
    Ok(())
}

/// Under the systemd driver: a container's new resources (UpdateContainerResources) as
/// the properties of the scope criox made for it, so that systemd keeps them rather than
/// restoring the old ones the next time it realizes the unit.
pub async fn update_container_scope(
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<(), String> {
    let props = systemd::resource_properties(Some(resources), cgroup_v2());
    if props.is_empty() {
        return Ok(());
    }
    systemd::set_properties(&scope_name(id), props)
        .await
        .map_err(|e| e.to_string())
}

/// On cgroup v1 systemd moves an adopted process, in every hierarchy whose controller the
/// scope does not use (freezer, cpuset…), to the nearest cgroup it made itself: the
/// process goes back to the runtime's cgroup there (as runc does after starting a scope),
/// or `kill --all`, which finds the container's processes through the freezer cgroup,
/// would find none.
fn rejoin(cgroups_path: &str, pid: u32) {
    let relative = cgroups_path.trim_start_matches('/');
    let Ok(mounts) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for mount in mounts.flatten() {
        let procs = mount.path().join(relative).join("cgroup.procs");
        if procs.exists()
            && let Err(e) = std::fs::write(&procs, pid.to_string())
        {
            tracing::debug!(path = %procs.display(), error = %e, "cannot rejoin the container's cgroup");
        }
    }
}

/// SIGKILL to every process of a container's scope, as systemd tracks them (the
/// `name=systemd` hierarchy on cgroup v1). A runtime's `kill --all` finds them through one
/// controller's cgroup (runc: devices), where systemd may have moved them to the slice when
/// it realized the scope without that controller.
pub async fn kill_container_scope(id: &str) -> Result<(), String> {
    systemd::kill(&scope_name(id), libc::SIGKILL)
        .await
        .map_err(|e| e.to_string())
}

/// Stops a container's scope; one that is gone already is fine.
pub async fn remove_container_scope(id: &str) -> Result<(), String> {
    systemd::stop(&scope_name(id))
        .await
        .map_err(|e| e.to_string())
}

fn cgroup_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A cgroup directory has the mode cgroup tools give one whatever the daemon's umask:
/// readable statistics, and a path that a container's runtime, inside a pod's user
/// namespace, walks to the container's own cgroups (its monitor's, in named hierarchies
/// such as `name=systemd` that nothing else moves it out of).
fn searchable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_places_them() {
        assert_eq!(
            expand_slice("kubepods-besteffort-pod1234_56.slice").unwrap(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_56.slice"
        );
        assert_eq!(expand_slice("kubepods.slice").unwrap(), "/kubepods.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(
            slice_of_path("/kubepods.slice/kubepods-burstable.slice").as_deref(),
            Some("kubepods-burstable.slice")
        );
        assert_eq!(slice_of_path("/kubepods/burstable"), None);
        assert_eq!(
            scope_path("/a.slice/a-b.slice", "c1"),
            "/a.slice/a-b.slice/criox-c1.scope"
        );
    }

    #[test]
    fn runc_systemd_paths_name_the_same_scope() {
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice";
        let runc = systemd_cgroups_path(pod, "c1").unwrap();
        assert_eq!(runc, "kubepods-besteffort-pod1.slice:criox:c1");
        assert_eq!(cgroup_dir(&runc), scope_path(pod, "c1"));
        assert_eq!(cgroup_dir(":criox:c1"), "/system.slice/criox-c1.scope");
        assert_eq!(cgroup_dir("/criox/c1"), "/criox/c1");
        assert!(systemd_cgroups_path("/criox/pod", "c1").is_err());
    }
}
