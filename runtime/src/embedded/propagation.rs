//! Mount propagation the spec asks of each mount. libcontainer 0.7 attaches bind mounts as
//! clones of their source (open_tree and move_mount) and ignores the propagation options,
//! so a clone inherits whatever the source has in the container's namespace: an `rprivate`
//! bind of a shared host directory would still see, or even send, mounts. Once the
//! container exists (and before its process runs) the options are applied in spec order,
//! each to its destination, as runc does right after each mount.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum PropagationError {
    #[error("open the mount namespace of pid {pid}: {source}")]
    Namespace { pid: i32, source: std::io::Error },
    #[error("enter the mount namespace of pid {pid}: {source}")]
    Enter { pid: i32, source: nix::Error },
    #[error("set propagation {option} on {destination}: {source}")]
    Apply {
        option: String,
        destination: PathBuf,
        source: nix::Error,
    },
    #[error("propagation thread panicked")]
    Panicked,
}

/// One `mount(2)` call that changes the propagation of the mount at `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub destination: PathBuf,
    pub option: String,
    pub flags: MsFlags,
}

fn flags_of(option: &str) -> Option<MsFlags> {
    let flags = match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flags)
}

/// The propagation changes `spec` asks for, in the order runc makes them.
pub fn steps(spec: &Spec) -> Vec<Step> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    mounts
        .iter()
        .flat_map(|m| {
            let destination = Path::new("/").join(m.destination());
            m.options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(move |option| {
                    flags_of(option).map(|flags| Step {
                        destination: destination.clone(),
                        option: option.clone(),
                        flags,
                    })
                })
        })
        .collect()
}

/// Applies `steps` inside the mount namespace of `pid` (the container's init, already in its
/// new root, so destinations resolve as the container sees them).
pub fn apply(pid: i32, steps: Vec<Step>) -> Result<(), PropagationError> {
    if steps.is_empty() {
        return Ok(());
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|source| PropagationError::Namespace { pid, source })?;
    // Entering a mount namespace moves the caller's root and working directory; a thread
    // with its own filesystem context does it so the process keeps the host's view.
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_FS)
            .and_then(|()| setns(&ns, CloneFlags::CLONE_NEWNS))
            .map_err(|source| PropagationError::Enter { pid, source })?;
        for step in steps {
            mount(
                None::<&str>,
                &step.destination,
                None::<&str>,
                step.flags,
                None::<&str>,
            )
            .map_err(|source| PropagationError::Apply {
                option: step.option,
                destination: step.destination,
                source,
            })?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| PropagationError::Panicked)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_propagation_options_in_spec_order() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"/r"},
            "mounts":[
              {"destination":"/proc","type":"proc","source":"proc"},
              {"destination":"/a","type":"bind","source":"/x","options":["rbind","rslave","ro"]},
              {"destination":"/b","type":"bind","source":"/y","options":["bind","private","shared"]}
            ]}"#,
        )
        .unwrap();
        let got: Vec<(PathBuf, String)> = steps(&spec)
            .into_iter()
            .map(|s| (s.destination, s.option))
            .collect();
        assert_eq!(
            got,
            vec![
                (PathBuf::from("/a"), "rslave".to_string()),
                (PathBuf::from("/b"), "private".to_string()),
                (PathBuf::from("/b"), "shared".to_string()),
            ]
        );
        assert_eq!(
            flags_of("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(flags_of("ro"), None);
    }
}
