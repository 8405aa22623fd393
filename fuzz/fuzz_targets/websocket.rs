//! A WebSocket client's bytes after the upgrade: frames read by tungstenite as the
//! streaming server configures it, then each binary message read as the Kubernetes
//! channel protocol, with and without v5's close channel.
#![no_main]

use std::io::{self, Read, Write};

use criox_formats::websocket::{Incoming, MAX_MESSAGE, decode};
use libfuzzer_sys::fuzz_target;
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// The client's bytes to read; what the server writes back (pongs, closes) is dropped.
struct Wire<'a>(&'a [u8]);

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = WebSocket::from_raw_socket(Wire(data), Role::Server, Some(config));
    while let Ok(message) = ws.read() {
        let Message::Binary(message) = message else {
            continue;
        };
        for close_signal in [false, true] {
            match decode(&message, close_signal) {
                Incoming::Data { channel, payload } => {
                    assert_eq!(channel, message[0]);
                    assert_eq!(payload, &message[1..]);
                    assert!(!payload.is_empty());
                }
                Incoming::Close { channel } => {
                    assert!(close_signal);
                    assert_eq!([255, channel], message[..2]);
                }
                Incoming::Ignored => {}
            }
        }
    }
});
