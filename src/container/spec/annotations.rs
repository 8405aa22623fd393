//! The spec's annotations: the container's own, then keys that say which pod, container
//! and image the spec belongs to. The keys are those containerd's CRI plugin writes.

use std::collections::{BTreeMap, HashMap};

use super::ContainerSpecInput;
use super::error::{Result, SpecError};

pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const CONTAINER_TYPE_CONTAINER: &str = "container";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// Ours: the pod's runtime handler (RuntimeClass) that runs the container.
pub const RUNTIME_HANDLER: &str = "io.criox.runtime-handler";
/// Ours: the container's CRI labels as a JSON object, so that the spec alone says
/// which container it describes.
pub const LABELS: &str = "io.criox.labels";

/// The CRI annotations of the container unchanged, then the keys that say which pod,
/// container and image the spec belongs to.
pub(super) fn spec_annotations(input: &ContainerSpecInput<'_>) -> Result<HashMap<String, String>> {
    let config = input.config;
    let pod = input.pod;
    let mut out: HashMap<String, String> = config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    for (k, v) in [
        (CONTAINER_TYPE, CONTAINER_TYPE_CONTAINER.to_string()),
        (SANDBOX_ID, pod.id.clone()),
        (SANDBOX_NAME, pod.name.clone()),
        (SANDBOX_NAMESPACE, pod.namespace.clone()),
        (SANDBOX_UID, pod.uid.clone()),
        (CONTAINER_NAME, name),
        (IMAGE_NAME, input.image_name.to_string()),
        (RUNTIME_HANDLER, pod.runtime_handler.clone()),
    ] {
        out.insert(k.to_string(), v);
    }
    if !config.labels.is_empty() {
        let labels: BTreeMap<&String, &String> = config.labels.iter().collect();
        let json = serde_json::to_string(&labels)
            .map_err(|e| SpecError::invalid("labels", format!("cannot be written as JSON: {e}")))?;
        out.insert(LABELS.to_string(), json);
    }
    Ok(out)
}
