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
        let update_id = record.id.clone();
        tokio::task::spawn_blocking(move || runtime.update(&update_id, &resources))
            .await
            .map_err(|e| ContainerError::Internal {
                id: record.id.clone(),
                message: format!("update task failed: {e}"),
            })??;
        Ok(())
    }
}
