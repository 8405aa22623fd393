//! The Kubernetes channel protocol over WebSocket, served on an upgraded connection: a
//! reader task routes each channel's messages ([`criox_formats::websocket`] reads them) to
//! its input, and a writer task owns the socket's write half.

use bytes::Bytes;
use criox_formats::websocket::{Incoming, MAX_MESSAGE, decode, encode};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::tasks::ConnectionTasks;

/// Writes to one channel of the socket; cheap to clone.
#[derive(Clone)]
pub struct ChannelWriter {
    channel: u8,
    out: mpsc::Sender<Message>,
}

impl ChannelWriter {
    pub async fn write(&self, data: Bytes) -> Result<(), super::spdy::Closed> {
        self.out
            .send(Message::Binary(encode(self.channel, &data).into()))
            .await
            .map_err(|_| super::spdy::Closed)
    }
}

/// The server's side of a WebSocket on an upgraded socket, held to the one message limit
/// of the streaming protocols.
pub async fn accept<I>(io: I) -> WebSocketStream<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
}

pub struct WsConn {
    out: mpsc::Sender<Message>,
    tasks: ConnectionTasks,
}

impl WsConn {
    /// Starts serving an upgraded socket. Messages on channel `n` go to `inputs[n]` when
    /// present; with `close_signal`, `[255, n]` drops `inputs[n]`.
    pub async fn open(
        io: TokioIo<Upgraded>,
        mut inputs: Vec<Option<mpsc::Sender<Bytes>>>,
        close_signal: bool,
    ) -> WsConn {
        let (ws_tx, mut ws_rx) = accept(io).await.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
        let (closed_tx, closed_rx) = watch::channel(false);
        let writer = tokio::spawn(async move {
            let mut ws_tx = ws_tx;
            while let Some(msg) = out_rx.recv().await {
                let is_close = matches!(msg, Message::Close(_));
                if ws_tx.send(msg).await.is_err() || is_close {
                    break;
                }
            }
            let _ = ws_tx.close().await;
        });
        let pong = out_tx.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws_rx.next().await {
                let data = match msg {
                    Message::Binary(data) => data,
                    Message::Ping(payload) => {
                        let _ = pong.try_send(Message::Pong(payload));
                        continue;
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                match decode(&data, close_signal) {
                    Incoming::Data { channel, payload } => {
                        if let Some(Some(tx)) = inputs.get(usize::from(channel)) {
                            let _ = tx.send(data.slice_ref(payload)).await;
                        }
                    }
                    Incoming::Close { channel } => {
                        if let Some(slot) = inputs.get_mut(usize::from(channel)) {
                            *slot = None;
                        }
                    }
                    Incoming::Ignored => {}
                }
            }
            drop(inputs);
            let _ = closed_tx.send(true);
        });
        WsConn {
            out: out_tx,
            tasks: ConnectionTasks::new(closed_rx, reader, writer),
        }
    }

    pub fn writer(&self, channel: u8) -> ChannelWriter {
        ChannelWriter {
            channel,
            out: self.out.clone(),
        }
    }

    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.tasks.closed()
    }

    /// Sends a normal close after everything queued and waits until it is written.
    pub async fn shutdown(mut self) {
        let _ = self
            .out
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        self.tasks.flush().await;
    }
}
