//! Pending streaming requests, each under a random single-use token that expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a URL stays valid (as the kubelet's streaming server).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Requests waiting for a client at once; more are refused rather than held.
pub const MAX_PENDING: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    Attach {
        container_id: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    PortForward {
        pod_id: String,
        ports: Vec<u16>,
    },
}

impl Request {
    /// The URL path segment this request is served under.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Exec { .. } => "exec",
            Request::Attach { .. } => "attach",
            Request::PortForward { .. } => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too many pending streaming requests ({0}); try again later")]
    Full(usize),
    #[error("cannot read random bytes for a token: {0}")]
    Random(std::io::Error),
}

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Request, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, request: Request) -> Result<String, CacheError> {
        let token = random_token().map_err(CacheError::Random)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, expires)| *expires > now);
        if entries.len() >= MAX_PENDING {
            return Err(CacheError::Full(MAX_PENDING));
        }
        entries.insert(token.clone(), (request, now + self.ttl));
        Ok(token)
    }

    /// The request under a live token, which stays usable: a refused upgrade leaves it to
    /// the client's next attempt (kubectl tries WebSocket, then SPDY, with one URL).
    pub fn peek(&self, token: &str) -> Option<Request> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (request, expires) = entries.get(token)?;
        (*expires > Instant::now()).then(|| request.clone())
    }

    /// Takes the request out: a token works once, and only before it expires.
    pub fn consume(&self, token: &str) -> Option<Request> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (request, expires) = entries.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

/// 16 random bytes, URL-safe hex.
fn random_token() -> std::io::Result<String> {
    let mut raw = [0u8; 16];
    let mut filled = 0;
    while filled < raw.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `raw`.
        let n =
            unsafe { libc::getrandom(raw[filled..].as_mut_ptr().cast(), raw.len() - filled, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> Request {
        Request::PortForward {
            pod_id: "p".into(),
            ports: vec![80],
        }
    }

    #[test]
    fn token_is_single_use() {
        let cache = TokenCache::new(TOKEN_TTL);
        let token = cache.insert(pf()).unwrap();
        assert_eq!(token.len(), 32);
        assert_eq!(cache.consume(&token), Some(pf()));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("unknown"), None);
    }

    #[test]
    fn peeking_leaves_the_token_usable() {
        let cache = TokenCache::new(TOKEN_TTL);
        let token = cache.insert(pf()).unwrap();
        assert_eq!(cache.peek(&token), Some(pf()));
        assert_eq!(cache.consume(&token), Some(pf()));
        assert_eq!(cache.peek(&token), None);
        let expired = TokenCache::new(Duration::from_millis(0));
        let token = expired.insert(pf()).unwrap();
        assert_eq!(expired.peek(&token), None);
    }

    #[test]
    fn expired_token_is_refused() {
        let cache = TokenCache::new(Duration::from_millis(0));
        let token = cache.insert(pf()).unwrap();
        assert_eq!(cache.consume(&token), None);
    }

    #[test]
    fn tokens_differ_and_cache_is_bounded() {
        let cache = TokenCache::new(TOKEN_TTL);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PENDING {
            assert!(seen.insert(cache.insert(pf()).unwrap()));
        }
        assert!(matches!(cache.insert(pf()), Err(CacheError::Full(_))));
    }
}
