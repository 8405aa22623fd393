//! What a runtime handler can do, asked of the handler itself once at start: its OCI
//! features document (`<runtime> features`), as the CRI's RuntimeHandlerFeatures expects.

use criox_runtime::Runtime;

/// Whether the handler applies the `rro` mount option: its features document lists it
/// and the kernel has mount_setattr(2) (5.12 and later).
pub fn supports_recursive_read_only(runtime: &Runtime) -> bool {
    super::spec::seccomp::kernel_version() >= (5, 12)
        && mount_options(runtime).iter().any(|o| o == "rro")
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
