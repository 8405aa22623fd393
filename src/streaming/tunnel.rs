//! SPDY carried in WebSocket binary messages, as kubectl port-forward sends it by default
//! (subprotocol `SPDY/3.1+portforward.k8s.io`): the client writes its SPDY bytes as
//! binary messages whose boundaries mean nothing, so each direction is a plain byte
//! stream that the SPDY connection reads and writes as it would a socket.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

/// What a WebSocket subprotocol starts with when it tunnels SPDY.
pub const PREFIX: &str = "SPDY/3.1+";
/// Bytes in flight between the socket and the SPDY connection, each way.
const BUFFER: usize = 256 * 1024;
/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How long a client has to answer our close before the socket is dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Most bytes sent in one message.
const CHUNK: usize = 32 * 1024;

/// The byte stream inside the upgraded WebSocket `io`. The tunnel ends when the client
/// closes the socket (the stream then reads EOF) or the stream's user shuts it down
/// (the client then gets a normal close).
pub fn open(io: TokioIo<Upgraded>) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    tokio::spawn(pump(io, theirs));
    ours
}

async fn pump(io: TokioIo<Upgraded>, theirs: DuplexStream) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut from_spdy, mut to_spdy) = tokio::io::split(theirs);
    let inbound = async move {
        while let Some(Ok(message)) = ws_rx.next().await {
            match message {
                Message::Binary(data) if to_spdy.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                // Pings are answered by the WebSocket layer while it reads.
                _ => {}
            }
        }
        // The SPDY connection reads EOF: the client is gone.
        let _ = to_spdy.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if ws_tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
        let _ = ws_tx.close().await;
    };
    let inbound = tokio::spawn(inbound);
    let abort = inbound.abort_handle();
    outbound.await;
    // The server side ended: wait briefly for the client's close, then drop the socket.
    if tokio::time::timeout(CLOSE_GRACE, inbound).await.is_err() {
        abort.abort();
    }
}
