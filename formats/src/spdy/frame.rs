//! SPDY/3 frames on the wire: the fixed 8-byte frame header, the control frame bodies, and
//! the name/value header blocks (compressed by [`super::headers`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
/// Frame payloads are limited to 24 bits; data is sent in smaller pieces to interleave streams.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Largest control frame accepted from a peer: header blocks of the protocols here are tiny.
pub const MAX_CONTROL_LEN: usize = 1024 * 1024;
/// Largest DATA frame accepted from a peer (clients send at most 32 KiB at a time); the
/// 24-bit length would otherwise let each connection make the server hold 16 MiB.
pub const MAX_DATA_LEN: usize = 1024 * 1024;
/// Largest header list a block may expand to, each pair counted as its name and value
/// plus 32 bytes (HTTP/2's measure). A value's NUL-separated parts each repeat the name,
/// so without it a small block could make a quadratic number of bytes.
pub const MAX_HEADER_LIST: usize = 256 * 1024;
const PAIR_OVERHEAD: usize = 32;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_STREAM_ALREADY_CLOSED: u32 = 9;

/// GOAWAY status codes.
pub const GOAWAY_OK: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// Name/value pairs of a header block; names are lower case on the wire.
pub type HeaderList = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY control frame of version {0}, only version 3 is spoken")]
    Version(u16),
    #[error("SPDY control frame type {kind} is {len} bytes, too short")]
    Short { kind: u16, len: usize },
    #[error("SPDY control frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("SPDY header block is malformed: {0}")]
    HeaderBlock(&'static str),
    #[error("SPDY header block compression failed: {0}")]
    Compression(String),
}

/// The first 8 bytes of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHead {
    Control {
        version: u16,
        kind: u16,
        flags: u8,
        len: usize,
    },
    Data {
        stream_id: u32,
        flags: u8,
        len: usize,
    },
}

impl FrameHead {
    pub fn parse(raw: [u8; 8]) -> FrameHead {
        let first = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let flags = raw[4];
        let len = u32::from_be_bytes([0, raw[5], raw[6], raw[7]]) as usize;
        if first & 0x8000_0000 != 0 {
            FrameHead::Control {
                version: ((first >> 16) & 0x7fff) as u16,
                kind: (first & 0xffff) as u16,
                flags,
                len,
            }
        } else {
            FrameHead::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                len,
            }
        }
    }

    /// Bytes of the frame after its 8-byte head.
    pub fn body_len(&self) -> usize {
        match self {
            FrameHead::Control { len, .. } | FrameHead::Data { len, .. } => *len,
        }
    }

    /// Refuses a frame before its body is read: one longer than its kind's limit, or a
    /// control frame of another SPDY version.
    pub fn check(&self) -> Result<(), FrameError> {
        let limit = match *self {
            FrameHead::Control { version, .. } if version != VERSION => {
                return Err(FrameError::Version(version));
            }
            FrameHead::Control { .. } => MAX_CONTROL_LEN,
            FrameHead::Data { .. } => MAX_DATA_LEN,
        };
        if self.body_len() > limit {
            return Err(FrameError::TooLarge(self.body_len()));
        }
        Ok(())
    }
}

/// A frame after decoding; header blocks are already decompressed and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: HeaderList,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: HeaderList,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: HeaderList,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control type this side does not act on (SPDY requires ignoring unknown types).
    Ignored {
        kind: u16,
    },
}

fn control_head(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
    out.put_u32((u32::from(flags) << 24) | (len as u32 & 0x00ff_ffff));
}

/// Encodes a DATA frame.
pub fn encode_data(out: &mut BytesMut, stream_id: u32, fin: bool, data: &[u8]) {
    out.put_u32(stream_id & 0x7fff_ffff);
    let flags = if fin { FLAG_FIN } else { 0 };
    out.put_u32((u32::from(flags) << 24) | (data.len() as u32 & 0x00ff_ffff));
    out.put_slice(data);
}

