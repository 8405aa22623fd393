//! The container's seccomp profile for a process exec'd into it. libcontainer 0.7 builds
//! an exec'd process's spec without `linux.seccomp` and offers no option to add it, so the
//! profile is loaded by the executor, which libcontainer runs in the new process once that
//! process has joined the container and taken its user and capabilities.
//!
//! The order follows runc's: with no_new_privs the filter loads unprivileged, last; without
//! it loading needs CAP_SYS_ADMIN, so the filter goes in before the process loses that
//! capability. libcontainer drops capabilities before the executor runs, so in that case it
//! is asked to keep CAP_SYS_ADMIN (and CAP_SETPCAP, to shrink the bounding set) and the
//! executor drops to the container's set right after loading the filter.

use std::collections::HashMap;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, Process, Spec};

/// What loading a filter without no_new_privs takes, and what dropping to the container's
/// capabilities afterwards takes.
const NEEDED_TO_LOAD: [Capability; 2] = [Capability::SysAdmin, Capability::Setpcap];

/// Runs the exec'd command like libcontainer's default executor, with the profile loaded.
#[derive(Clone)]
pub struct SeccompExecutor {
    profile: LinuxSeccomp,
    /// The container's capabilities, when libcontainer leaves the process more for loading.
    drop_to: Option<LinuxCapabilities>,
}

/// Why a profile cannot be applied to an exec'd process.
#[derive(Debug, thiserror::Error)]
pub enum ExecSeccompError {
    #[error(
        "the container's seccomp profile sends syscalls to a listener, which exec does not support"
    )]
    Notify,
}

impl SeccompExecutor {
    /// The executor for `profile`; widens `process`'s capabilities when loading needs it.
    pub fn new(process: &mut Process, profile: LinuxSeccomp) -> Result<Self, ExecSeccompError> {
        // The listener is reached from the runtime's side, which an exec'd process never
        // passes through; without one the profile's notify rules would fail every call.
        if libcontainer::seccomp::is_notify(&profile) {
            return Err(ExecSeccompError::Notify);
        }
        let mut drop_to = None;
        if process.no_new_privileges() != Some(true)
            && let Some(caps) = process.capabilities().clone()
            && caps
                .effective()
                .as_ref()
                .is_some_and(|e| !e.contains(&Capability::SysAdmin))
        {
            process.set_capabilities(Some(widened(&caps)));
            drop_to = Some(caps);
        }
        Ok(Self { profile, drop_to })
    }

    fn load(&self) -> Result<(), ExecutorValidationError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ExecutorValidationError::ArgValidationError(format!("{what}: {e}"))
        };
        libcontainer::seccomp::initialize_seccomp(&self.profile)
            .map_err(|e| fail("loading the container's seccomp profile", &e))?;
        if let Some(caps) = &self.drop_to {
            let syscall = libcontainer::syscall::syscall::create_syscall();
            libcontainer::capabilities::drop_privileges(caps, syscall.as_ref())
                .map_err(|e| fail("dropping to the container's capabilities", &e))?;
        }
        Ok(())
    }
}

/// `caps` with what loading needs added to the bounding, effective and permitted sets.
fn widened(caps: &LinuxCapabilities) -> LinuxCapabilities {
    let add = |set: &Option<Capabilities>| {
        set.as_ref().map(|s| {
            let mut s = s.clone();
            s.extend(NEEDED_TO_LOAD);
            s
        })
    };
    let mut wide = caps.clone();
    wide.set_bounding(add(caps.bounding()))
        .set_effective(add(caps.effective()))
        .set_permitted(add(caps.permitted()));
    wide
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    // libcontainer calls this in the new process after its own capability drop and, like
    // its own late seccomp step, before reporting the process ready.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)?;
        self.load()
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    const CAPS: &str = r#""capabilities":{"bounding":["CAP_CHOWN"],"effective":["CAP_CHOWN"],
        "permitted":["CAP_CHOWN"]}"#;

    #[test]
    fn widens_without_no_new_privs_and_drops_back_to_the_container_set() {
        let mut p = process(&format!(
            r#"{{"cwd":"/","user":{{"uid":0,"gid":0}},{CAPS}}}"#
        ));
        let original = p.capabilities().clone().unwrap();
        let ex =
            SeccompExecutor::new(&mut p, profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)).unwrap();
        assert_eq!(ex.drop_to.as_ref(), Some(&original));
        let wide = p.capabilities().clone().unwrap();
        for set in [wide.bounding(), wide.effective(), wide.permitted()] {
            let set = set.as_ref().unwrap();
            assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::Setpcap));
            assert!(set.contains(&Capability::Chown));
        }
        assert_eq!(wide.inheritable(), original.inheritable());
        assert_eq!(wide.ambient(), original.ambient());
    }

    #[test]
    fn leaves_capabilities_alone_with_no_new_privs_or_when_they_hold_sys_admin() {
        let no_new_privs =
            format!(r#"{{"cwd":"/","user":{{"uid":0,"gid":0}},"noNewPrivileges":true,{CAPS}}}"#);
        let sys_admin = r#"{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_SYS_ADMIN"],
            "effective":["CAP_SYS_ADMIN"],"permitted":["CAP_SYS_ADMIN"]}}"#;
        for json in [no_new_privs.as_str(), sys_admin] {
            let mut p = process(json);
            let before = p.clone();
            let ex = SeccompExecutor::new(&mut p, profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#))
                .unwrap();
            assert!(ex.drop_to.is_none(), "{json}");
            assert_eq!(p, before, "{json}");
        }
    }

    #[test]
    fn refuses_a_notify_profile() {
        let mut p = process(r#"{"cwd":"/","user":{"uid":0,"gid":0}}"#);
        let err = SeccompExecutor::new(
            &mut p,
            profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/l.sock",
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
            ),
        )
        .err();
        assert!(matches!(err, Some(ExecSeccompError::Notify)));
    }
}
