//! The client's side of a SPDY connection for unit tests: raw frames in, decoded frames out.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::conn::Connection;
use super::frame::{self, Frame, FrameHead};
use super::headers::{Deflater, Inflater};

/// The peer's side: raw frames in, decoded frames out.
pub struct Peer {
    io: DuplexStream,
    deflater: Deflater,
    inflater: Inflater,
}

impl Peer {
    pub fn pair() -> (Peer, Connection) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let conn = Connection::new(b).unwrap();
        let peer = Peer {
            io: a,
            deflater: Deflater::new().unwrap(),
            inflater: Inflater::new(),
        };
        (peer, conn)
    }

    pub async fn syn_stream(&mut self, id: u32, flags: u8, headers: &[(&str, &str)]) {
        let block = self
            .deflater
            .compress(&frame::build_block(headers))
            .unwrap();
        let mut out = BytesMut::new();
        out.put_u32(0x8000_0000 | (3 << 16) | u32::from(frame::TYPE_SYN_STREAM));
        out.put_u32((u32::from(flags) << 24) | (10 + block.len() as u32));
        out.put_u32(id);
        out.put_u32(0);
        out.put_u16(0);
        out.put_slice(&block);
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn send(&mut self, build: impl FnOnce(&mut BytesMut)) {
        let mut out = BytesMut::new();
        build(&mut out);
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn next(&mut self) -> Frame {
        let mut raw = [0u8; 8];
        self.io.read_exact(&mut raw).await.unwrap();
        let head = FrameHead::parse(raw);
        let mut body = vec![0u8; head.body_len()];
        self.io.read_exact(&mut body).await.unwrap();
        match head {
            FrameHead::Data {
                stream_id, flags, ..
            } => Frame::Data {
                stream_id,
                fin: flags & frame::FLAG_FIN != 0,
                data: body.into(),
            },
            FrameHead::Control { kind, flags, .. } => {
                let inflater = &mut self.inflater;
                frame::decode_control(kind, flags, body.into(), &mut |b| inflater.decompress(b))
                    .unwrap()
            }
        }
    }

    /// The next frame that is not a window update.
    pub async fn next_significant(&mut self) -> Frame {
        loop {
            match self.next().await {
                Frame::WindowUpdate { .. } => continue,
                other => return other,
            }
        }
    }
}