/// Encodes a SYN_REPLY whose header block is already compressed.
pub fn encode_syn_reply(out: &mut BytesMut, stream_id: u32, flags: u8, block: &[u8]) {
    control_head(out, TYPE_SYN_REPLY, flags, 4 + block.len());
    out.put_u32(stream_id & 0x7fff_ffff);
    out.put_slice(block);
}

pub fn encode_rst_stream(out: &mut BytesMut, stream_id: u32, status: u32) {
    control_head(out, TYPE_RST_STREAM, 0, 8);
    out.put_u32(stream_id & 0x7fff_ffff);
    out.put_u32(status);
}

pub fn encode_ping(out: &mut BytesMut, id: u32) {
    control_head(out, TYPE_PING, 0, 4);
    out.put_u32(id);
}

pub fn encode_goaway(out: &mut BytesMut, last_good_stream_id: u32, status: u32) {
    control_head(out, TYPE_GOAWAY, 0, 8);
    out.put_u32(last_good_stream_id & 0x7fff_ffff);
    out.put_u32(status);
}

pub fn encode_window_update(out: &mut BytesMut, stream_id: u32, delta: u32) {
    control_head(out, TYPE_WINDOW_UPDATE, 0, 8);
    out.put_u32(stream_id & 0x7fff_ffff);
    out.put_u32(delta & 0x7fff_ffff);
}

/// Turns a compressed header block into plain bytes.
pub type Inflate<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, FrameError> + 'a;

/// Decodes a frame from its head (which passed [`FrameHead::check`]) and its body.
pub fn decode(
    head: FrameHead,
    body: Bytes,
    inflate: &mut Inflate<'_>,
) -> Result<Frame, FrameError> {
    match head {
        FrameHead::Data {
            stream_id, flags, ..
        } => Ok(Frame::Data {
            stream_id,
            fin: flags & FLAG_FIN != 0,
            data: body,
        }),
        FrameHead::Control { kind, flags, .. } => decode_control(kind, flags, body, inflate),
    }
}

