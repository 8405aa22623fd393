//! Manifests, indexes and image configs (OCI and Docker schema 2), and choosing the
//! node's platform from an index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    #[error("unsupported {what} media type {media_type:?}")]
    UnsupportedMedia {
        what: &'static str,
        media_type: String,
    },
    #[error("malformed {what}: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("no manifest for platform {platform} in the index (it has: {available})")]
    NoPlatform { platform: String, available: String },
    #[error("the config lists {diff_ids} layers but the manifest has {layers}")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("the manifest has {count} layers, more than the {MAX_LAYERS} allowed")]
    TooManyLayers { count: usize },
    #[error("{what} digest {digest:?} is not sha256:<64 lowercase hex digits>")]
    BadDigest { what: &'static str, digest: String },
}

/// containerd's limit too; overlayfs could stack no more than about 500 anyway.
pub const MAX_LAYERS: usize = 128;

/// A digest becomes part of request paths and file names: only the exact form passes.
fn check_digest(what: &'static str, digest: &str) -> Result<(), ManifestError> {
    if crate::reference::is_digest(digest) {
        Ok(())
    } else {
        Err(ManifestError::BadDigest {
            what,
            digest: digest.to_string(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform of this node, in Go's names as images use them.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: variant.map(str::to_string),
        }
    }

    fn matches(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        // arm64 images often leave the variant out; v8 is the only one.
        let norm = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            _ => p.variant.clone(),
        };
        wanted.variant.is_none() || norm(self) == norm(wanted)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a registry answered for a tag or digest.
pub enum Fetched {
    Index(Vec<Descriptor>),
    Manifest(Manifest),
}

/// Parses a manifest or index; the document's own mediaType wins over the header.
pub fn parse(body: &[u8], header_type: &str) -> Result<Fetched, ManifestError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|source| ManifestError::Malformed {
        what: "manifest",
        source,
    })?;
    let media_type = match probe.media_type {
        Some(t) => t,
        None if probe.manifests.is_some() => OCI_INDEX.to_string(),
        None if header_type.is_empty() => OCI_MANIFEST.to_string(),
        None => header_type.to_string(),
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let index: Index =
                serde_json::from_slice(body).map_err(|source| ManifestError::Malformed {
                    what: "index",
                    source,
                })?;
            for entry in &index.manifests {
                check_digest("index entry", &entry.digest)?;
            }
            Ok(Fetched::Index(index.manifests))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let manifest: Manifest =
                serde_json::from_slice(body).map_err(|source| ManifestError::Malformed {
                    what: "manifest",
                    source,
                })?;
            if manifest.layers.len() > MAX_LAYERS {
                return Err(ManifestError::TooManyLayers {
                    count: manifest.layers.len(),
                });
            }
            check_digest("config", &manifest.config.digest)?;
            for layer in &manifest.layers {
                check_digest("layer", &layer.digest)?;
            }
            if !manifest.config.media_type.is_empty()
                && !CONFIG_TYPES.contains(&manifest.config.media_type.as_str())
            {
                return Err(ManifestError::UnsupportedMedia {
                    what: "config",
                    media_type: manifest.config.media_type.clone(),
                });
            }
            if let Some(layer) = manifest
                .layers
                .iter()
                .find(|l| !LAYER_TYPES.contains(&l.media_type.as_str()))
            {
                return Err(ManifestError::UnsupportedMedia {
                    what: "layer",
                    media_type: layer.media_type.clone(),
                });
            }
            Ok(Fetched::Manifest(manifest))
        }
        other => Err(ManifestError::UnsupportedManifest(other.to_string())),
    }
}

/// The index entry for `platform`.
pub fn select(entries: &[Descriptor], platform: &Platform) -> Result<Descriptor, ManifestError> {
    entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(platform)))
        .cloned()
        .ok_or_else(|| ManifestError::NoPlatform {
            platform: platform.to_string(),
            available: entries
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// An image's config blob (OCI image-spec config.json, same field names as Docker's), read
/// leniently as registries serve it. Not the `[image]` table of criox.toml
/// (`config::ImageConfig`); the spec builder gets it as `oci_spec`'s `ImageConfiguration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OciImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// The process defaults an image gives its containers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
}

impl OciImageConfig {
    pub fn parse(body: &[u8]) -> Result<OciImageConfig, ManifestError> {
        serde_json::from_slice(body).map_err(|source| ManifestError::Malformed {
            what: "image config",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", arch.len()),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn selects_the_platform() {
        let entries = vec![desc("arm64", Some("v8")), desc("amd64", None)];
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(
            select(&entries, &amd)
                .unwrap()
                .platform
                .unwrap()
                .architecture,
            "amd64"
        );
        let arm = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select(&[desc("arm64", None)], &arm)
                .unwrap()
                .platform
                .unwrap()
                .architecture,
            "arm64"
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let e = select(&entries, &s390).unwrap_err().to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/amd64"),
            "{e}"
        );
    }

    #[test]
    fn unknown_layer_media_types_are_refused() {
        let m = manifest_json(&[("application/x-unknown", &digest('b'))]);
        let e = parse(m.as_bytes(), OCI_MANIFEST).err().unwrap().to_string();
        assert!(e.contains("application/x-unknown"), "{e}");
        assert!(parse(br#"{"mediaType":"text/plain"}"#, "").is_err());
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest_json(layers: &[(&str, &str)]) -> String {
        let layers: Vec<String> = layers
            .iter()
            .map(|(t, d)| format!(r#"{{"mediaType":"{t}","digest":"{d}","size":1}}"#))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{}]}}"#,
            digest('a'),
            layers.join(",")
        )
    }

    const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    #[test]
    fn layer_count_is_capped() {
        let d = digest('c');
        let ok: Vec<(&str, &str)> = (0..MAX_LAYERS).map(|_| (TAR_GZ, d.as_str())).collect();
        assert!(parse(manifest_json(&ok).as_bytes(), OCI_MANIFEST).is_ok());
        let over: Vec<(&str, &str)> = (0..=MAX_LAYERS).map(|_| (TAR_GZ, d.as_str())).collect();
        let e = parse(manifest_json(&over).as_bytes(), OCI_MANIFEST)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "the manifest has 129 layers, more than the 128 allowed");
    }

    #[test]
    fn digests_that_could_change_a_request_path_are_refused() {
        for bad in ["sha256:../../../v2/_catalog", "sha256:AB", "md5:00", ""] {
            let m = manifest_json(&[(TAR_GZ, bad)]);
            let e = parse(m.as_bytes(), OCI_MANIFEST).err().unwrap().to_string();
            assert!(e.starts_with("layer digest"), "{bad:?}: {e}");
        }
        let index = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:x/../y","size":1}]}"#;
        let e = parse(index.as_bytes(), "").err().unwrap().to_string();
        assert!(e.starts_with("index entry digest"), "{e}");
    }
}
