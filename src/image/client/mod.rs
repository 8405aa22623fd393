//! A client for one repository on one registry (the OCI distribution API): manifests and
//! blobs, following the registry's `WWW-Authenticate` challenge for basic or bearer-token
//! auth (credentials go to a token realm only where `realm.rs` allows), and blob redirects.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use base64::Engine;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

mod realm;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("registry CA certificate {path}: {detail}")]
    Certificate { path: String, detail: String },
    #[error("TLS setup: {0}")]
    Config(#[from] rustls::Error),
}

/// Trusted roots: the system's, plus every `*.crt` under `certs_dir/<host>/`
/// (containers-certs.d(5)).
fn roots(certs_dir: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot load a system CA certificate");
    }
    roots.add_parsable_certificates(native.certs);
    let Ok(hosts) = std::fs::read_dir(certs_dir) else {
        return Ok(roots);
    };
    for host in hosts.flatten() {
        let Ok(files) = std::fs::read_dir(host.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().and_then(|e| e.to_str()) != Some("crt") {
                continue;
            }
            let fail = |detail: String| TlsError::Certificate {
                path: path.display().to_string(),
                detail,
            };
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            for cert in certs {
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
    }
    Ok(roots)
}

/// Builds the connection pool shared by all pulls: HTTPS with rustls, and plain HTTP for
/// registries configured insecure.
pub fn http_client(certs_dir: &Path) -> Result<HttpClient, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(certs_dir)?)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

const MAX_MANIFEST: usize = 4 << 20;

#[derive(Debug, Clone)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// A registry token, sent as `Authorization: Bearer`.
    Bearer(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach registry {host} over {scheme}: {cause}{hint}")]
    Connect {
        host: String,
        scheme: &'static str,
        /// Every cause of the failure: the pool's own message says only "Connect".
        cause: String,
        /// What the operator can change, when the cause points at it.
        hint: String,
    },
    #[error("registry {host}: reading the response: {source}")]
    Body {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("registry {host}: {what} not found")]
    NotFound { host: String, what: String },
    #[error("registry {host}: authentication failed for {what}: {detail}")]
    Unauthorized {
        host: String,
        what: String,
        detail: String,
    },
    #[error("registry {host}: {what}: unexpected status {status}")]
    Status {
        host: String,
        what: String,
        status: StatusCode,
    },
    #[error("registry {host}: {what}: {detail}")]
    Protocol {
        host: String,
        what: String,
        detail: String,
    },
}

impl ClientError {
    /// Whether trying the next mirror or search registry may help.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }
}

pub struct RepoClient {
    http: HttpClient,
    /// Host as the user knows it, for messages.
    host: String,
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: tokio::sync::RwLock<Option<HeaderValue>>,
}

fn connect_error(
    host: &str,
    scheme: Option<&str>,
    error: &hyper_util::client::legacy::Error,
) -> ClientError {
    let mut causes: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        next = e.source();
    }
    if causes.is_empty() {
        causes.push(error.to_string());
    }
    let cause = causes.join(": ");
    let tls = scheme == Some("https");
    let lower = cause.to_ascii_lowercase();
    let hint = if tls && (lower.contains("corrupt message") || lower.contains("invalidcontenttype"))
    {
        format!(
            " (the server does not speak TLS; if {host} serves plain HTTP, mark it \
             `insecure = true` in registries.conf: [[registry]] location = \"{host}\")"
        )
    } else if tls && lower.contains("certificate") {
        format!(
            " (if {host} uses a private CA, put it in <image.certs_dir>/{host}/ca.crt; \
             if it serves plain HTTP, mark it `insecure = true` in registries.conf)"
        )
    } else {
        String::new()
    };
    ClientError::Connect {
        host: host.to_string(),
        scheme: if tls { "https" } else { "http" },
        cause,
        hint,
    }
}

/// `localhost`, 127.0.0.0/8 or ::1, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Docker Hub's API is not served at its name.
fn api_host(host: &str) -> &str {
    if host == super::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        host
    }
}

