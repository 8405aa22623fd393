//! Pressure stall information (`cpu.pressure`, `memory.pressure`, `io.pressure`) of a
//! cgroup, read from the cgroup v2 hierarchy. PSI exists only there: a pure v1 host has
//! none, and a hybrid host has it for the cgroups whose processes are also placed in its
//! cgroup2 mount. A cgroup2 directory that holds none of the cgroup's processes would
//! report zero pressure for a busy container, so its figures count only while it is
//! populated; otherwise they are absent, never zero.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One line of a pressure file: the share of time some (or all) tasks stalled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PsiLine {
    /// Total stall time in nanoseconds (the kernel counts microseconds).
    pub total_ns: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// A pressure file: `some` always; `full` where the kernel reports it (for CPU only since
/// Linux 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: Option<PsiLine>,
    pub full: Option<PsiLine>,
}

/// The pressure of one cgroup, each resource absent where it cannot be read truthfully.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupPressure {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

/// Parses `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` lines; None when neither line
/// is there.
pub fn parse(text: &str) -> Option<Pressure> {
    let mut pressure = Pressure::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let kind = words.next();
        let mut parsed = PsiLine::default();
        let mut seen = 0;
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let ok = match key {
                "avg10" => value.parse().map(|v| parsed.avg10 = v).is_ok(),
                "avg60" => value.parse().map(|v| parsed.avg60 = v).is_ok(),
                "avg300" => value.parse().map(|v| parsed.avg300 = v).is_ok(),
                "total" => value
                    .parse::<u64>()
                    .map(|us| parsed.total_ns = us.saturating_mul(1000))
                    .is_ok(),
                _ => false,
            };
            seen += usize::from(ok);
        }
        if seen != 4 {
            continue;
        }
        match kind {
            Some("some") => pressure.some = Some(parsed),
            Some("full") => pressure.full = Some(parsed),
            _ => {}
        }
    }
    (pressure.some.is_some() || pressure.full.is_some()).then_some(pressure)
}

/// Where the host's cgroup2 hierarchy is mounted, and whether it is the only one (a
/// unified host) rather than one beside v1 controllers (a hybrid host).
fn cgroup2_mount() -> Option<&'static (PathBuf, bool)> {
    static MOUNT: OnceLock<Option<(PathBuf, bool)>> = OnceLock::new();
    MOUNT
        .get_or_init(|| {
            let mounts = criox_runtime::mountinfo::current();
            let unified = mounts.iter().find(|m| m.fs_type == "cgroup2")?;
            let only = !mounts.iter().any(|m| m.fs_type == "cgroup");
            Some((unified.mount_point.clone(), only))
        })
        .as_ref()
}

/// The pressure of `cgroup` (a path like `/criox-pods/<pod>`) on this host.
pub fn read(cgroup: &Path) -> CgroupPressure {
    match cgroup2_mount() {
        Some((root, only)) => read_in(root, cgroup, !only),
        None => CgroupPressure::default(),
    }
}

/// The pressure of `cgroup` below the cgroup2 mount `root`; with `need_processes`, only
/// when the cgroup there holds processes (its `cgroup.events` says `populated 1`).
pub fn read_in(root: &Path, cgroup: &Path, need_processes: bool) -> CgroupPressure {
    let dir = root.join(cgroup.strip_prefix("/").unwrap_or(cgroup));
    if need_processes && !populated(&dir) {
        return CgroupPressure::default();
    }
    let file = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| parse(&t))
    };
    CgroupPressure {
        cpu: file("cpu.pressure"),
        memory: file("memory.pressure"),
        io: file("io.pressure"),
    }
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "populated 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lines_parse_with_totals_in_nanoseconds() {
        let p = parse(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        let some = p.some.unwrap();
        assert_eq!(
            (some.avg10, some.avg60, some.total_ns),
            (1.5, 0.25, 1_234_000)
        );
        assert_eq!(p.full.unwrap().total_ns, 7000);
        let only_some = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        assert!(only_some.full.is_none());
        assert_eq!(parse(""), None);
        assert_eq!(parse("garbage\n"), None);
    }

    #[test]
    fn an_empty_cgroup2_directory_reports_nothing_and_a_populated_one_its_pressure() {
        let Some((root, _)) = cgroup2_mount() else {
            return;
        };
        if !root.join("cpu.pressure").exists() {
            return;
        }
        let name = format!("criox-psi-{}", std::process::id());
        let dir = root.join(&name);
        std::fs::create_dir(&dir).unwrap();
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let _remove = Remove(dir.clone());
        let cgroup = PathBuf::from("/").join(&name);
        assert_eq!(read_in(root, &cgroup, true), CgroupPressure::default());
        let all = read_in(root, &cgroup, false);
        assert!(
            all.cpu.is_some() && all.memory.is_some() && all.io.is_some(),
            "{all:?}"
        );
    }
}
