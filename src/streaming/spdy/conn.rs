//! A server-side SPDY/3.1 connection: a reader task that decodes frames and routes data to
//! the streams the peer opens, and a writer task that owns the socket's write half and the
//! header compressor. Streams are handed out as [`SpdyStream`] values carrying a receiver
//! for the peer's data and a cloneable [`StreamWriter`].
//!
//! Flow control: received data is acknowledged with WINDOW_UPDATE frames (stream and
//! connection) as soon as it is queued to the stream; the queue is bounded, so a slow
//! consumer holds the reader back. Outgoing data does not wait for the peer's window,
//! as the Kubernetes clients (spdystream) never send WINDOW_UPDATE.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

use super::frame::{self, Frame, FrameError, FrameHead, HeaderList};
use super::headers::{Deflater, Inflater};
use crate::streaming::tasks::ConnectionTasks;

/// New streams queued before the session takes them; more are refused.
const ACCEPT_QUEUE: usize = 64;
/// Data frames queued per stream before the reader waits for the consumer.
const STREAM_QUEUE: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

enum Outgoing {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    Reply {
        stream_id: u32,
        headers: HeaderList,
    },
    Reset {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Shutdown,
}

/// Writes to one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    stream_id: u32,
    out: mpsc::Sender<Outgoing>,
}

impl StreamWriter {
    pub async fn write(&self, mut data: Bytes) -> Result<(), Closed> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(frame::MAX_DATA_CHUNK));
            self.out
                .send(Outgoing::Data {
                    stream_id: self.stream_id,
                    fin: false,
                    data: chunk,
                })
                .await
                .map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN.
    pub async fn finish(&self) -> Result<(), Closed> {
        self.out
            .send(Outgoing::Data {
                stream_id: self.stream_id,
                fin: true,
                data: Bytes::new(),
            })
            .await
            .map_err(|_| Closed)
    }

    /// Accepts the stream (SYN_REPLY with no headers).
    pub async fn reply(&self) -> Result<(), Closed> {
        self.out
            .send(Outgoing::Reply {
                stream_id: self.stream_id,
                headers: Vec::new(),
            })
            .await
            .map_err(|_| Closed)
    }

    pub async fn reset(&self, status: u32) -> Result<(), Closed> {
        self.out
            .send(Outgoing::Reset {
                stream_id: self.stream_id,
                status,
            })
            .await
            .map_err(|_| Closed)
    }
}

/// A stream opened by the peer.
pub struct SpdyStream {
    pub id: u32,
    pub headers: HeaderList,
    /// The peer's data; ends at its FIN, a reset, or when the connection ends.
    pub incoming: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl SpdyStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

pub struct Connection {
    accept: mpsc::Receiver<SpdyStream>,
    out: mpsc::Sender<Outgoing>,
    tasks: ConnectionTasks,
}

impl Connection {
    pub fn new<I>(io: I) -> Result<Connection, FrameError>
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(256);
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let (closed_tx, closed_rx) = watch::channel(false);
        let deflater = Deflater::new()?;
        let writer = tokio::spawn(write_loop(write_half, deflater, out_rx));
        let reader = tokio::spawn(read_loop(read_half, out_tx.clone(), accept_tx, closed_tx));
        Ok(Connection {
            accept: accept_rx,
            out: out_tx,
            tasks: ConnectionTasks::new(closed_rx, reader, writer),
        })
    }

