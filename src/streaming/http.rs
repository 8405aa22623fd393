//! The HTTP/1.1 side: routes `/exec/<token>`, `/attach/<token>` and `/portforward/<token>`,
//! looks the token up, negotiates the upgrade (SPDY/3.1 or WebSocket) and the subprotocol,
//! spends the token once both are agreed, and hands the upgraded connection to the session
//! code.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request as HttpRequest, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::cache::{Request, TokenCache};
use super::runtime::StreamingRuntime;
use super::{portforward, remotecommand, spdy, tunnel};

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";
const SPDY_UPGRADE: &str = "SPDY/3.1";
/// Connections served at once before new ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const UNKNOWN_TOKEN: &str = "unknown, used or expired streaming token: request a new URL";

pub struct Shared {
    pub cache: TokenCache,
    pub runtime: Arc<dyn StreamingRuntime>,
}

type Reply = Response<Full<Bytes>>;

pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!("streaming server accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(socket, peer, shared).await,
                // The handshake shares the header deadline: a client that opens a
                // connection and says nothing must not hold a permit.
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, shared).await,
                        Ok(Err(e)) => tracing::debug!("streaming TLS handshake from {peer}: {e}"),
                        Err(_) => tracing::debug!("streaming TLS handshake from {peer} timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(shared, req).await) }
    });
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!("streaming connection from {peer}: {e}");
    }
}

/// A refusal as a Kubernetes `Status`: client-go shows its message to the user, where a
/// plain-text body is read as YAML by the WebSocket executor and shown as nothing.
fn refuse(status: StatusCode, message: impl Into<String>) -> Reply {
    let reason = match status {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        _ => "BadRequest",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": status.as_u16(),
    });
    let mut body = body.to_string();
    body.push('\n');
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

async fn route(shared: Arc<Shared>, req: HttpRequest<Incoming>) -> Reply {
    let path = req.uri().path().trim_matches('/').to_string();
    let Some((kind, token)) = path.split_once('/') else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no streaming endpoint at /{path}"),
        );
    };
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no streaming endpoint at /{path}"),
        );
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "streaming endpoints take GET or POST",
        );
    }
    // The token is spent only by an upgrade that succeeds (see `claim`).
    let Some(request) = shared.cache.peek(token) else {
        return refuse(StatusCode::NOT_FOUND, UNKNOWN_TOKEN);
    };
    if request.kind() != kind {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("the token is for /{}, not /{kind}", request.kind()),
        );
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if upgrade.eq_ignore_ascii_case("websocket") {
        upgrade_websocket(shared, token, request, req)
    } else if upgrade.eq_ignore_ascii_case(SPDY_UPGRADE) {
        upgrade_spdy(shared, token, request, req)
    } else {
        refuse(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request: expected Upgrade: SPDY/3.1 or websocket",
        )
    }
}

/// All values of a header that may repeat or hold a comma-separated list.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol the client offers that the server speaks.
fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
}

fn no_common_protocol(offered: &[String], supported: &[&str]) -> Reply {
    refuse(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
        ),
    )
}

/// Runs `serve` on a task of its own with the socket hyper hands over once the switching
/// reply is sent; `upgrade` names the protocol in the log when that fails.
fn serve_upgraded<F>(
    req: &mut HttpRequest<Incoming>,
    upgrade: &'static str,
    serve: impl FnOnce(TokioIo<Upgraded>) -> F + Send + 'static,
) where
    F: Future<Output = ()> + Send,
{
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!("{upgrade} upgrade failed: {e}"),
        }
    });
}

/// The 101 reply to an upgrade to `upgrade`.
fn switching_protocols(upgrade: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = reply.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    reply
}

/// Spends the token once the upgrade is agreed; None when another connection spent it
/// first or it expired meanwhile.
fn claim(shared: &Shared, token: &str) -> Option<Reply> {
    match shared.cache.consume(token) {
        Some(_) => None,
        None => Some(refuse(StatusCode::NOT_FOUND, UNKNOWN_TOKEN)),
    }
}

fn upgrade_spdy(
    shared: Arc<Shared>,
    token: &str,
    request: Request,
    mut req: HttpRequest<Incoming>,
) -> Reply {
    let supported: &[&str] = match request {
        Request::PortForward { .. } => &[portforward::SPDY_PROTOCOL],
        _ => remotecommand::SPDY_PROTOCOLS,
    };
    let offered = list(req.headers(), PROTOCOL_HEADER);
    if offered.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        );
    }
    let Some(chosen) = negotiate(&offered, supported) else {
        let mut reply = no_common_protocol(&offered, supported);
        if let Ok(v) = HeaderValue::from_str(&supported.join(", ")) {
            reply.headers_mut().insert(ACCEPTED_PROTOCOLS_HEADER, v);
        }
        return reply;
    };
    if let Some(refused) = claim(&shared, token) {
        return refused;
    }
    let protocol = chosen.clone();
    serve_upgraded(&mut req, "SPDY", move |upgraded| async move {
        let conn = match spdy::Connection::new(upgraded) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot start a SPDY connection: {e}");
                return;
            }
        };
        match request {
            Request::PortForward {
                ref pod_id,
                ref ports,
            } => serve_port_forward_spdy(&shared, pod_id, ports, conn).await,
            request => {
                let Some(version) = remotecommand::Version::from_protocol(&protocol) else {
                    return;
                };
                if let Err(e) =
                    remotecommand::serve_spdy(shared.runtime.as_ref(), request, version, conn).await
                {
                    tracing::debug!("remote command session: {e}");
                }
            }
        }
    });
    let mut reply = switching_protocols(SPDY_UPGRADE);
    let headers = reply.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&chosen) {
        headers.insert(PROTOCOL_HEADER, v);
    }
    reply
}

