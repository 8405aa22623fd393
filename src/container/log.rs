//! The container's CRI log file: where it is written, and reopening it after rotation.

use std::path::{Component, Path, PathBuf};

use super::manager::{ContainerError, ContainerManager, invalid};

impl ContainerManager {
    /// ReopenContainerLog: the monitor reopens the log file after rotation.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.running_record(id)?;
        let state_dir = self.state_dir(&record.id);
        let reopen_id = record.id.clone();
        tokio::task::spawn_blocking(move || criox_runtime::reopen_log(&reopen_id, &state_dir))
            .await
            .map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: format!("reopen task failed: {e}"),
            })??;
        Ok(())
    }
}

/// The CRI log file: the pod's log directory joined with the container's relative log
/// path, which must stay inside it.
pub(super) fn log_path(
    directory: Option<&Path>,
    relative: &str,
) -> Result<Option<PathBuf>, ContainerError> {
    if relative.is_empty() {
        return Ok(None);
    }
    let relative = Path::new(relative);
    if relative.is_absolute() {
        return Err(invalid(
            "log_path",
            "must be relative to the pod's log directory",
        ));
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid("log_path", "must not contain '..'"));
    }
    match directory {
        Some(dir) => Ok(Some(dir.join(relative))),
        None => Err(invalid(
            "log_path",
            "is set but the pod has no log_directory",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_inside_the_pod_log_directory() {
        let dir = Path::new("/var/log/pods/p");
        assert_eq!(
            log_path(Some(dir), "app/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/p/app/0.log"))
        );
        assert_eq!(log_path(Some(dir), "").unwrap(), None);
        for bad in ["../x.log", "app/../../x.log", "/etc/passwd"] {
            let err = log_path(Some(dir), bad).unwrap_err().to_string();
            assert!(err.starts_with("log_path:"), "{bad}: {err}");
        }
        assert!(log_path(None, "a.log").is_err());
    }
}
