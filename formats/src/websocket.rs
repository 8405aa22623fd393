//! The Kubernetes channel protocol over WebSocket: every binary message starts with a
//! channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize for remote commands; two
//! channels per port for port forwarding). `v5.channel.k8s.io` adds channel 255, on which
//! the client sends `[255, n]` to close its channel `n` (stdin) without closing the socket.
//!
//! The WebSocket framing itself is tungstenite's, held to [`MAX_MESSAGE`].

pub const CLOSE_CHANNEL: u8 = 255;
/// Largest message, and largest frame, accepted from a client.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What one binary message from the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Bytes for channel `channel`; never empty.
    Data { channel: u8, payload: &'a [u8] },
    /// The client closes its channel `channel` (v5 only).
    Close { channel: u8 },
    /// Nothing to do: an empty message, or a channel byte with no data.
    Ignored,
}

/// Reads a binary message; `close_signal` is whether the protocol version has channel 255.
pub fn decode(message: &[u8], close_signal: bool) -> Incoming<'_> {
    let Some((&channel, payload)) = message.split_first() else {
        return Incoming::Ignored;
    };
    if channel == CLOSE_CHANNEL && close_signal {
        return match payload.first() {
            Some(&channel) => Incoming::Close { channel },
            None => Incoming::Ignored,
        };
    }
    if payload.is_empty() {
        return Incoming::Ignored;
    }
    Incoming::Data { channel, payload }
}

/// A message carrying `data` on `channel`.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_channel() {
        assert_eq!(
            decode(&encode(1, b"out"), false),
            Incoming::Data {
                channel: 1,
                payload: b"out"
            }
        );
        assert_eq!(decode(b"", true), Incoming::Ignored);
        assert_eq!(decode(&[0], true), Incoming::Ignored);
    }

    #[test]
    fn channel_255_closes_only_in_v5() {
        assert_eq!(decode(&[255, 0], true), Incoming::Close { channel: 0 });
        assert_eq!(decode(&[255], true), Incoming::Ignored);
        assert_eq!(
            decode(&[255, 0], false),
            Incoming::Data {
                channel: 255,
                payload: &[0]
            }
        );
    }
}
