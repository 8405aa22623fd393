//! The node's pod CIDR, handed over by the kubelet through UpdateRuntimeConfig.
//!
//! Without a configured template the CIDR is only remembered: another component (a CNI
//! daemonset, the operator) owns the configuration. With one, and while no usable
//! configuration exists, the template is rendered with the CIDR into the configuration
//! directory, which makes the network ready. A configuration already in place is never
//! overwritten, so an operator's or a network add-on's file wins.

use std::path::{Path, PathBuf};

use super::template::{self, Cidr, Values};
use super::{NetworkError, NetworkManager, conf};

/// The file the template is rendered to; early in name order so it is the one loaded.
pub const RENDERED_NAME: &str = "10-criox-net.conflist";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCidrOutcome {
    /// No template is configured.
    Remembered,
    /// A usable configuration was already there; the template was left alone.
    AlreadyReady,
    /// The template was rendered to this file.
    Rendered(PathBuf),
}

impl NetworkManager {
    pub fn set_pod_cidrs(&self, cidrs: Vec<Cidr>) -> Result<PodCidrOutcome, NetworkError> {
        *self.pod_cidrs.lock().unwrap_or_else(|e| e.into_inner()) = cidrs.clone();
        let Some(template) = &self.template else {
            return Ok(PodCidrOutcome::Remembered);
        };
        if self.ready().is_ok() {
            return Ok(PodCidrOutcome::AlreadyReady);
        }
        let target = self.config_dir.join(RENDERED_NAME);
        render_to(template, &Values { pod_cidrs: cidrs }, &target)?;
        Ok(PodCidrOutcome::Rendered(target))
    }

    /// The pod CIDRs last handed over, empty before any.
    pub fn pod_cidrs(&self) -> Vec<Cidr> {
        self.pod_cidrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Renders `template` and puts the result at `target` only once it loads as a valid
/// configuration; a half-written or invalid file is never visible under the real name.
fn render_to(template: &Path, values: &Values, target: &Path) -> Result<(), NetworkError> {
    let failed = |message: String| NetworkError::Template {
        path: template.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(template).map_err(|e| failed(e.to_string()))?;
    let rendered = template::render(&text, values).map_err(|e| failed(e.to_string()))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    // Not a .conflist name, so a concurrent load of the directory never picks it up.
    let temporary = dir.join(format!(".{RENDERED_NAME}.tmp"));
    let write = std::fs::write(&temporary, rendered)
        .map_err(|e| failed(format!("cannot write {}: {e}", temporary.display())))
        .and_then(|()| {
            conf::load_file(&temporary)
                .map(|_| ())
                .map_err(|e| failed(format!("does not render to a valid configuration: {e}")))
        })
        .and_then(|()| {
            std::fs::rename(&temporary, target)
                .map_err(|e| failed(format!("cannot write {}: {e}", target.display())))
        });
    if write.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    write
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn manager(dir: &Path, template: Option<PathBuf>) -> NetworkManager {
        NetworkManager::new(
            &dir.join("net.d"),
            &[PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            &dir.join("cache"),
            Duration::from_secs(5),
            template,
        )
    }

    const TEMPLATE: &str = r#"{"cniVersion": "1.0.0", "name": "t", "plugins": [{"type": "loopback", "x": "{{.PodCIDR}}"}]}"#;

    #[test]
    fn without_a_template_the_cidr_is_only_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let network = manager(dir.path(), None);
        let cidrs = template::parse_pod_cidrs("10.9.0.0/24").unwrap();
        assert_eq!(
            network.set_pod_cidrs(cidrs.clone()).unwrap(),
            PodCidrOutcome::Remembered
        );
        assert_eq!(network.pod_cidrs(), cidrs);
        assert!(!dir.path().join("net.d").exists());
    }

    #[test]
    fn a_template_is_rendered_once_and_an_existing_configuration_wins() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template.conflist");
        std::fs::write(&template, TEMPLATE).unwrap();
        let network = manager(dir.path(), Some(template));
        let cidrs = template::parse_pod_cidrs("10.9.0.0/24").unwrap();
        let outcome = network.set_pod_cidrs(cidrs).unwrap();
        let target = dir.path().join("net.d").join(RENDERED_NAME);
        assert_eq!(outcome, PodCidrOutcome::Rendered(target.clone()));
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.contains(r#""x": "10.9.0.0/24""#), "{text}");
        // Now ready: a later CIDR leaves the file as it is.
        let other = template::parse_pod_cidrs("10.8.0.0/24").unwrap();
        assert_eq!(
            network.set_pod_cidrs(other).unwrap(),
            PodCidrOutcome::AlreadyReady
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
    }

    #[test]
    fn a_template_rendering_to_invalid_json_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("bad.conflist");
        std::fs::write(&template, "{ {{.PodCIDR}} }").unwrap();
        let network = manager(dir.path(), Some(template.clone()));
        let err = network
            .set_pod_cidrs(template::parse_pod_cidrs("10.9.0.0/24").unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains(&template.display().to_string()),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("net.d"))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
