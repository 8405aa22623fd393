//! Image references: `[registry/]repository[:tag][@digest]`, with Docker Hub's
//! normalization (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image.image: invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: &'static str,
}

pub const DOCKER_HUB: &str = "docker.io";

/// A parsed reference. `registry` is `None` for a short name such as `busybox`, which
/// the registries configuration qualifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The longest name (registry and repository) the distribution grammar allows.
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: no empty, `.` or `..` component, no
/// separator at either end, so a repository can never climb out of its request path.
fn is_path_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[run_start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// A domain name, IPv4 address or bracketed IPv6 address, with an optional port.
fn is_registry_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, p),
            None => (host, "1"),
        }
    };
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|c| c.is_ascii_digit());
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
    };
    port_ok && (host.starts_with('[') || name.split('.').all(label))
}

impl Reference {
    /// Parses by the distribution reference grammar, nothing looser: every component
    /// later becomes part of a registry request path and of policy and mirror matching.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason| ReferenceError {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("empty"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                if !is_digest(d) {
                    return Err(fail("the digest must be sha256:<64 lowercase hex digits>"));
                }
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag
            && !is_tag(t)
        {
            return Err(fail(
                "the tag must be 1 to 128 of letters, digits, '_', '.', '-', not starting with '.' or '-'",
            ));
        }
        if name.len() > MAX_NAME {
            return Err(fail("the name is longer than 255 characters"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest.to_string())
            }
            _ => (None, name.to_string()),
        };
        if !repository.split('/').all(is_path_component) {
            return Err(fail(
                "each repository component must be lowercase letters and digits, joined by '.', '_', '__' or dashes",
            ));
        }
        if let Some(r) = &registry
            && !is_registry_host(r)
        {
            return Err(fail("bad registry host"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        let mut reference = Reference {
            registry,
            repository,
            tag,
            digest,
        };
        if reference.registry.as_deref() == Some(DOCKER_HUB) {
            reference.normalize_docker_hub();
        }
        // Measured as normalized: Docker Hub's `library/` must not push it over.
        if reference.name().len() > MAX_NAME {
            return Err(fail("the name is longer than 255 characters"));
        }
        Ok(reference)
    }

    /// The same reference in `registry`; Docker Hub's single names gain `library/`.
    pub fn qualified(&self, registry: &str) -> Reference {
        let mut r = self.clone();
        r.registry = Some(registry.to_string());
        if registry == DOCKER_HUB {
            r.normalize_docker_hub();
        }
        r
    }

    fn normalize_docker_hub(&mut self) {
        if !self.repository.contains('/') {
            self.repository = format!("library/{}", self.repository);
        }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// The tag or digest to ask the registry for (the digest wins).
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `registry/repository:tag`, if there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` for a manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry, None);
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(
            r.qualified(DOCKER_HUB).to_string(),
            "docker.io/library/busybox:latest"
        );
        let r = Reference::parse("127.0.0.1:5000/criox/busybox:1.36").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.repository, "criox/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("localhost/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(
            Reference::parse("docker.io/nginx").unwrap().to_string(),
            "docker.io/library/nginx:latest"
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "x@sha256:12",
            "x:",
            "x:-bad",
            "reg.io/",
            "reg.io/trusted/../evil/app",
            "127.0.0.1:5000/a/../../../v2/_catalog",
            "reg.io/./x",
            "reg.io/a/.",
            "reg.io/.hidden",
            "reg.io/a./b",
            "reg.io/a-",
            "reg.io/a...b",
            "reg.io/a___b",
            "reg.io/a%2f..",
            "reg.io/a?b",
            "reg.io/a#b",
            "x:.tag",
            "bad_host:5000/x",
            "-host.io/x",
            "host.io:99999x/x",
            "[::1/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("reg.io/{}", "a".repeat(250));
        assert!(Reference::parse(&long).is_err());
        // Found by fuzzing: 255 characters as written, 263 once normalized.
        let hub = format!("docker.io/{}", "a".repeat(245));
        assert!(Reference::parse(&hub).is_err(), "{hub} accepted");
        let hub_ok = format!("docker.io/library/{}", "a".repeat(237));
        let r = Reference::parse(&hub_ok).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn accepts_the_whole_grammar() {
        for good in [
            "a_b/c__d/e-f/g---h/i.j:_T.a-g",
            "[::1]:5000/x",
            "[fe80::1]/x:1",
            "my-reg.example.com:443/team/app",
            "localhost/x",
            "localhost:5000/x",
        ] {
            assert!(Reference::parse(good).is_ok(), "{good:?} refused");
        }
        let e = Reference::parse("reg.io/a/../b").unwrap_err().to_string();
        assert!(e.starts_with("image.image: invalid image reference"), "{e}");
    }
}
