//! Port forwarding: over SPDY (`portforward.k8s.io`) every forwarded connection is a pair
//! of client streams, `data` and `error`, sharing a `requestid` and naming the `port`; over
//! WebSocket (`v4.channel.k8s.io`) the ports come from the query and port `i` uses channel
//! `2i` for data and `2i+1` for errors, each starting with the port as two little-endian
//! bytes. kubectl tunnels the SPDY protocol in a WebSocket (`SPDY/3.1+portforward.k8s.io`);
//! once that tunnel is open it is served as SPDY.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::dial;
use super::sink::Sink;
use super::spdy::{self, SpdyStream};
use super::websocket::WsConn;

pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket subprotocols: SPDY tunneled in binary messages (what kubectl sends first),
/// and the channel protocol with the ports in the query.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"];

/// Serves port forwarding on an upgraded SPDY connection until the client leaves.
pub async fn serve_spdy(netns: Option<PathBuf>, allowed: Vec<u16>, mut conn: spdy::Connection) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(PAIR_TIMEOUT / 4);
    loop {
        let stream = tokio::select! {
            s = conn.accept() => match s { Some(s) => s, None => break },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            _ = sweep.tick() => {
                expire_unpaired(&mut pending).await;
                continue;
            }
        };
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        let request_id = stream
            .header("requestid")
            .map(str::to_string)
            // Clients that predate request ids pair streams by their ids.
            .unwrap_or_else(|| {
                let base = if kind == "data" {
                    stream.id.saturating_sub(2)
                } else {
                    stream.id
                };
                base.to_string()
            });
        if kind != "data" && kind != "error" {
            let _ = stream.writer.reset(spdy::frame::RST_PROTOCOL_ERROR).await;
            continue;
        }
        let _ = stream.writer.reply().await;
        let entry = pending
            .entry(request_id.clone())
            .or_insert_with(|| Pending {
                since: Instant::now(),
                data: None,
                error: None,
            });
        if kind == "data" {
            entry.data = Some(stream);
        } else {
            entry.error = Some(stream);
        }
        if entry.data.is_some() && entry.error.is_some() {
            let Some(Pending {
                data: Some(data),
                error: Some(error),
                ..
            }) = pending.remove(&request_id)
            else {
                continue;
            };
            let netns = netns.clone();
            let allowed = allowed.clone();
            forwards.spawn(async move { forward_spdy(netns, allowed, data, error).await });
        }
    }
    // Dropping the set cancels forwards whose client is gone.
    drop(forwards);
    conn.shutdown().await;
}

/// How long one stream of a pair waits for the other.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Half of a forwarded connection, waiting for its other stream.
struct Pending {
    since: Instant,
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
}

async fn expire_unpaired(pending: &mut HashMap<String, Pending>) {
    let expired: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.since.elapsed() >= PAIR_TIMEOUT)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        let Some(p) = pending.remove(&id) else {
            continue;
        };
        if let Some(error) = p.error {
            let msg = format!("timed out waiting for the data stream of request {id}");
            let _ = error.writer.write(Bytes::from(msg)).await;
            let _ = error.writer.finish().await;
        }
        if let Some(data) = p.data {
            let _ = data.writer.reset(spdy::frame::RST_REFUSED_STREAM).await;
        }
    }
}

async fn forward_spdy(
    netns: Option<PathBuf>,
    allowed: Vec<u16>,
    data: SpdyStream,
    error: SpdyStream,
) {
    let port = match data.header("port").map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        other => {
            let msg = format!("invalid port header {:?}", other.map(|r| r.ok()));
            let _ = error.writer.write(Bytes::from(msg)).await;
            let _ = error.writer.finish().await;
            let _ = data.writer.finish().await;
            return;
        }
    };
    let error_out = Sink::Spdy(error.writer.clone());
    let data_out = Sink::Spdy(data.writer.clone());
    forward(netns, &allowed, port, data.incoming, data_out, error_out).await;
}

/// Connects to `port` and copies both ways until both directions ended.
async fn forward(
    netns: Option<PathBuf>,
    allowed: &[u16],
    port: u16,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: Sink,
    error: Sink,
) {
    if !allowed.is_empty() && !allowed.contains(&port) {
        let msg = format!("port {port} was not requested for forwarding");
        let _ = error.write(Bytes::from(msg)).await;
        error.finish().await;
        to_client.finish().await;
        return;
    }
    let socket = match dial::connect(netns.as_deref(), port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("port forward: {e}");
            let _ = error.write(Bytes::from(e.to_string())).await;
            error.finish().await;
            to_client.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = socket.into_split();
    // Runs until the client stops sending, then half-closes; never completes, so the
    // forward ends when the target closes its side.
    let upstream = async move {
        while let Some(data) = from_client.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
        std::future::pending::<()>().await
    };
    let downstream = async {
        let mut buf = BytesMut::with_capacity(32 * 1024);
        loop {
            buf.reserve(32 * 1024);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if to_client.write(buf.split().freeze()).await.is_err() {
                        break;
                    }
                }
            }
        }
        to_client.finish().await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
    error.finish().await;
}

/// Serves port forwarding on an upgraded WebSocket for the ports of the query.
pub async fn serve_websocket(
    netns: Option<PathBuf>,
    ports: Vec<u16>,
    io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
) {
    let mut inputs = Vec::new();
    let mut receivers = Vec::new();
    for _ in &ports {
        let (tx, rx) = mpsc::channel(32);
        inputs.push(Some(tx));
        inputs.push(None);
        receivers.push(rx);
    }
    let conn = WsConn::open(io, inputs, false).await;
    let mut forwards = JoinSet::new();
    for (i, (port, rx)) in ports.iter().copied().zip(receivers).enumerate() {
        let data = conn.writer((2 * i) as u8);
        let error = conn.writer((2 * i + 1) as u8);
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = data.write(prefix.clone()).await;
        let _ = error.write(prefix).await;
        let netns = netns.clone();
        forwards.spawn(async move {
            forward(netns, &[], port, rx, Sink::Ws(data), Sink::Ws(error)).await;
        });
    }
    let closed = conn.closed();
    tokio::select! {
        _ = async { while forwards.join_next().await.is_some() {} } => {}
        _ = closed => {}
    }
    drop(forwards);
    conn.shutdown().await;
}
