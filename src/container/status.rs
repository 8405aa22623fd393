//! What the daemon knows about its containers: lookup by id or prefix, listings, the spec
//! written in a bundle, and counts for metrics.

use std::collections::HashMap;

use criox_runtime::oci_spec::runtime::Spec;

use super::manager::{ContainerError, ContainerManager};
use super::record::{ContainerRecord, Filter, State};
use crate::store::StoreError;

impl ContainerManager {
    /// The full id for an id or unique prefix.
    pub fn resolve(&self, id: &str) -> Result<String, ContainerError> {
        Ok(self.store.resolve(id)?)
    }

    pub fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let id = self.resolve(id)?;
        self.store
            .get(&id)
            .ok_or(ContainerError::Store(StoreError::NotFound(id, "container")))
    }

    pub fn list(&self, filter: &Filter) -> Vec<ContainerRecord> {
        let mut containers: Vec<_> = self
            .store
            .list()
            .into_iter()
            .filter(|c| filter.matches(c))
            .collect();
        containers.sort_by_key(|c| c.created_at);
        containers
    }

    /// The container's OCI spec as written in its bundle.
    pub fn spec(&self, id: &str) -> Result<Spec, ContainerError> {
        let path = self.bundle_dir(id).join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| ContainerError::Internal {
            id: id.to_string(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Internal {
            id: id.to_string(),
            message: format!("{} is not an OCI spec: {e}", path.display()),
        })
    }

    pub fn running_record(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.get(id)?;
        if record.state != State::Running {
            return Err(ContainerError::FailedPrecondition {
                id: record.id,
                message: format!("container is {}, not running", record.state.as_str()),
            });
        }
        Ok(record)
    }

    /// Containers that have a live monitor (created or running), for metrics.
    pub fn monitored(&self) -> i64 {
        self.store
            .list()
            .iter()
            .filter(|r| matches!(r.state, State::Created | State::Running))
            .count() as i64
    }

    /// Counts by state, for metrics.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for record in self.store.list() {
            *counts.entry(record.state.as_str()).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}
