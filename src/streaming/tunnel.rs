//! SPDY carried in WebSocket binary messages, as kubectl port-forward sends it by default
//! (subprotocol `SPDY/3.1+portforward.k8s.io`): the client writes its SPDY bytes as
//! binary messages whose boundaries mean nothing, so each direction is a plain byte
//! stream that the SPDY connection reads and writes as it would a socket.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What a WebSocket subprotocol starts with when it tunnels SPDY.
pub const PREFIX: &str = "SPDY/3.1+";
/// Bytes in flight between the socket and the SPDY connection, each way.
const BUFFER: usize = 256 * 1024;
/// How long a client has to answer our close before the socket is dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Most bytes sent in one message.
const CHUNK: usize = 32 * 1024;

/// The byte stream inside the upgraded WebSocket `io`. The tunnel ends when the client
/// closes the socket (the stream then reads EOF) or the stream's user shuts it down
/// (the client then gets a normal close).
pub fn open<I>(io: I) -> DuplexStream
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    tokio::spawn(pump(io, theirs));
    ours
}

async fn pump<I>(io: I, theirs: DuplexStream)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_tx, mut ws_rx) = super::websocket::accept(io).await.split();
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

#[cfg(test)]
mod tests {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    #[tokio::test]
    async fn bytes_cross_message_boundaries_both_ways_and_the_end_is_a_normal_close() {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let mut tunnel = open(server_io);
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;

        // The client's messages are one byte stream to the SPDY side.
        for part in ["hel", "lo, ", "pod"] {
            client
                .send(Message::Binary(Bytes::from_static(part.as_bytes())))
                .await
                .unwrap();
        }
        let mut got = vec![0u8; 10];
        tunnel.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"hello, pod");

        tunnel.write_all(b"from the pod").await.unwrap();
        let mut received = Vec::new();
        while received.len() < 12 {
            match client.next().await.unwrap().unwrap() {
                Message::Binary(data) => received.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"from the pod");

        // Shutting the SPDY side down closes the socket normally.
        tunnel.shutdown().await.unwrap();
        drop(tunnel);
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("no normal close: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_client_that_leaves_ends_the_stream() {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let mut tunnel = open(server_io);
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        client.close(None).await.unwrap();
        let mut rest = Vec::new();
        tunnel.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
