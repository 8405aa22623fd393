//! containers-registries.conf(5) v2: where an image name is pulled from. Short names go
//! through `[aliases]`, else `unqualified-search-registries`; a `[[registry]]` entry whose prefix matches
//! may rewrite the location, mark it insecure (plain HTTP) or blocked, and list mirrors
//! that are tried in order before it.

use std::path::Path;

use serde::Deserialize;

use crate::reference::{DOCKER_HUB, Reference};

#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("registries configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registries configuration {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("pulling {image}: registry {prefix} is blocked by the registries configuration")]
    Blocked { image: String, prefix: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistriesConf {
    #[serde(rename = "unqualified-search-registries", default)]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
    /// Short name to fully qualified name (`busybox = "docker.io/library/busybox"`).
    #[serde(default)]
    pub aliases: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistryEntry {
    pub prefix: Option<String>,
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MirrorEntry {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// One place to try: a registry host and the repository there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host (and port) as written in the configuration; `docker.io` is kept as is.
    pub host: String,
    pub repository: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
}

/// Where to pull one fully qualified name from: the endpoints in order.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name the user will see (RepoTags, RepoDigests): never a mirror's.
    pub reference: Reference,
    pub endpoints: Vec<Endpoint>,
}

impl RegistriesConf {
    /// Reads the file and then the drop-ins in `registries.conf.d/*.conf` beside it, in
    /// name order; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConf, RegistriesError> {
        let mut conf = Self::load_one(path)?.unwrap_or_default();
        let dir = path.with_file_name("registries.conf.d");
        let mut drop_ins: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect()
            })
            .unwrap_or_default();
        drop_ins.sort();
        for drop_in in drop_ins {
            if let Some(more) = Self::load_one(&drop_in)? {
                conf.merge(more);
            }
        }
        Ok(conf)
    }

    fn load_one(path: &Path) -> Result<Option<RegistriesConf>, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistriesError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text, &path.display().to_string()).map(Some)
    }

    /// One file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<RegistriesConf, RegistriesError> {
        toml::from_str(text).map_err(|source| RegistriesError::Parse {
            path: path.to_string(),
            source,
        })
    }

    /// A drop-in replaces the search list if it sets one, replaces registries with the
    /// same prefix, and adds aliases.
    fn merge(&mut self, other: RegistriesConf) {
        if !other.unqualified_search_registries.is_empty() {
            self.unqualified_search_registries = other.unqualified_search_registries;
        }
        for entry in other.registry {
            let key = entry.prefix.clone().or(entry.location.clone());
            self.registry
                .retain(|e| e.prefix.clone().or(e.location.clone()) != key);
            self.registry.push(entry);
        }
        self.aliases.extend(other.aliases);
    }

    /// The fully qualified candidates for a reference, in the order to try them.
    pub fn candidates(&self, reference: &Reference) -> Result<Vec<Source>, RegistriesError> {
        let alias = self
            .aliases
            .get(&reference.repository)
            .and_then(|target| Reference::parse(target).ok());
        let qualified: Vec<Reference> = match (&reference.registry, alias) {
            (Some(_), _) => vec![reference.clone()],
            (None, Some(mut target)) if target.registry.is_some() => {
                target.tag = reference.tag.clone();
                target.digest = reference.digest.clone();
                vec![target]
            }
            (None, _) if self.unqualified_search_registries.is_empty() => {
                vec![reference.qualified(DOCKER_HUB)]
            }
            (None, _) => self
                .unqualified_search_registries
                .iter()
                .map(|r| reference.qualified(r))
                .collect(),
        };
        qualified.into_iter().map(|r| self.source(r)).collect()
    }

    fn source(&self, reference: Reference) -> Result<Source, RegistriesError> {
        let name = reference.name();
        let entry = self
            .registry
            .iter()
            .filter_map(|e| {
                let prefix = e.prefix.as_deref().or(e.location.as_deref())?;
                prefix_matches(prefix, &name).then_some((prefix, e))
            })
            .max_by_key(|(prefix, _)| prefix.len());
        let Some((prefix, entry)) = entry else {
            let host = reference.registry.clone().unwrap_or_default();
            return Ok(Source {
                endpoints: vec![Endpoint {
                    host,
                    repository: reference.repository.clone(),
                    insecure: false,
                }],
                reference,
            });
        };
        if entry.blocked {
            return Err(RegistriesError::Blocked {
                image: reference.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let rest = &name[prefix.len()..];
        let mut endpoints: Vec<Endpoint> = entry
            .mirror
            .iter()
            .map(|m| endpoint(&format!("{}{rest}", m.location), m.insecure))
            .collect();
        let location = entry.location.as_deref().unwrap_or(prefix);
        endpoints.push(endpoint(&format!("{location}{rest}"), entry.insecure));
        Ok(Source {
            reference,
            endpoints,
        })
    }
}

/// A prefix matches whole path components (`a.io/x` matches `a.io/x/y`, not `a.io/xy`).
fn prefix_matches(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn endpoint(full: &str, insecure: bool) -> Endpoint {
    let (host, repository) = full.split_once('/').unwrap_or((full, ""));
    Endpoint {
        host: host.to_string(),
        repository: repository.trim_start_matches('/').to_string(),
        insecure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["first.example", "docker.io"]

[[registry]]
prefix = "docker.io/library"
location = "hub.internal/lib"
[[registry.mirror]]
location = "127.0.0.1:5000/hubmirror"
insecure = true
[[registry.mirror]]
location = "mirror2.example/m"

[[registry]]
location = "127.0.0.1:6000"
insecure = true

[[registry]]
prefix = "evil.example"
blocked = true
"#;

    #[test]
    fn mirrors_come_first_and_names_stay_the_users() {
        let conf: RegistriesConf = toml::from_str(CONF).unwrap();
        let r = Reference::parse("docker.io/library/busybox:1").unwrap();
        let s = &conf.candidates(&r).unwrap()[0];
        assert_eq!(s.reference.to_string(), "docker.io/library/busybox:1");
        let hosts: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| (e.host.as_str(), e.repository.as_str(), e.insecure))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1:5000", "hubmirror/busybox", true),
                ("mirror2.example", "m/busybox", false),
                ("hub.internal", "lib/busybox", false),
            ]
        );
        let r = Reference::parse("127.0.0.1:6000/a/b").unwrap();
        let s = &conf.candidates(&r).unwrap()[0];
        assert_eq!(s.endpoints.len(), 1);
        assert!(s.endpoints[0].insecure);
        assert_eq!(s.endpoints[0].repository, "a/b");
    }

    #[test]
    fn drop_ins_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(&main, CONF).unwrap();
        std::fs::create_dir(dir.path().join("registries.conf.d")).unwrap();
        std::fs::write(
            dir.path().join("registries.conf.d/10-aliases.conf"),
            "[aliases]\n\"tool\" = \"quay.example/team/tool\"\n\
             [[registry]]\nprefix = \"evil.example\"\nblocked = false\n",
        )
        .unwrap();
        let conf = RegistriesConf::load(&main).unwrap();
        let r = Reference::parse("tool:2").unwrap();
        let c = conf.candidates(&r).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reference.to_string(), "quay.example/team/tool:2");
        // The drop-in's entry replaced the blocked one.
        let r = Reference::parse("evil.example/x").unwrap();
        assert!(conf.candidates(&r).is_ok());
        // A missing file is an empty configuration.
        let empty = RegistriesConf::load(&dir.path().join("none/registries.conf")).unwrap();
        assert!(empty.registry.is_empty());
    }

    #[test]
    fn short_names_use_the_search_list_and_blocked_is_refused() {
        let conf: RegistriesConf = toml::from_str(CONF).unwrap();
        let r = Reference::parse("busybox").unwrap();
        let names: Vec<_> = conf
            .candidates(&r)
            .unwrap()
            .iter()
            .map(|s| s.reference.to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "first.example/busybox:latest",
                "docker.io/library/busybox:latest"
            ]
        );
        let r = Reference::parse("evil.example/x").unwrap();
        assert!(matches!(
            conf.candidates(&r),
            Err(RegistriesError::Blocked { .. })
        ));
        // A prefix only matches whole components.
        let r = Reference::parse("127.0.0.1:60001/a").unwrap();
        assert!(!conf.candidates(&r).unwrap()[0].endpoints[0].insecure);
    }
}
