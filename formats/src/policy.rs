//! containers-policy.json(5): whether an image may be pulled. The most specific scope of
//! the `docker` transport wins (repository:tag, repository, namespaces, host), then the
//! transport's `""` scope, then `default`. Every requirement of the chosen list must
//! accept. `sigstoreSigned` with a public key is checked against the registry's
//! signatures during the pull; `signedBy` (GPG) refuses the image with an error that
//! says so: criox never accepts what it did not check.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use crate::sigstore_key::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "trust policy {path} does not exist (set image.signature_policy to another file); \
         a minimal policy that accepts every image is {{\"default\": [{{\"type\": \"insecureAcceptAnything\"}}]}}"
    )]
    Missing { path: String },
    #[error("trust policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trust policy {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("trust policy {path} has an empty requirement list for scope {scope:?}")]
    Empty { path: String, scope: String },
    #[error("image {image} refused by trust policy {path} (scope {scope:?}): {reason}")]
    Refused {
        image: String,
        path: String,
        scope: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Requirement {
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything,
    #[serde(rename = "reject")]
    Reject,
    #[serde(rename = "signedBy")]
    SignedBy {},
    #[serde(rename = "sigstoreSigned")]
    SigstoreSigned {
        #[serde(rename = "keyPath")]
        key_path: Option<String>,
        #[serde(rename = "keyData")]
        key_data: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
struct PolicyFile {
    default: Vec<Requirement>,
    #[serde(default)]
    transports: HashMap<String, HashMap<String, Vec<Requirement>>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    path: String,
    file: PolicyFile,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                PolicyError::Missing {
                    path: shown.clone(),
                }
            } else {
                PolicyError::Read {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = serde_json::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.to_string(),
            source,
        })?;
        let policy = Policy {
            path: path.to_string(),
            file,
        };
        if policy.file.default.is_empty() {
            return Err(PolicyError::Empty {
                path: path.to_string(),
                scope: "default".into(),
            });
        }
        Ok(policy)
    }

    /// The requirements for `name` (`host/repo`) at `tag`, and the scope they came from.
    fn requirements(&self, name: &str, tag: Option<&str>) -> (&[Requirement], String) {
        if let Some(scopes) = self.file.transports.get("docker") {
            let mut candidates = Vec::new();
            if let Some(t) = tag {
                candidates.push(format!("{name}:{t}"));
            }
            let mut current = name.to_string();
            loop {
                candidates.push(current.clone());
                match current.rsplit_once('/') {
                    Some((parent, _)) => current = parent.to_string(),
                    None => break,
                }
            }
            // Wildcard host scopes: *.example.com matches sub.example.com.
            let host = name.split('/').next().unwrap_or("");
            let mut labels: &str = host;
            while let Some((_, rest)) = labels.split_once('.') {
                candidates.push(format!("*.{rest}"));
                labels = rest;
            }
            candidates.push(String::new());
            for scope in candidates {
                if let Some(reqs) = scopes.get(&scope) {
                    return (reqs, scope);
                }
            }
        }
        (&self.file.default, "default".to_string())
    }

    /// Decides for an image before any layer is fetched. Returns the keys whose sigstore
    /// signatures the image must carry (each one).
    pub fn check(
        &self,
        name: &str,
        tag: Option<&str>,
        shown: &str,
    ) -> Result<Vec<PublicKey>, PolicyError> {
        let (reqs, scope) = self.requirements(name, tag);
        let refuse = |reason: &str| PolicyError::Refused {
            image: shown.to_string(),
            path: self.path.clone(),
            scope: scope.clone(),
            reason: reason.to_string(),
        };
        if reqs.is_empty() {
            return Err(PolicyError::Empty {
                path: self.path.clone(),
                scope,
            });
        }
        let mut keys = Vec::new();
        for req in reqs {
            match req {
                Requirement::InsecureAcceptAnything => {}
                Requirement::Reject => return Err(refuse("requirement \"reject\"")),
                Requirement::SignedBy {} => {
                    return Err(refuse(
                        "requirement \"signedBy\" needs GPG signature verification, which criox does not support yet",
                    ));
                }
                Requirement::SigstoreSigned { key_path, key_data } => {
                    let (pem, source) = match (key_path, key_data) {
                        (Some(path), None) => (
                            std::fs::read_to_string(path)
                                .map_err(|e| refuse(&format!("sigstoreSigned key {path}: {e}")))?,
                            path.clone(),
                        ),
                        (None, Some(data)) => (
                            base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .ok()
                                .and_then(|b| String::from_utf8(b).ok())
                                .ok_or_else(|| {
                                    refuse("sigstoreSigned keyData is not base64 PEM")
                                })?,
                            "keyData".to_string(),
                        ),
                        _ => {
                            return Err(refuse(
                                "requirement \"sigstoreSigned\" needs exactly one of keyPath and keyData (Fulcio certificates are not supported)",
                            ));
                        }
                    };
                    let key = PublicKey::from_pem(&pem, &source)
                        .map_err(|e| refuse(&format!("sigstoreSigned: {e}")))?;
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_policy_names_its_path_and_a_policy_that_works() {
        let err = Policy::load(Path::new("/nonexistent/criox/policy.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/criox/policy.json does not exist"),
            "{text}"
        );
        let suggested = &text[text.find('{').unwrap()..];
        let policy = Policy::parse(suggested, "suggested").expect("the suggested policy parses");
        assert!(
            policy
                .check("reg.example/app", Some("1"), "reg.example/app:1")
                .is_ok()
        );
    }

    const POLICY: &str = r#"{
      "default": [{"type": "reject"}],
      "transports": {
        "docker": {
          "127.0.0.1:5000": [{"type": "insecureAcceptAnything"}],
          "127.0.0.1:5000/criox/secret": [{"type": "reject"}],
          "127.0.0.1:5000/criox/busybox:signed": [{"type": "sigstoreSigned", "keyPath": "/k.pub"}],
          "*.example.com": [{"type": "insecureAcceptAnything"}]
        }
      }
    }"#;

    #[test]
    fn the_most_specific_scope_decides() {
        let p = Policy::parse(POLICY, "policy.json").unwrap();
        p.check("127.0.0.1:5000/criox/busybox", Some("latest"), "x")
            .unwrap();
        let e = p
            .check("127.0.0.1:5000/criox/secret", Some("latest"), "img")
            .unwrap_err();
        assert!(e.to_string().contains("reject"), "{e}");
        assert!(e.to_string().contains("img"), "{e}");
        let e = p
            .check("127.0.0.1:5000/criox/busybox", Some("signed"), "img")
            .unwrap_err();
        assert!(e.to_string().contains("/k.pub"), "{e}");
        p.check("reg.example.com/a", None, "x").unwrap();
        assert!(p.check("other.io/a", None, "x").is_err());
    }

    #[test]
    fn unknown_requirement_types_fail_to_load() {
        let e = Policy::parse(r#"{"default":[{"type":"trustEverything"}]}"#, "p").unwrap_err();
        assert!(matches!(e, PolicyError::Parse { .. }));
    }
}