/// Decodes a control frame body. `inflate` turns a compressed header block into plain bytes.
pub fn decode_control(
    kind: u16,
    flags: u8,
    mut body: Bytes,
    inflate: &mut Inflate<'_>,
) -> Result<Frame, FrameError> {
    let need = |n: usize, body: &Bytes| {
        if body.len() < n {
            Err(FrameError::Short {
                kind,
                len: body.len(),
            })
        } else {
            Ok(())
        }
    };
    Ok(match kind {
        TYPE_SYN_STREAM => {
            need(10, &body)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            let associated_to = body.get_u32() & 0x7fff_ffff;
            let priority = body.get_u8() >> 5;
            body.advance(1);
            let headers = parse_block(&inflate(&body)?)?;
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            need(4, &body)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            let headers = parse_block(&inflate(&body)?)?;
            if kind == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM => {
            need(8, &body)?;
            Frame::RstStream {
                stream_id: body.get_u32() & 0x7fff_ffff,
                status: body.get_u32(),
            }
        }
        TYPE_SETTINGS => Frame::Settings,
        TYPE_PING => {
            need(4, &body)?;
            Frame::Ping { id: body.get_u32() }
        }
        TYPE_GOAWAY => {
            need(4, &body)?;
            let last_good_stream_id = body.get_u32() & 0x7fff_ffff;
            let status = if body.len() >= 4 { body.get_u32() } else { 0 };
            Frame::GoAway {
                last_good_stream_id,
                status,
            }
        }
        TYPE_WINDOW_UPDATE => {
            need(8, &body)?;
            Frame::WindowUpdate {
                stream_id: body.get_u32() & 0x7fff_ffff,
                delta: body.get_u32() & 0x7fff_ffff,
            }
        }
        other => Frame::Ignored { kind: other },
    })
}

/// Serialises name/value pairs: a count, then length-prefixed names and values (32 bits each).
pub fn build_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        out.put_u32(name.len() as u32);
        out.put_slice(name.to_ascii_lowercase().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out
}

/// Parses a decompressed header block; a value holding NUL bytes carries several values.
pub fn parse_block(mut raw: &[u8]) -> Result<HeaderList, FrameError> {
    fn take<'a>(raw: &mut &'a [u8]) -> Result<&'a [u8], FrameError> {
        if raw.len() < 4 {
            return Err(FrameError::HeaderBlock("truncated length"));
        }
        let len = raw.get_u32() as usize;
        if raw.len() < len {
            return Err(FrameError::HeaderBlock("truncated string"));
        }
        let (s, rest) = raw.split_at(len);
        *raw = rest;
        Ok(s)
    }
    if raw.len() < 4 {
        return Err(FrameError::HeaderBlock("missing pair count"));
    }
    let count = raw.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    let mut list_size = 0usize;
    for _ in 0..count {
        let name = String::from_utf8_lossy(take(&mut raw)?).to_ascii_lowercase();
        let value = take(&mut raw)?;
        for part in value.split(|b| *b == 0) {
            list_size += name.len() + part.len() + PAIR_OVERHEAD;
            if list_size > MAX_HEADER_LIST {
                return Err(FrameError::HeaderBlock("the header list is too large"));
            }
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    Ok(headers)
}

/// The first value of `name` (lower case) in a header list.
pub fn header<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_round_trips_and_splits_multi_values() {
        let block = build_block(&[("streamtype", "stdout"), ("Port", "80\u{0}81")]);
        let parsed = parse_block(&block).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("streamtype".to_string(), "stdout".to_string()),
                ("port".to_string(), "80".to_string()),
                ("port".to_string(), "81".to_string()),
            ]
        );
    }

    #[test]
    fn truncated_header_block_is_an_error() {
        let mut block = build_block(&[("streamtype", "stdout")]);
        block.truncate(block.len() - 2);
        assert!(parse_block(&block).is_err());
    }

    #[test]
    fn a_name_repeated_for_each_value_part_is_bounded() {
        // 100 KiB of name, 100 Ki empty values: 10 GiB if every part copied the name.
        let name = "n".repeat(100 << 10);
        let values = "\0".repeat(100 << 10);
        let block = build_block(&[(&name, &values)]);
        assert!(matches!(
            parse_block(&block),
            Err(FrameError::HeaderBlock(_))
        ));
        let many = vec![("streamtype", "data"); 1000];
        assert_eq!(parse_block(&build_block(&many)).unwrap().len(), 1000);
    }

    #[test]
    fn heads_over_their_limits_or_of_another_version_are_refused() {
        let control = |version, len| FrameHead::Control {
            version,
            kind: TYPE_SYN_STREAM,
            flags: 0,
            len,
        };
        assert!(control(VERSION, MAX_CONTROL_LEN).check().is_ok());
        assert!(matches!(
            control(VERSION, MAX_CONTROL_LEN + 1).check(),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            control(2, 10).check(),
            Err(FrameError::Version(2))
        ));
        let data = |len| FrameHead::Data {
            stream_id: 1,
            flags: 0,
            len,
        };
        assert!(data(MAX_DATA_LEN).check().is_ok());
        assert!(data(MAX_DATA_LEN + 1).check().is_err());
    }

    #[test]
    fn frame_head_distinguishes_control_and_data() {
        let mut out = BytesMut::new();
        encode_rst_stream(&mut out, 5, RST_REFUSED_STREAM);
        let head = FrameHead::parse(out[..8].try_into().unwrap());
        assert_eq!(
            head,
            FrameHead::Control {
                version: 3,
                kind: TYPE_RST_STREAM,
                flags: 0,
                len: 8
            }
        );
        let mut out = BytesMut::new();
        encode_data(&mut out, 7, true, b"abc");
        let head = FrameHead::parse(out[..8].try_into().unwrap());
        assert_eq!(
            head,
            FrameHead::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                len: 3
            }
        );
    }
}
