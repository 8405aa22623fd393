//! Checks a bundle before anything is created for it, so bad input fails with the field named
//! and leaves nothing behind.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::backend::BackendError;

fn invalid(id: &str, field: &str, reason: impl Into<String>) -> BackendError {
    BackendError::InvalidBundle {
        id: id.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Loads `bundle/config.json` and checks what a runtime needs of it. When `rootfs_inside` is
/// set, the root filesystem must resolve to a directory inside the bundle.
pub fn load(id: &str, bundle: &Path, rootfs_inside: bool) -> Result<Spec, BackendError> {
    if !bundle.is_dir() {
        return Err(invalid(
            id,
            "bundle",
            format!("{} is not a directory", bundle.display()),
        ));
    }
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config)
        .map_err(|e| invalid(id, "config.json", format!("{}: {e}", config.display())))?;
    let spec: Spec = serde_json::from_str(&text)
        .map_err(|e| invalid(id, "config.json", format!("{}: {e}", config.display())))?;
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            id,
            "ociVersion",
            format!("unsupported version {:?}", spec.version()),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid(id, "root", "missing"))?;
    let rootfs = rootfs_path(bundle, root.path());
    let resolved = std::fs::canonicalize(&rootfs)
        .map_err(|e| invalid(id, "root.path", format!("{}: {e}", rootfs.display())))?;
    if !resolved.is_dir() {
        return Err(invalid(
            id,
            "root.path",
            format!("{} is not a directory", resolved.display()),
        ));
    }
    if rootfs_inside {
        let bundle_real = std::fs::canonicalize(bundle)
            .map_err(|e| invalid(id, "bundle", format!("{}: {e}", bundle.display())))?;
        if !resolved.starts_with(&bundle_real) || resolved == bundle_real {
            return Err(invalid(
                id,
                "root.path",
                format!(
                    "{} resolves outside the bundle {}",
                    root.path().display(),
                    bundle_real.display()
                ),
            ));
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid(id, "process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid(id, "process.args", "empty"));
    }
    Ok(spec)
}

/// The root filesystem path of a spec, made absolute against the bundle.
pub fn rootfs_path(bundle: &Path, root: &Path) -> PathBuf {
    if root.is_absolute() {
        root.to_path_buf()
    } else {
        bundle.join(root)
    }
}

/// Validates a container id the way runc does: no path separators, no dot names.
pub fn check_id(id: &str) -> Result<(), BackendError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            id,
            "id",
            "must be [A-Za-z0-9_+.-]+ and not . or ..",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bundle(dir: &Path, config: &str) {
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
    }

    const GOOD: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}}"#;

    #[test]
    fn accepts_a_minimal_bundle() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(dir.path(), GOOD);
        load("c1", dir.path(), true).unwrap();
    }

    #[test]
    fn names_the_field_of_malformed_json() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(dir.path(), "{not json");
        let err = load("c1", dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("c1") && err.contains("config.json"), "{err}");
    }

    #[test]
    fn rejects_rootfs_outside_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let cfg = GOOD.replace("\"rootfs\"", &format!("{:?}", outside.path()));
        write_bundle(dir.path(), &cfg);
        let err = load("c2", dir.path(), true).unwrap_err().to_string();
        assert!(err.contains("c2") && err.contains("root.path"), "{err}");
        load("c2", dir.path(), false).unwrap();
    }

    #[test]
    fn rejects_ids_with_separators() {
        assert!(check_id("a/b").is_err());
        assert!(check_id("..").is_err());
        check_id("abc-1_2.3").unwrap();
    }
}
