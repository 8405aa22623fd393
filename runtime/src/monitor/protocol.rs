//! What travels over the monitor's socket (`monitor.sock` in the state directory).
//!
//! A client sends one request line first:
//! - `attach\n` or `attach stdin\n`: then frames both ways until either side closes;
//! - `reopen\n`: the monitor reopens the log file and answers `ok\n` or `error <text>\n`;
//! - `resize <rows> <cols>\n`: sets the terminal size; answers like `reopen`.
//!
//! A frame is one kind byte, a big-endian u32 length, and that many bytes. From the
//! monitor: [`STDOUT`] and [`STDERR`] carry output. From the client: [`STDIN`] carries
//! input, [`CLOSE_STDIN`] (empty) closes the container's stdin when it was launched with
//! stdin_once, [`RESIZE`] carries rows and cols as two big-endian u16.

#[cfg(test)]
use std::io::Read;

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STDIN: u8 = 0;
pub const CLOSE_STDIN: u8 = 3;
pub const RESIZE: u8 = 4;

/// Encodes one frame.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(kind);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Reads one frame from a blocking stream; `None` at end of stream. The monitor and the
/// daemon read frames from non-blocking sockets with [`take_frames`]; this reads what
/// they wrote, in tests.
#[cfg(test)]
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > 1 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame longer than 1 MiB",
        ));
    }
    let mut data = vec![0; len];
    r.read_exact(&mut data)?;
    Ok(Some((head[0], data)))
}

/// Splits complete frames off the front of `buf`.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 5 {
        let len =
            u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]) as usize;
        if buf.len() - pos - 5 < len {
            break;
        }
        frames.push((buf[pos], buf[pos + 5..pos + 5 + len].to_vec()));
        pos += 5 + len;
    }
    buf.drain(..pos);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_arbitrary_splits() {
        let mut wire = frame(STDIN, b"hello");
        wire.extend(frame(RESIZE, &[0, 24, 0, 80]));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            got.extend(take_frames(&mut buf));
        }
        assert_eq!(
            got,
            vec![(STDIN, b"hello".to_vec()), (RESIZE, vec![0, 24, 0, 80])]
        );
        assert!(buf.is_empty());
    }
}
