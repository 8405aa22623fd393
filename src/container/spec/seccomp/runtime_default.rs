//! The built-in RuntimeDefault profile, made from the table in `allowlist` for the
//! capabilities a container holds.

use oci_spec::runtime::{
    Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};

use super::allowlist::{
    AF_VSOCK, ALLOWED, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS, HARMLESS_PERSONALITIES,
};
use super::oci::{ENOSYS, EPERM, allow, arg, native_architectures, strings};
use crate::container::spec::error::Result;

/// The RuntimeDefault profile for a container holding `caps` (its bounding set).
pub fn runtime_default(caps: &Capabilities) -> Result<LinuxSeccomp> {
    let mut syscalls = vec![allow(strings(ALLOWED), None)?];

    for &domain in HARMLESS_PERSONALITIES {
        syscalls.push(allow(
            strings(&["personality"]),
            Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, domain, None)?]),
        )?);
    }
    syscalls.push(allow(
        strings(&["socket"]),
        Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpNe,
            AF_VSOCK,
            None,
        )?]),
    )?);

    let has = |wanted: &[Capability]| wanted.iter().any(|c| caps.contains(c));
    for (wanted, names) in BY_CAPABILITY {
        if has(wanted) {
            syscalls.push(allow(strings(names), None)?);
        }
    }
    if !has(&[Capability::SysAdmin]) {
        // Plain fork and threads, but no new namespaces. For SCMP_CMP_MASKED_EQ the OCI
        // runtimes read `value` as the mask and `valueTwo` as the expected result.
        syscalls.push(allow(
            strings(&["clone"]),
            Some(vec![arg(
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
            )?]),
        )?);
        // clone3 passes its flags in memory the filter cannot see: answer ENOSYS so that
        // libc falls back to clone, which is checked above.
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(strings(&["clone3"]))
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(ENOSYS)
                .build()?,
        );
    }

    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(native_architectures())
        .syscalls(syscalls)
        .build()?)
}
