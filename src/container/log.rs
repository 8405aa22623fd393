//! The container's CRI log file: where it is written, and reopening it after rotation.

use std::path::{Path, PathBuf};

use criox_formats::cri_fields::container as cri_fields;

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
    cri_fields::log_path(directory, relative).map_err(|e| invalid(&e.field, e.message))
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
