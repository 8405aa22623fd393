//! UpdateContainerResources.

use criox_proto::v1;
use criox_runtime::oci_spec::runtime::LinuxResources;

use super::manager::{ContainerError, ContainerManager};
use super::record::State;

impl ContainerManager {
    /// UpdateContainerResources with the CRI's resources.
    pub async fn update_cri_resources(
        &self,
        id: &str,
        resources: &v1::LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        let support = super::spec::resources::CgroupSupport {
            unified: self.node.cgroup_v2,
            swap: self.node.swap_accounting,
        };
        let mut built = super::spec::resources::build(Some(resources), support)?;
        if !self.node.hugetlb {
            // As at create: the kubelet names every page size, the node cannot limit any.
            built.set_hugepage_limits(None);
        }
        self.update_resources(id, built).await?;
        self.store
            .update(id, |r| {
                r.resources = Some(match &r.resources {
                    Some(old) => old.updated(resources),
                    None => super::record::Resources::from_cri(resources),
                })
            })
            .map_err(|e| ContainerError::Internal {
                id: id.to_string(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// UpdateContainerResources on a created or running container.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: LinuxResources,
    ) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        if !matches!(record.state, State::Created | State::Running) {
            return Err(ContainerError::FailedPrecondition {
                id: record.id,
                message: format!(
                    "cannot update a container that is {}",
                    record.state.as_str()
                ),
            });
        }
        let runtime = self.runtime(&record.handler)?.clone();
        // A runtime driven with --systemd-cgroup sets its scope's properties itself.
        let scope = crate::cgroup_driver::is_systemd() && !runtime.systemd_cgroup();
        let update_id = record.id.clone();
        let applied = resources.clone();
        tokio::task::spawn_blocking(move || runtime.update(&update_id, &resources))
            .await
            .map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: format!("update task failed: {e}"),
            })??;
        // The cgroup has the new limits already; a scope that keeps the old ones puts them
        // back only when systemd realizes it again.
        if scope
            && let Err(e) = crate::cgroup_driver::update_container_scope(&record.id, &applied).await
        {
            tracing::warn!(container = %record.id, error = %e, "the container's scope keeps its old resource properties");
        }
        Ok(())
    }
}
