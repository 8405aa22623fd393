//! Building blocks of the OCI form of a seccomp filter (`LinuxSeccomp`), which both
//! runtimes turn into a kernel filter.

use oci_spec::runtime::{
    Arch, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};

use crate::container::spec::error::Result;

pub(super) const EPERM: u32 = 1;
pub(super) const ENOSYS: u32 = 38;

/// The architectures a filter covers on this host: the native one and its compat ABIs.
pub(super) fn native_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

pub(super) fn allow(
    names: Vec<String>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> Result<LinuxSyscall> {
    let mut b = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow);
    if let Some(args) = args {
        b = b.args(args);
    }
    Ok(b.build()?)
}

pub(super) fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    two: Option<u64>,
) -> Result<LinuxSeccompArg> {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    if let Some(two) = two {
        b = b.value_two(two);
    }
    Ok(b.build()?)
}

pub(super) fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