async fn serve_port_forward_spdy(
    shared: &Shared,
    pod_id: &str,
    ports: &[u16],
    conn: spdy::Connection,
) {
    match shared.runtime.port_forward_netns(pod_id).await {
        Ok(netns) => portforward::serve_spdy(netns, ports.to_vec(), conn).await,
        Err(e) => {
            tracing::warn!("port forward to pod {pod_id}: {e}");
            conn.shutdown().await;
        }
    }
}

/// Ports named in the query (`port=80&port=81` or `port=80,81`).
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        if key != "port" && key != "ports" {
            continue;
        }
        let value = value.replace("%2C", ",").replace("%2c", ",");
        for p in value.split(',').filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port {p:?} in the query")),
            }
        }
    }
    // Two channels per port, numbered by one byte, and 255 is reserved.
    if ports.len() > 127 {
        return Err(format!(
            "{} ports requested; at most 127 fit the channel numbers",
            ports.len()
        ));
    }
    Ok(ports)
}

fn upgrade_websocket(
    shared: Arc<Shared>,
    token: &str,
    request: Request,
    mut req: HttpRequest<Incoming>,
) -> Reply {
    let headers = req.headers();
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "WebSocket upgrade without Sec-WebSocket-Key",
        );
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut reply = refuse(StatusCode::BAD_REQUEST, "WebSocket version 13 is required");
        reply.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return reply;
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let supported: &[&str] = match request {
        Request::PortForward { .. } => portforward::WEBSOCKET_PROTOCOLS,
        _ => remotecommand::WEBSOCKET_PROTOCOLS,
    };
    let offered = list(headers, "sec-websocket-protocol");
    let chosen = if offered.is_empty() {
        // Clients that name no subprotocol get the original binary channel protocol.
        String::new()
    } else {
        match negotiate(&offered, supported) {
            Some(p) => p,
            None => return no_common_protocol(&offered, supported),
        }
    };
    let tunnel = chosen.starts_with(tunnel::PREFIX);
    let forward_ports = match &request {
        // Tunneled SPDY names the port of each connection in its streams.
        Request::PortForward { .. } if tunnel => None,
        Request::PortForward { ports, .. } => match query_ports(req.uri().query()) {
            Ok(q) if !q.is_empty() => Some(q),
            Ok(_) if !ports.is_empty() && ports.len() <= 127 => Some(ports.clone()),
            Ok(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "no port to forward: add ?port=N to the URL",
                );
            }
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        },
        _ => None,
    };
    if let Some(refused) = claim(&shared, token) {
        return refused;
    }
    let protocol = chosen.clone();
    serve_upgraded(&mut req, "WebSocket", move |upgraded| async move {
        match request {
            Request::PortForward {
                ref pod_id,
                ref ports,
            } if tunnel => match spdy::Connection::new(tunnel::open(upgraded)) {
                Ok(conn) => serve_port_forward_spdy(&shared, pod_id, ports, conn).await,
                Err(e) => tracing::warn!("cannot start a SPDY connection: {e}"),
            },
            Request::PortForward { ref pod_id, .. } => {
                match shared.runtime.port_forward_netns(pod_id).await {
                    Ok(netns) => {
                        portforward::serve_websocket(
                            netns,
                            forward_ports.unwrap_or_default(),
                            upgraded,
                        )
                        .await
                    }
                    Err(e) => tracing::warn!("port forward to pod {pod_id}: {e}"),
                }
            }
            request => {
                let Some(version) = remotecommand::Version::from_protocol(&protocol) else {
                    return;
                };
                remotecommand::serve_websocket(shared.runtime.as_ref(), request, version, upgraded)
                    .await;
            }
        }
    });
    let mut reply = switching_protocols("websocket");
    let headers = reply.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if !chosen.is_empty()
        && let Ok(v) = HeaderValue::from_str(&chosen)
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_repeated_or_listed_query_values() {
        assert_eq!(
            query_ports(Some("port=80&port=8080")).unwrap(),
            vec![80, 8080]
        );
        assert_eq!(query_ports(Some("port=80,81")).unwrap(), vec![80, 81]);
        assert_eq!(query_ports(None).unwrap(), Vec::<u16>::new());
        assert!(query_ports(Some("port=http")).is_err());
        let many: Vec<String> = (1..=128).map(|p| p.to_string()).collect();
        assert!(query_ports(Some(&format!("port={}", many.join(",")))).is_err());
    }

    #[test]
    fn negotiation_follows_client_order() {
        let offered = vec![
            "v9.channel.k8s.io".to_string(),
            "v2.channel.k8s.io".into(),
            "v4.channel.k8s.io".into(),
        ];
        assert_eq!(
            negotiate(&offered, remotecommand::SPDY_PROTOCOLS).as_deref(),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&["x".into()], remotecommand::SPDY_PROTOCOLS),
            None
        );
    }
}