    /// The next stream the peer opens; None once the peer is gone.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.accept.recv().await
    }

    /// Resolves when the peer closed the connection or broke the protocol.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.tasks.closed()
    }

    /// Sends GOAWAY, flushes everything queued before it, and closes the socket.
    pub async fn shutdown(mut self) {
        let _ = self
            .out
            .send(Outgoing::GoAway {
                last_good_stream_id: 0,
                status: frame::GOAWAY_OK,
            })
            .await;
        let _ = self.out.send(Outgoing::Shutdown).await;
        self.tasks.flush().await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    io: W,
    mut deflater: Deflater,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut io = BufWriter::with_capacity(64 * 1024, io);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut shutdown = false;
        // Batch whatever is already queued into one write.
        while let Some(item) = next.take() {
            match item {
                Outgoing::Data {
                    stream_id,
                    fin,
                    data,
                } => frame::encode_data(&mut buf, stream_id, fin, &data),
                Outgoing::Reply { stream_id, headers } => {
                    let pairs: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    match deflater.compress(&frame::build_block(&pairs)) {
                        Ok(block) => frame::encode_syn_reply(&mut buf, stream_id, 0, &block),
                        Err(e) => {
                            tracing::warn!("SPDY header compression failed: {e}");
                            return;
                        }
                    }
                }
                Outgoing::Reset { stream_id, status } => {
                    frame::encode_rst_stream(&mut buf, stream_id, status)
                }
                Outgoing::Ping { id } => frame::encode_ping(&mut buf, id),
                Outgoing::WindowUpdate { stream_id, delta } => {
                    frame::encode_window_update(&mut buf, stream_id, delta)
                }
                Outgoing::GoAway {
                    last_good_stream_id,
                    status,
                } => frame::encode_goaway(&mut buf, last_good_stream_id, status),
                Outgoing::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if io.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        if io.flush().await.is_err() {
            return;
        }
        if shutdown {
            let _ = io.shutdown().await;
            return;
        }
    }
    let _ = io.shutdown().await;
}

struct StreamSlot {
    /// None once the peer finished sending.
    tx: Option<mpsc::Sender<Bytes>>,
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut io: R,
    out: mpsc::Sender<Outgoing>,
    accept: mpsc::Sender<SpdyStream>,
    closed: watch::Sender<bool>,
) {
    if let Err(e) = read_frames(&mut io, &out, &accept).await {
        tracing::debug!("SPDY connection ends: {e}");
    }
    // Dropping the slots (inside read_frames) ended every stream's input.
    let _ = closed.send(true);
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("reading the socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the writer is gone")]
    WriterGone,
}

