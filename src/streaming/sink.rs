//! One outgoing stream of a session, whichever transport carries it.

use bytes::Bytes;

use super::spdy::{self, Closed};
use super::websocket::ChannelWriter;

#[derive(Clone)]
pub enum Sink {
    Spdy(spdy::StreamWriter),
    Ws(ChannelWriter),
}

impl Sink {
    pub async fn write(&self, data: Bytes) -> Result<(), Closed> {
        match self {
            Sink::Spdy(w) => w.write(data).await,
            Sink::Ws(w) => w.write(data).await,
        }
    }

    /// Half-closes a SPDY stream; a WebSocket channel has no end of its own.
    pub async fn finish(&self) {
        if let Sink::Spdy(w) = self {
            let _ = w.finish().await;
        }
    }
}
