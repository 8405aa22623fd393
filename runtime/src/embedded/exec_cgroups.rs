//! On a host with v1 controllers, libcontainer places a process only in the controller
//! hierarchies of the container's cgroup config. The `name=systemd` hierarchy and the
//! unified tree mounted beside the controllers are inherited instead, so the container's
//! init sits in its monitor's cgroup there while an exec'd process would stay in the
//! caller's. Joining the init's cgroup in those hierarchies first puts every process of
//! the container in one place, as runc's exec does, and keeps exec'd processes out of the
//! daemon's cgroup when the daemon's service is stopped.

use std::path::PathBuf;

/// Moves the calling process into `init`'s cgroup in every hierarchy that holds no
/// controller libcontainer manages. Nothing to do on a host with the unified tree alone.
pub fn join_unmanaged(init: i32) -> std::io::Result<()> {
    let text = std::fs::read_to_string(format!("/proc/{init}/cgroup"))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 1 {
        return Ok(());
    }
    let mounts = crate::mountinfo::current();
    for line in lines {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = match (fields.next(), fields.next(), fields.next()) {
            (Some(id), Some(c), Some(p)) => (id, c, p),
            _ => continue,
        };
        let mount_point = if controllers.is_empty() {
            mounts.iter().find(|m| m.fs_type == "cgroup2")
        } else if controllers == "name=systemd" {
            mounts.iter().find(|m| {
                m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "name=systemd")
            })
        } else {
            continue;
        };
        let Some(mount) = mount_point else { continue };
        let procs: PathBuf = mount
            .mount_point
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())?;
    }
    Ok(())
}