async fn read_frames<R: AsyncRead + Unpin>(
    io: &mut R,
    out: &mpsc::Sender<Outgoing>,
    accept: &mpsc::Sender<SpdyStream>,
) -> Result<(), ReadError> {
    let mut inflater = Inflater::new();
    let mut streams: HashMap<u32, StreamSlot> = HashMap::new();
    let mut last_peer_stream = 0u32;
    let mut going_away = false;
    let send =
        |item: Outgoing| async move { out.send(item).await.map_err(|_| ReadError::WriterGone) };
    loop {
        let mut raw = [0u8; 8];
        match io.read_exact(&mut raw).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let head = FrameHead::parse(raw);
        if let Err(e) = head.check() {
            send(Outgoing::GoAway {
                last_good_stream_id: last_peer_stream,
                status: frame::GOAWAY_PROTOCOL_ERROR,
            })
            .await?;
            return Err(e.into());
        }
        let mut body = vec![0u8; head.body_len()];
        io.read_exact(&mut body).await?;
        let frame = frame::decode(head, Bytes::from(body), &mut |b| inflater.decompress(b))?;
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Client streams are odd and strictly increasing.
                if stream_id % 2 == 0 || stream_id <= last_peer_stream {
                    send(Outgoing::Reset {
                        stream_id,
                        status: frame::RST_PROTOCOL_ERROR,
                    })
                    .await?;
                    continue;
                }
                last_peer_stream = stream_id;
                let writer = StreamWriter {
                    stream_id,
                    out: out.clone(),
                };
                if going_away {
                    send(Outgoing::Reset {
                        stream_id,
                        status: frame::RST_REFUSED_STREAM,
                    })
                    .await?;
                    continue;
                }
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                let stream = SpdyStream {
                    id: stream_id,
                    headers,
                    incoming: rx,
                    writer,
                };
                if accept.try_send(stream).is_err() {
                    send(Outgoing::Reset {
                        stream_id,
                        status: frame::RST_REFUSED_STREAM,
                    })
                    .await?;
                    continue;
                }
                let fin = flags & frame::FLAG_FIN != 0;
                streams.insert(
                    stream_id,
                    StreamSlot {
                        tx: if fin { None } else { Some(tx) },
                    },
                );
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let len = data.len() as u32;
                let Some(slot) = streams.get_mut(&stream_id) else {
                    send(Outgoing::Reset {
                        stream_id,
                        status: frame::RST_INVALID_STREAM,
                    })
                    .await?;
                    continue;
                };
                match &slot.tx {
                    Some(tx) => {
                        if !data.is_empty() {
                            // A consumer that went away just drops what arrives.
                            let _ = tx.send(data).await;
                        }
                    }
                    None => {
                        send(Outgoing::Reset {
                            stream_id,
                            status: frame::RST_STREAM_ALREADY_CLOSED,
                        })
                        .await?;
                        continue;
                    }
                }
                if fin {
                    slot.tx = None;
                }
                if len > 0 {
                    send(Outgoing::WindowUpdate {
                        stream_id,
                        delta: len,
                    })
                    .await?;
                    send(Outgoing::WindowUpdate {
                        stream_id: 0,
                        delta: len,
                    })
                    .await?;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Ping { id } => {
                // Peer-initiated pings (odd ids from a client) are echoed.
                if id % 2 == 1 {
                    send(Outgoing::Ping { id }).await?;
                }
            }
            Frame::GoAway { .. } => going_away = true,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings
            | Frame::WindowUpdate { .. }
            | Frame::Ignored { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::super::peer::Peer;
    use super::*;

    /// A frame that breaks the protocol is answered with GOAWAY and ends the connection.
    async fn ends_with_protocol_error(peer: &mut Peer, conn: &Connection) {
        assert!(matches!(
            peer.next().await,
            Frame::GoAway {
                status: frame::GOAWAY_PROTOCOL_ERROR,
                ..
            }
        ));
        conn.closed().await;
    }

    #[tokio::test]
    async fn streams_carry_headers_and_data_both_ways() {
        let (mut peer, mut conn) = Peer::pair();
        peer.syn_stream(1, 0, &[("streamtype", "stdin")]).await;
        peer.send(|o| frame::encode_data(o, 1, true, b"abc")).await;
        let mut stream = conn.accept().await.unwrap();
        assert_eq!(stream.header("streamtype"), Some("stdin"));
        assert_eq!(stream.incoming.recv().await.unwrap(), &b"abc"[..]);
        assert!(stream.incoming.recv().await.is_none(), "FIN ends the input");
        stream.writer.reply().await.unwrap();
        assert!(matches!(
            peer.next_significant().await,
            Frame::SynReply { stream_id: 1, .. }
        ));
        stream
            .writer
            .write(Bytes::from_static(b"out"))
            .await
            .unwrap();
        stream.writer.finish().await.unwrap();
        assert_eq!(
            peer.next_significant().await,
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"out")
            }
        );
        assert!(matches!(
            peer.next_significant().await,
            Frame::Data { fin: true, .. }
        ));
        // A second header block reuses the compression context.
        peer.syn_stream(3, frame::FLAG_FIN, &[("streamtype", "error")])
            .await;
        let stream = conn.accept().await.unwrap();
        assert_eq!(stream.header("streamtype"), Some("error"));
    }

    #[tokio::test]
    async fn pings_are_echoed_and_bad_stream_ids_reset() {
        let (mut peer, mut conn) = Peer::pair();
        peer.send(|o| frame::encode_ping(o, 7)).await;
        assert_eq!(peer.next().await, Frame::Ping { id: 7 });
        peer.syn_stream(2, 0, &[("streamtype", "stdout")]).await;
        assert_eq!(
            peer.next().await,
            Frame::RstStream {
                stream_id: 2,
                status: frame::RST_PROTOCOL_ERROR
            }
        );
        peer.send(|o| frame::encode_data(o, 9, false, b"x")).await;
        assert_eq!(
            peer.next().await,
            Frame::RstStream {
                stream_id: 9,
                status: frame::RST_INVALID_STREAM
            }
        );
        peer.syn_stream(5, 0, &[("streamtype", "stdout")]).await;
        assert!(conn.accept().await.is_some());
    }

    #[tokio::test]
    async fn an_oversized_data_frame_ends_the_connection() {
        let (mut peer, mut conn) = Peer::pair();
        peer.syn_stream(1, 0, &[("streamtype", "stdin")]).await;
        let _stream = conn.accept().await.unwrap();
        peer.send(|o| {
            o.put_u32(1);
            o.put_u32((frame::MAX_DATA_LEN + 1) as u32);
        })
        .await;
        ends_with_protocol_error(&mut peer, &conn).await;
    }

    #[tokio::test]
    async fn a_wrong_version_ends_the_connection_with_goaway() {
        let (mut peer, mut conn) = Peer::pair();
        peer.send(|o| {
            o.put_u32(0x8000_0000 | (2 << 16) | u32::from(frame::TYPE_PING));
            o.put_u32(4);
            o.put_u32(1);
        })
        .await;
        ends_with_protocol_error(&mut peer, &conn).await;
        assert!(conn.accept().await.is_none());
    }
}
