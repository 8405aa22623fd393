//! The AppArmor profile behind RuntimeDefault. Where AppArmor is on, a container asking
//! for RuntimeDefault runs under `criox-default` (contrib/apparmor/criox-default), which
//! the daemon loads at start if no profile of that name is loaded yet. When it cannot be
//! loaded, RuntimeDefault containers are refused rather than run unconfined.

use std::io::Write;
use std::process::{Command, Stdio};

/// The profile's name, as containers' `process.apparmorProfile` names it.
pub const DEFAULT_PROFILE: &str = "criox-default";

const PROFILE_TEXT: &str = include_str!("../../contrib/apparmor/criox-default");

/// Where the kernel lists loaded profiles, one `name (mode)` per line.
const LOADED_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// The default profile's name once it is loaded, or why it is not.
pub fn ensure_default_profile() -> Result<String, String> {
    if is_loaded(&std::fs::read_to_string(LOADED_PROFILES).unwrap_or_default()) {
        return Ok(DEFAULT_PROFILE.to_string());
    }
    load().map(|()| DEFAULT_PROFILE.to_string())
}

fn is_loaded(profiles: &str) -> bool {
    profiles
        .lines()
        .filter_map(|line| line.rsplit_once(" ("))
        .any(|(name, _mode)| name == DEFAULT_PROFILE)
}

fn load() -> Result<(), String> {
    let mut child = Command::new("apparmor_parser")
        .args(["--replace", "--skip-cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run apparmor_parser to load {DEFAULT_PROFILE}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(PROFILE_TEXT.as_bytes())
            .map_err(|e| format!("writing {DEFAULT_PROFILE} to apparmor_parser: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for apparmor_parser: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "apparmor_parser could not load {DEFAULT_PROFILE} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_counts_as_loaded_only_under_its_exact_name() {
        let listed = "docker-default (enforce)\ncriox-default-old (enforce)\n";
        assert!(!is_loaded(listed));
        assert!(is_loaded(&format!("{listed}criox-default (enforce)\n")));
        assert!(is_loaded("criox-default (complain)"));
    }

    #[test]
    fn the_shipped_profile_declares_the_name_containers_use() {
        assert!(PROFILE_TEXT.contains(&format!("profile {DEFAULT_PROFILE} ")));
    }

    /// The profile compiles: a node with AppArmor would load it. Parsed and compiled by
    /// Debian's apparmor_parser (hack/setup installs it), without a kernel to load into.
    #[test]
    fn the_shipped_profile_compiles() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/apparmor/criox-default"
        );
        let parse = |mode: &str| {
            let out = Command::new("apparmor_parser")
                .args(["--skip-kernel-load", "--skip-cache", mode, path])
                .output()
                .expect("apparmor_parser (hack/setup installs Debian's apparmor)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let expanded = parse("--preprocess");
        assert!(expanded.contains("deny mount"), "{expanded}");
        parse("--quiet");
    }
}
