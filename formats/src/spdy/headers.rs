//! Header block compression. SPDY/3 compresses every header block of a connection with one
//! zlib stream per direction, primed with the protocol's dictionary and sync-flushed after
//! each block, so both ends keep their state for the connection's lifetime.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::FrameError;

/// The SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1).
pub const DICTIONARY: &[u8] = include_bytes!("dictionary.bin");
/// A decompressed header block larger than this is refused (a zlib bomb guard).
const MAX_BLOCK: usize = 256 * 1024;

pub struct Deflater {
    zlib: Compress,
}

impl Deflater {
    pub fn new() -> Result<Deflater, FrameError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(DICTIONARY)
            .map_err(|e| FrameError::Compression(e.to_string()))?;
        Ok(Deflater { zlib })
    }

    pub fn compress(&mut self, plain: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start_in = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.zlib
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Compression(e.to_string()))?;
            let consumed = (self.zlib.total_in() - start_in) as usize;
            // A sync flush is complete when all input is taken and output space remains.
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

pub struct Inflater {
    zlib: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            zlib: Decompress::new(true),
        }
    }

    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start_in = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let before_out = out.len();
            match self
                .zlib
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::Compression(
                        "the peer ended its header zlib stream".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| FrameError::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::Compression(e.to_string())),
            }
            if out.len() > MAX_BLOCK {
                return Err(FrameError::TooLarge(out.len()));
            }
            let consumed = (self.zlib.total_in() - start_in) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == compressed.len() && out.len() == before_out {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::frame::{build_block, parse_block};

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
    }

    #[test]
    fn blocks_survive_a_shared_stream_in_both_directions() {
        let mut deflate = Deflater::new().unwrap();
        let mut inflate = Inflater::new();
        for i in 0..50 {
            let value = format!("request-{i}");
            let block = build_block(&[("streamtype", "data"), ("requestid", &value)]);
            let wire = deflate.compress(&block).unwrap();
            let back = inflate.decompress(&wire).unwrap();
            assert_eq!(parse_block(&back).unwrap()[1].1, value);
        }
    }

    #[test]
    fn garbage_is_refused() {
        let mut inflate = Inflater::new();
        assert!(inflate.decompress(b"\x00\x01\x02garbage").is_err());
    }
}
