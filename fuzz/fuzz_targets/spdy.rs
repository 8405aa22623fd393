//! A SPDY/3 client's bytes: frames read as the streaming server reads them, with one
//! header decompressor for the whole connection. The input also serves as a plain header
//! block, and, compressed, as the block of a SYN_STREAM, since random bytes are seldom a
//! zlib stream. A block that parses must survive encoding and decoding unchanged.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use criox_formats::spdy::frame::{self, Frame, FrameHead, HeaderList};
use criox_formats::spdy::headers::{Deflater, Inflater};
use libfuzzer_sys::fuzz_target;

fn round_trip(headers: &HeaderList) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let plain = frame::build_block(&pairs);
    let wire = Deflater::new().unwrap().compress(&plain).unwrap();
    let back = Inflater::new().decompress(&wire).unwrap();
    assert_eq!(back, plain);
    assert_eq!(&frame::parse_block(&back).unwrap(), headers);
}

fn headers_of(frame: &Frame) -> Option<&HeaderList> {
    match frame {
        Frame::SynStream { headers, .. }
        | Frame::SynReply { headers, .. }
        | Frame::Headers { headers, .. } => Some(headers),
        _ => None,
    }
}

fn read_frames(mut wire: &[u8]) {
    let mut inflater = Inflater::new();
    while wire.len() >= 8 {
        let head = FrameHead::parse(wire[..8].try_into().unwrap());
        if head.check().is_err() || wire.len() - 8 < head.body_len() {
            return;
        }
        let body = Bytes::copy_from_slice(&wire[8..8 + head.body_len()]);
        wire = &wire[8 + head.body_len()..];
        let Ok(frame) = frame::decode(head, body, &mut |b| inflater.decompress(b)) else {
            return;
        };
        if let Some(headers) = headers_of(&frame) {
            let _ = frame::header(headers, "streamtype");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    read_frames(data);

    if let Ok(headers) = frame::parse_block(data) {
        round_trip(&headers);
    }

    let block = Deflater::new().unwrap().compress(data).unwrap();
    let mut syn = BytesMut::new();
    syn.put_u32(
        0x8000_0000 | (u32::from(frame::VERSION) << 16) | u32::from(frame::TYPE_SYN_STREAM),
    );
    syn.put_u32((10 + block.len()) as u32 & 0x00ff_ffff);
    syn.put_u32(1);
    syn.put_u32(0);
    syn.put_u16(0);
    syn.put_slice(&block);
    let head = FrameHead::parse(syn[..8].try_into().unwrap());
    if head.check().is_ok() {
        let mut inflater = Inflater::new();
        let body = Bytes::copy_from_slice(&syn[8..]);
        if let Ok(frame) = frame::decode(head, body, &mut |b| inflater.decompress(b)) {
            assert!(matches!(frame, Frame::SynStream { stream_id: 1, .. }));
        }
    }
});
