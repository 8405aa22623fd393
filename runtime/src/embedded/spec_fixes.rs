//! Adjustments a spec needs before libcontainer 0.7 sees it. Each one works around a
//! behaviour found by experiment; `apply` returns `None` when the spec needs none.

use std::path::Path;

use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompOperator, Spec};

/// Returns the adjusted spec, or `None` when `spec` can be used as it is.
pub fn apply(spec: &Spec, id: &str, bundle: &Path, caller_oom_score_adj: i32) -> Option<Spec> {
    let mut spec = spec.clone();
    let mut changed = false;
    let has_seccomp = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());

    if let Some(mut process) = spec.process().clone() {
        // libcontainer installs seccomp after dropping capabilities when noNewPrivileges is
        // present but false, which fails with EPERM; absent means the same thing to the spec.
        if has_seccomp && process.no_new_privileges() == Some(false) {
            process.set_no_new_privileges(None);
            changed = true;
        }
        // Without HOME the container init resolves the user through the image's NSS
        // configuration, which may load a library from the image into a privileged process.
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            let uid = process.user().uid();
            let rootfs = spec
                .root()
                .as_ref()
                .map(|r| crate::bundle::rootfs_path(bundle, r.path()));
            let home = rootfs
                .and_then(|r| home_from_passwd(&r.join("etc/passwd"), uid))
                .unwrap_or_else(|| "/".to_string());
            env.push(format!("HOME={home}"));
            process.set_env(Some(env));
            changed = true;
        }
        // The caller cannot lower its own oom_score_adj (no CAP_SYS_RESOURCE on every node),
        // and libcontainer sets the value on itself before cloning.
        if let Some(adj) = process.oom_score_adj()
            && adj < caller_oom_score_adj
        {
            process.set_oom_score_adj(Some(caller_oom_score_adj));
            changed = true;
        }
        spec.set_process(Some(process));
    }

    // libcontainer 0.7 takes SCMP_CMP_MASKED_EQ's valueTwo as the mask and value as the
    // datum; the spec (and runc, crun) mean value & mask == valueTwo with value the mask.
    if let Some(mut linux) = spec.linux().clone()
        && let Some(mut seccomp) = linux.seccomp().clone()
        && let Some(mut syscalls) = seccomp.syscalls().clone()
    {
        let mut swapped = false;
        for syscall in &mut syscalls {
            let Some(mut args) = syscall.args().clone() else {
                continue;
            };
            for arg in &mut args {
                if arg.op() == LinuxSeccompOperator::ScmpCmpMaskedEq
                    && let Ok(fixed) = LinuxSeccompArgBuilder::default()
                        .index(arg.index())
                        .value(arg.value_two().unwrap_or(0))
                        .value_two(arg.value())
                        .op(arg.op())
                        .build()
                {
                    *arg = fixed;
                    swapped = true;
                }
            }
            syscall.set_args(Some(args));
        }
        if swapped {
            seccomp.set_syscalls(Some(syscalls));
            linux.set_seccomp(Some(seccomp));
            spec.set_linux(Some(linux));
            changed = true;
        }
    }

    // libcontainer 0.7 knows rootfsPropagation only by its short names and fails the create
    // on rslave or rshared; it makes the root recursively shared, slave or private anyway.
    if let Some(mut linux) = spec.linux().clone()
        && let Some(short) = linux
            .rootfs_propagation()
            .as_deref()
            .and_then(|p| p.strip_prefix('r'))
            .filter(|p| matches!(*p, "shared" | "slave" | "private" | "unbindable"))
    {
        linux.set_rootfs_propagation(Some(short.to_string()));
        spec.set_linux(Some(linux));
        changed = true;
    }

    // A relative or missing cgroupsPath makes libcontainer build `/:youki:<id>` names.
    if let Some(mut linux) = spec.linux().clone() {
        let path = linux.cgroups_path().clone();
        let absolute = match path {
            Some(p) if p.is_absolute() => None,
            Some(p) if !p.as_os_str().is_empty() => Some(Path::new("/").join(p)),
            _ => Some(Path::new("/").join(id)),
        };
        if let Some(abs) = absolute {
            linux.set_cgroups_path(Some(abs));
            spec.set_linux(Some(linux));
            changed = true;
        }
    }

    changed.then_some(spec)
}

/// The home directory of `uid` from a passwd file, read as text (never through NSS).
fn home_from_passwd(passwd: &Path, uid: u32) -> Option<String> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse::<u32>().ok() == Some(uid))
            .then(|| fields[5].to_string())
    })
}

/// The caller's own oom_score_adj.
pub fn own_oom_score_adj() -> i32 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn drops_explicit_false_no_new_privileges_with_seccomp() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent"},
            "process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0},"noNewPrivileges":false,"env":["HOME=/"]},
            "linux":{"cgroupsPath":"/x","seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#,
        );
        let fixed = apply(&s, "c", Path::new("/b"), 0).unwrap();
        assert_eq!(fixed.process().as_ref().unwrap().no_new_privileges(), None);
    }

    #[test]
    fn adds_home_and_absolute_cgroups_path() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent"},
            "process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0},"oomScoreAdj":-999},"linux":{}}"#,
        );
        let fixed = apply(&s, "c9", Path::new("/b"), 0).unwrap();
        let p = fixed.process().as_ref().unwrap();
        assert!(p.env().as_ref().unwrap().contains(&"HOME=/".to_string()));
        assert_eq!(p.oom_score_adj(), Some(0));
        assert_eq!(
            fixed.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/c9"))
        );
    }

    #[test]
    fn swaps_masked_eq_operands_for_libcontainer() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent"},
            "process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0},"env":["HOME=/"]},
            "linux":{"cgroupsPath":"/x","seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"names":["clone"],"action":"SCMP_ACT_ALLOW",
               "args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]}]}}}"#,
        );
        let fixed = apply(&s, "c", Path::new("/b"), 0).unwrap();
        let seccomp = fixed.linux().as_ref().unwrap().seccomp().clone().unwrap();
        let arg = seccomp.syscalls().as_ref().unwrap()[0]
            .args()
            .as_ref()
            .unwrap()[0];
        assert_eq!((arg.value(), arg.value_two()), (0, Some(2114060288)));
    }

    #[test]
    fn shortens_recursive_rootfs_propagation() {
        for (given, short) in [
            ("rslave", "slave"),
            ("rshared", "shared"),
            ("rprivate", "private"),
        ] {
            let s = spec(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"/nonexistent"}},
                "process":{{"cwd":"/","args":["true"],"user":{{"uid":0,"gid":0}},"env":["HOME=/"]}},
                "linux":{{"cgroupsPath":"/x","rootfsPropagation":"{given}"}}}}"#
            ));
            let fixed = apply(&s, "c", Path::new("/b"), 0).unwrap();
            assert_eq!(
                fixed
                    .linux()
                    .as_ref()
                    .unwrap()
                    .rootfs_propagation()
                    .as_deref(),
                Some(short)
            );
        }
    }

    #[test]
    fn leaves_a_clean_spec_alone() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"/nonexistent"},
            "process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0},"env":["HOME=/root"]},
            "linux":{"cgroupsPath":"/a/b"}}"#,
        );
        assert!(apply(&s, "c", Path::new("/b"), 0).is_none());
    }
}