impl RepoClient {
    pub fn new(
        http: HttpClient,
        host: &str,
        repository: &str,
        insecure: bool,
        credentials: Option<Credentials>,
    ) -> Result<RepoClient, ClientError> {
        let scheme = if insecure { "http" } else { "https" };
        Ok(RepoClient {
            http,
            host: host.to_string(),
            base: format!("{scheme}://{}", api_host(host)),
            repository: repository.to_string(),
            credentials,
            authorization: tokio::sync::RwLock::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn protocol(&self, what: &str, detail: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            host: self.host.clone(),
            what: what.to_string(),
            detail: detail.into(),
        }
    }

    async fn send(
        &self,
        uri: &Uri,
        accept: Option<&str>,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut req = Request::get(uri.clone());
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = req
            .header(header::USER_AGENT, "criox")
            .body(Empty::new())
            .map_err(|e| self.protocol("request", e.to_string()))?;
        self.http
            .request(req)
            .await
            .map_err(|source| connect_error(&self.host, uri.scheme_str(), &source))
    }

    /// GET with auth and up to five redirects; `what` names the object for errors.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e: http::uri::InvalidUri| self.protocol(what, e.to_string()))?;
        let origin = uri.clone();
        let same_repo = format!("/v2/{}/", self.repository);
        let is_manifest = path.starts_with(&format!("{same_repo}manifests/"));
        let mut authenticated = false;
        for _ in 0..6 {
            // Credentials go only where they were given for, and never in clear text.
            let auth = if same_origin(&uri, &origin) {
                self.authorization.read().await.clone()
            } else {
                None
            };
            let resp = self.send(&uri, accept, auth.as_ref()).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_default();
                self.authenticate(&challenge, what).await?;
                continue;
            }
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.protocol(what, "redirect without a location"))?;
                let next = resolve_location(&uri, location)
                    .ok_or_else(|| self.protocol(what, format!("bad redirect {location:?}")))?;
                check_redirect(&origin, &same_repo, is_manifest, &next).map_err(|why| {
                    self.protocol(what, format!("redirect to {location:?} refused: {why}"))
                })?;
                uri = next;
                continue;
            }
            return match status {
                s if s.is_success() => Ok(resp),
                StatusCode::NOT_FOUND => Err(ClientError::NotFound {
                    host: self.host.clone(),
                    what: what.to_string(),
                }),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Err(ClientError::Unauthorized {
                        host: self.host.clone(),
                        what: what.to_string(),
                        detail: format!("the registry answered {status}"),
                    })
                }
                status => Err(ClientError::Status {
                    host: self.host.clone(),
                    what: what.to_string(),
                    status,
                }),
            };
        }
        Err(self.protocol(what, "too many redirects"))
    }

    /// Answers a `WWW-Authenticate` challenge: basic with the credentials, or a bearer
    /// token from the realm the registry names.
    async fn authenticate(&self, challenge: &str, what: &str) -> Result<(), ClientError> {
        let unauthorized = |detail: String| ClientError::Unauthorized {
            host: self.host.clone(),
            what: what.to_string(),
            detail,
        };
        let (scheme, params) = parse_challenge(challenge);
        let value = match (scheme.to_ascii_lowercase().as_str(), &self.credentials) {
            ("basic", Some(Credentials::Basic { username, password })) => basic(username, password),
            ("basic", _) => {
                return Err(unauthorized(
                    "the registry requires a username and password".into(),
                ));
            }
            ("bearer", Some(Credentials::Bearer(token))) => format!("Bearer {token}"),
            ("bearer", _) => format!("Bearer {}", self.fetch_token(&params, what).await?),
            _ => {
                return Err(unauthorized(format!(
                    "unsupported authentication challenge {challenge:?}"
                )));
            }
        };
        let value = HeaderValue::from_str(&value)
            .map_err(|_| unauthorized("credentials are not a valid header".into()))?;
        *self.authorization.write().await = Some(value);
        Ok(())
    }

    async fn fetch_token(
        &self,
        params: &[(String, String)],
        what: &str,
    ) -> Result<String, ClientError> {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = param("realm")
            .ok_or_else(|| self.protocol(what, "bearer challenge without a realm"))?;
        let mut query = Vec::new();
        if let Some(service) = param("service") {
            query.push(format!("service={}", encode(service)));
        }
        let scope = param("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        query.push(format!("scope={}", encode(&scope)));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let uri: Uri = url
            .parse()
            .map_err(|_| self.protocol(what, format!("bad token realm {realm:?}")))?;
        let auth = match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                match self
                    .base
                    .parse()
                    .map_err(|_| realm::Refusal::NoHost)
                    .and_then(|registry| realm::may_send_credentials(&registry, &uri))
                {
                    Ok(()) => HeaderValue::from_str(&basic(username, password)).ok(),
                    Err(why) => {
                        tracing::debug!(registry = %self.host, realm, reason = %why, "asking the token realm without credentials");
                        None
                    }
                }
            }
            _ => None,
        };
        let resp = self.send(&uri, None, auth.as_ref()).await?;
        if !resp.status().is_success() {
            return Err(ClientError::Unauthorized {
                host: self.host.clone(),
                what: what.to_string(),
                detail: format!("the token service {realm} answered {}", resp.status()),
            });
        }
        let body = self.read_limited(resp, 1 << 20, "token").await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.protocol("token", format!("bad token answer: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| self.protocol("token", "token answer without a token"))
    }

    async fn read_limited(
        &self,
        resp: Response<Incoming>,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| ClientError::Body {
                host: self.host.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
                if out.len() > limit {
                    return Err(self.protocol(what, format!("larger than {limit} bytes")));
                }
            }
        }
        Ok(out)
    }

    /// A manifest or index by tag or digest: its bytes and media type (from the
    /// document, else the Content-Type header).
    pub async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String), ClientError> {
        let what = format!("manifest {}:{reference}", self.repository);
        let resp = self
            .get(
                &format!("/v2/{}/manifests/{reference}", self.repository),
                Some(&MANIFEST_TYPES.join(", ")),
                &what,
            )
            .await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let body = self.read_limited(resp, MAX_MANIFEST, &what).await?;
        Ok((body, content_type))
    }

    /// A blob's response, to be streamed by the caller.
    pub async fn blob(&self, digest: &str) -> Result<Incoming, ClientError> {
        let what = format!("blob {digest} of {}", self.repository);
        let resp = self
            .get(
                &format!("/v2/{}/blobs/{digest}", self.repository),
                None,
                &what,
            )
            .await?;
        Ok(resp.into_body())
    }
}

fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.authority() == b.authority()
}

/// Blobs are often served from another host (a CDN); a manifest is not, and neither
/// ever comes from another repository of the same registry or over a weaker scheme.
fn check_redirect(
    origin: &Uri,
    repo_prefix: &str,
    is_manifest: bool,
    next: &Uri,
) -> Result<(), &'static str> {
    if origin.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
        return Err("it leaves https");
    }
    if origin.authority() == next.authority() {
        if !next.path().starts_with(repo_prefix) || next.path().contains("/../") {
            return Err("it leads to another repository");
        }
        return Ok(());
    }
    if is_manifest {
        return Err("a manifest comes from the registry itself");
    }
    Ok(())
}

fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    format!("{scheme}://{authority}{location}").parse().ok()
}

/// `Bearer realm="x",service="y"` into the scheme and its parameters.
pub fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((key.trim().to_string(), value));
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests;
