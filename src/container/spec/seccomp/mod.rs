//! Seccomp: the built-in RuntimeDefault profile and Localhost profile files.
//!
//! RuntimeDefault is an allowlist: everything not named fails with EPERM. Its effect is the
//! one container users expect from Docker and containerd: ordinary programs run, while the
//! calls that reach kernel-wide state (namespaces, mounts, modules, clocks, keyrings, BPF,
//! tracing other processes' memory) are refused unless the container holds the capability
//! that would allow them anyway. Syscalls this kernel or architecture does not know are
//! skipped by the runtimes, so one list serves every architecture.
//!
//! `allowlist` is RuntimeDefault's table and `runtime_default` makes a profile of it;
//! `localhost` reads a profile file; `oci` holds the rule builders both use.

mod allowlist;
mod localhost;
mod oci;
mod runtime_default;
#[cfg(test)]
mod tests;

use oci_spec::runtime::{Capabilities, LinuxSeccomp};

pub(crate) use self::localhost::kernel_version;
pub use self::localhost::load_localhost;
pub use self::runtime_default::runtime_default;
use super::error::{Result, SpecError};

/// The seccomp profile the container's security context asks for; `None` is unconfined.
pub fn select(
    profile: Option<&criox_proto::v1::SecurityProfile>,
    deprecated_path: &str,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>> {
    use criox_proto::v1::security_profile::ProfileType;
    const FIELD: &str = "linux.security_context.seccomp";
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => runtime_default(caps).map(Some),
            Ok(ProfileType::Unconfined) => Ok(None),
            Ok(ProfileType::Localhost) => {
                load_localhost(&format!("{FIELD}.localhost_ref"), &p.localhost_ref, caps).map(Some)
            }
            Err(_) => Err(SpecError::invalid(
                format!("{FIELD}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    const OLD: &str = "linux.security_context.seccomp_profile_path";
    match deprecated_path {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => runtime_default(caps).map(Some),
        other => match other.strip_prefix("localhost/") {
            Some(path) => load_localhost(OLD, path, caps).map(Some),
            None => Err(SpecError::invalid(
                OLD,
                format!("unknown profile {other:?}"),
            )),
        },
    }
}
