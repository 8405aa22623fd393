//! `/proc/<pid>/mountinfo`, read one way everywhere. Paths in it escape space, tab, newline
//! and backslash as octal (`\040`, `\011`, `\012`, `\134`); a reader that forgets one of
//! them misses the mount of a path holding it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// The directory of the filesystem mounted here (a bind mount's source within it).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,…`).
    pub options: String,
    /// Optional fields: propagation (`shared:N`, `master:N`, `unbindable`).
    pub optional: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-filesystem options; for a cgroup v1 mount, its controllers among them.
    pub super_options: String,
}

/// Undoes the kernel's octal escapes.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

fn parse_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount-point options [optional fields…] - type source super
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let id = left.next()?.parse().ok()?;
    let parent = left.next()?.parse().ok()?;
    let _dev = left.next()?;
    let root = unescape(left.next()?);
    let mount_point = unescape(left.next()?);
    let options = left.next()?.to_string();
    let optional = left.map(str::to_string).collect();
    let mut right = right.split(' ');
    let fs_type = right.next()?.to_string();
    let source = right.next().unwrap_or_default().to_string();
    let super_options = right.next().unwrap_or_default().to_string();
    Some(Mount {
        id,
        parent,
        root,
        mount_point,
        options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

/// Every well-formed line of `text`, in order.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// The mounts of this process's mount namespace; empty if mountinfo cannot be read.
pub fn current() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Mount points at or below `dir` in `mounts`, deepest first (the order to unmount them).
pub fn points_below(mounts: &[Mount], dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .map(|m| m.mount_point.clone())
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Whether `path` is a mount point in `mounts`.
pub fn is_mount_point(mounts: &[Mount], path: &Path) -> bool {
    mounts.iter().any(|m| m.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
31 22 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
90 1 0:50 /data/with\\040space /mnt/with\\040space rw - ext4 /dev/sda1 rw
91 90 0:51 / /mnt/with\\040space/tab\\011and\\134slash rw - tmpfs tmpfs rw
broken line
";

    #[test]
    fn fields_are_parsed_and_paths_unescaped() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5, "the broken line is skipped");
        assert_eq!(mounts[1].fs_type, "cgroup2");
        assert_eq!(mounts[1].mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(mounts[2].super_options, "rw,memory");
        assert_eq!(mounts[3].root, Path::new("/data/with space"));
        assert_eq!(mounts[3].source, "/dev/sda1");
        assert_eq!(
            mounts[4].mount_point,
            Path::new("/mnt/with space/tab\tand\\slash")
        );
        assert_eq!((mounts[4].id, mounts[4].parent), (91, 90));
    }

    #[test]
    fn points_below_come_deepest_first() {
        let mounts = parse(SAMPLE);
        assert_eq!(
            points_below(&mounts, Path::new("/mnt/with space")),
            vec![
                PathBuf::from("/mnt/with space/tab\tand\\slash"),
                PathBuf::from("/mnt/with space"),
            ]
        );
        assert!(points_below(&mounts, Path::new("/mnt/with")).is_empty());
        assert!(is_mount_point(&mounts, Path::new("/sys/fs/cgroup/memory")));
        assert!(!is_mount_point(&mounts, Path::new("/sys/fs")));
    }

    #[test]
    fn this_process_sees_its_root_mount() {
        assert!(is_mount_point(&current(), Path::new("/")));
    }
}
