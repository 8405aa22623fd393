//! Where a registry's credentials may go when it sends the client to a token realm. A
//! registry names its realm in its `WWW-Authenticate` challenge, and a registry one pulls
//! from (a mirror, a public one a short name resolved to) is not trusted with credentials
//! meant for another: they go only to the registry itself (same scheme, host and port), or
//! over https to a host of the registry's registrable domain, as Docker Hub's
//! registry-1.docker.io sends clients to auth.docker.io. Anything else gets an anonymous
//! token request.

use http::Uri;

/// Why credentials stay home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the realm is another host over plain HTTP")]
    PlainHttp,
    #[error("the realm is outside the registry's registrable domain")]
    OtherDomain,
    #[error("the realm or the registry has no host")]
    NoHost,
}

/// Whether the credentials for `registry` (its base URI) may go to `realm`.
pub fn may_send_credentials(registry: &Uri, realm: &Uri) -> Result<(), Refusal> {
    let (Some(from), Some(to)) = (origin(registry), origin(realm)) else {
        return Err(Refusal::NoHost);
    };
    if from == to {
        return Ok(());
    }
    if to.scheme != "https" {
        return Err(Refusal::PlainHttp);
    }
    match (registrable_domain(&from.host), registrable_domain(&to.host)) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err(Refusal::OtherDomain),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// Scheme, host and port, with the scheme's port filled in and names in lower case.
fn origin(uri: &Uri) -> Option<Origin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.trim_end_matches('.').to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    if host.is_empty() {
        return None;
    }
    Some(Origin { scheme, host, port })
}

/// The part of `host` a registrant holds (example.co.uk for a.b.example.co.uk), by the
/// public suffix list; an address or a bare public suffix has none.
fn registrable_domain(host: &str) -> Option<&str> {
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return None;
    }
    psl::domain_str(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(registry: &str, realm: &str) -> Result<(), Refusal> {
        may_send_credentials(&registry.parse().unwrap(), &realm.parse().unwrap())
    }

    #[test]
    fn the_registry_itself_gets_credentials() {
        assert_eq!(
            check("https://reg.example", "https://reg.example/token"),
            Ok(())
        );
        assert_eq!(
            check("https://reg.example", "https://REG.example:443/t"),
            Ok(())
        );
        assert_eq!(
            check("http://127.0.0.1:5000", "http://127.0.0.1:5000/token"),
            Ok(())
        );
        assert_eq!(
            check("http://localhost:5000", "http://localhost:5000/t"),
            Ok(())
        );
    }

    #[test]
    fn https_hosts_of_the_same_registrable_domain_get_credentials() {
        assert_eq!(
            check(
                "https://registry-1.docker.io",
                "https://auth.docker.io/token"
            ),
            Ok(())
        );
        assert_eq!(
            check("https://registry.gitlab.com", "https://gitlab.com/jwt/auth"),
            Ok(())
        );
        assert_eq!(
            check("https://reg.example.co.uk", "https://auth.example.co.uk/t"),
            Ok(())
        );
        // An insecure registry's own domain, when the realm itself is https.
        assert_eq!(
            check("http://reg.example.com", "https://auth.example.com/t"),
            Ok(())
        );
    }

    #[test]
    fn other_hosts_get_none() {
        assert_eq!(
            check(
                "https://registry-1.docker.io",
                "https://auth.evil.example/token"
            ),
            Err(Refusal::OtherDomain)
        );
        // A public suffix is shared by strangers: co.uk, and private ones as github.io.
        assert_eq!(
            check("https://reg.example.co.uk", "https://auth.other.co.uk/t"),
            Err(Refusal::OtherDomain)
        );
        assert_eq!(
            check("https://a.github.io", "https://b.github.io/t"),
            Err(Refusal::OtherDomain)
        );
        // Addresses have no domain to share, loopback ones included.
        assert_eq!(
            check("https://10.0.0.1:5000", "https://10.0.0.1:5001/t"),
            Err(Refusal::OtherDomain)
        );
        assert_eq!(
            check("https://[::1]:5000", "https://[::1]:5001/t"),
            Err(Refusal::OtherDomain)
        );
    }

    #[test]
    fn plain_http_goes_only_to_the_registry_itself() {
        assert_eq!(
            check("http://127.0.0.1:5000", "http://127.0.0.1:5001/token"),
            Err(Refusal::PlainHttp)
        );
        assert_eq!(
            check("https://reg.example", "http://reg.example/token"),
            Err(Refusal::PlainHttp),
            "the registry's host but over http"
        );
        assert_eq!(
            check(
                "https://registry-1.docker.io",
                "http://auth.docker.io/token"
            ),
            Err(Refusal::PlainHttp)
        );
        assert_eq!(
            check("http://reg.example:5000", "http://reg.example:5001/t"),
            Err(Refusal::PlainHttp)
        );
    }
}
