//! What a runtime handler can do, asked of the handler itself once at start: its OCI
//! features document (`<runtime> features`), as the CRI's RuntimeHandlerFeatures expects.

use criox_runtime::Runtime;

/// Whether the handler applies the `rro` mount option: its features document lists it
/// and the kernel has mount_setattr(2) (5.12 and later).
pub fn supports_recursive_read_only(runtime: &Runtime) -> bool {
    kernel_at_least(5, 12) && mount_options(runtime).iter().any(|o| o == "rro")
}

/// The `mountOptions` of the handler's features document; none when it cannot say.
fn mount_options(runtime: &Runtime) -> Vec<String> {
    let output = match runtime.oci_command().arg("features").output() {
        Ok(output) if output.status.success() => output.stdout,
        _ => return Vec::new(),
    };
    serde_json::from_slice::<serde_json::Value>(&output)
        .ok()
        .and_then(|doc| doc.get("mountOptions").cloned())
        .and_then(|options| serde_json::from_value(options).ok())
        .unwrap_or_default()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_release(&release) >= (major, minor)
}

/// "6.1.0-18-amd64" → (6, 1); unparsable parts count as 0.
fn parse_release(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert_eq!(parse_release("6.1.0-18-amd64"), (6, 1));
        assert_eq!(parse_release("5.12.3"), (5, 12));
        assert!(parse_release("5.4.0") < (5, 12));
        assert_eq!(parse_release("weird"), (0, 0));
    }
}
