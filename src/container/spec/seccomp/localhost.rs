//! Localhost profiles: a JSON file on the node, in the OCI (`LinuxSeccomp`) or Docker
//! format, read and checked for the container that names it.

use std::path::Path;

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::oci::{arg, native_architectures};
use crate::container::spec::error::{Result, SpecError};

/// A profile file in the OCI (`LinuxSeccomp`) or Docker JSON format. Docker's extras
/// (`archMap`, per-rule `includes`/`excludes`, the old single `name`) are evaluated here
/// against the container's capabilities and this host's architecture.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: serde_json::Value,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<ProfileSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: serde_json::Value,
    #[serde(default)]
    sub_architectures: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSyscall {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: serde_json::Value,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<ProfileArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileArg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's names for this host's architectures, as Docker profiles use them in `arches`.
fn go_arches() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["amd64", "x86", "x32"]
    } else if cfg!(target_arch = "aarch64") {
        &["arm64", "arm"]
    } else {
        &[]
    }
}

/// The running kernel's (major, minor); (0, 0) when it cannot be read.
pub(crate) fn kernel_version() -> (u64, u64) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

pub(super) fn parse_version(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Loads and validates the profile at `path` for a container holding `caps`.
pub fn load_localhost(field: &str, path: &str, caps: &Capabilities) -> Result<LinuxSeccomp> {
    if !Path::new(path).is_absolute() {
        return Err(SpecError::invalid(
            field,
            format!("seccomp profile path {path:?} is not absolute"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        field: field.to_string(),
        path: path.into(),
        source,
    })?;
    parse_profile(&text, caps, kernel_version())
        .map_err(|reason| SpecError::invalid(field, format!("seccomp profile {path}: {reason}")))
}

fn enum_value<T: serde::de::DeserializeOwned>(
    what: &str,
    v: &serde_json::Value,
) -> std::result::Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|_| format!("unknown {what} {v}"))
}

pub(super) fn parse_profile(
    text: &str,
    caps: &Capabilities,
    kernel: (u64, u64),
) -> std::result::Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let default_action: LinuxSeccompAction = enum_value("action", &file.default_action)?;
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err("SCMP_ACT_NOTIFY cannot be the default action".to_string());
    }

    let mut arches: Vec<Arch> = Vec::new();
    for a in file.architectures.iter().flatten() {
        arches.push(enum_value("architecture", a)?);
    }
    for entry in file.arch_map.iter().flatten() {
        let main: Arch = enum_value("architecture", &entry.architecture)?;
        if native_architectures().first() == Some(&main) {
            arches.push(main);
            for sub in &entry.sub_architectures {
                arches.push(enum_value("architecture", sub)?);
            }
        }
    }
    arches.dedup();

    let mut flags = Vec::new();
    for f in file.flags.iter().flatten() {
        flags.push(enum_value("flag", f)?);
    }

    let cap_names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
    let applies = |rule: &ProfileSyscall| -> bool {
        if let Some(inc) = &rule.includes {
            if !inc
                .caps
                .iter()
                .all(|c| cap_names.contains(&c.to_ascii_uppercase()))
            {
                return false;
            }
            if !inc.arches.is_empty()
                && !inc.arches.iter().any(|a| go_arches().contains(&a.as_str()))
            {
                return false;
            }
            if let Some(min) = inc.min_kernel.as_deref().and_then(parse_version)
                && kernel < min
            {
                return false;
            }
        }
        if let Some(exc) = &rule.excludes {
            if exc
                .caps
                .iter()
                .any(|c| cap_names.contains(&c.to_ascii_uppercase()))
            {
                return false;
            }
            if exc.arches.iter().any(|a| go_arches().contains(&a.as_str())) {
                return false;
            }
            if let Some(min) = exc.min_kernel.as_deref().and_then(parse_version)
                && kernel >= min
            {
                return false;
            }
        }
        true
    };

    let mut syscalls = Vec::new();
    for (i, rule) in file.syscalls.iter().flatten().enumerate() {
        let action: LinuxSeccompAction =
            enum_value("action", &rule.action).map_err(|e| format!("syscalls[{i}]: {e}"))?;
        let mut names = rule.names.clone().unwrap_or_default();
        names.extend(rule.name.clone());
        if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
            return Err(format!("syscalls[{i}]: a rule needs syscall names"));
        }
        let mut args = Vec::new();
        for (j, a) in rule.args.iter().flatten().enumerate() {
            if a.index >= 6 {
                return Err(format!(
                    "syscalls[{i}].args[{j}]: index {} is not a syscall argument (0 to 5)",
                    a.index
                ));
            }
            let op: LinuxSeccompOperator = enum_value("operator", &a.op)
                .map_err(|e| format!("syscalls[{i}].args[{j}]: {e}"))?;
            args.push(arg(a.index, op, a.value, a.value_two).map_err(|e| e.to_string())?);
        }
        if !applies(rule) {
            continue;
        }
        let mut b = LinuxSyscallBuilder::default().names(names).action(action);
        if let Some(errno) = rule.errno_ret {
            b = b.errno_ret(errno);
        }
        if !args.is_empty() {
            b = b.args(args);
        }
        syscalls.push(b.build().map_err(|e| e.to_string())?);
    }

    let mut b = LinuxSeccompBuilder::default()
        .default_action(default_action)
        .syscalls(syscalls);
    if let Some(errno) = file.default_errno_ret {
        b = b.default_errno_ret(errno);
    }
    if !arches.is_empty() {
        b = b.architectures(arches);
    }
    if !flags.is_empty() {
        b = b.flags(flags);
    }
    if let Some(p) = file.listener_path {
        b = b.listener_path(p);
    }
    if let Some(m) = file.listener_metadata {
        b = b.listener_metadata(m);
    }
    b.build().map_err(|e| e.to_string())
}
