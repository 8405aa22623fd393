//! The monitor's socket: attach sessions (output out, input in) and control requests
//! (log reopen, terminal resize). See [`super::protocol`] for the wire format.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::protocol;

/// What the monitor does on a client's behalf.
pub trait Handler {
    fn reopen_log(&mut self) -> Result<(), String>;
    fn resize(&mut self, rows: u16, cols: u16) -> Result<(), String>;
    fn stdin(&mut self, data: &[u8]);
    /// The client asked to close stdin, or a client that held stdin went away.
    fn stdin_done(&mut self);
    /// Whether input waiting for the container has reached its limit; clients that send
    /// stdin are then not read until it drains (see `super::stdin`).
    fn stdin_full(&self) -> bool;
}

enum Mode {
    Header(Vec<u8>),
    Attached { stdin: bool, buf: Vec<u8> },
}

struct Client {
    stream: UnixStream,
    mode: Mode,
}

impl Client {
    fn sends_stdin(&self) -> bool {
        matches!(self.mode, Mode::Attached { stdin: true, .. })
    }
}

pub struct AttachServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
}

/// Header lines are short; anything longer is not a client of ours.
const MAX_HEADER: usize = 256;

impl AttachServer {
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(AttachServer {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
        })
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The clients to poll for input; with `stdin_full`, those that send stdin are left
    /// out so that their input waits in their sockets.
    pub fn client_fds(&self, stdin_full: bool) -> Vec<RawFd> {
        self.clients
            .iter()
            .filter(|c| !(stdin_full && c.sends_stdin()))
            .map(|c| c.stream.as_raw_fd())
            .collect()
    }

    pub fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    mode: Mode::Header(Vec::new()),
                });
            }
        }
    }

    /// Serves the client with descriptor `fd` after poll said it is readable or hung up.
    pub fn on_readable(&mut self, fd: RawFd, handler: &mut dyn Handler) {
        let Some(idx) = self.clients.iter().position(|c| c.stream.as_raw_fd() == fd) else {
            return;
        };
        let mut buf = [0u8; 8192];
        let keep = loop {
            if self.clients[idx].sends_stdin() && handler.stdin_full() {
                break true;
            }
            match self.clients[idx].stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => {
                    if !serve(&mut self.clients[idx], &buf[..n], handler) {
                        break false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
        };
        if !keep {
            let client = self.clients.remove(idx);
            if let Mode::Attached { stdin: true, .. } = client.mode {
                handler.stdin_done();
            }
        }
    }

    /// Sends output to every attached client; a client that cannot keep up is dropped.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let frame = protocol::frame(kind, data);
        self.clients.retain_mut(|c| match c.mode {
            Mode::Attached { .. } => write_all_nonblocking(&mut c.stream, &frame),
            Mode::Header(_) => true,
        });
    }
}

/// Writes the whole frame, waiting briefly when the socket buffer is full; false when the
/// client is gone or stuck.
fn write_all_nonblocking(stream: &mut UnixStream, mut data: &[u8]) -> bool {
    let mut waits = 0;
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && waits < 50 => {
                waits += 1;
                let mut pfd = libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 20) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Feeds bytes from a client; false when the client is done.
fn serve(client: &mut Client, data: &[u8], handler: &mut dyn Handler) -> bool {
    match &mut client.mode {
        Mode::Header(head) => {
            head.extend_from_slice(data);
            let Some(nl) = head.iter().position(|&b| b == b'\n') else {
                return head.len() <= MAX_HEADER;
            };
            let line = String::from_utf8_lossy(&head[..nl]).trim().to_string();
            let rest = head[nl + 1..].to_vec();
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                ["attach"] | ["attach", "stdin"] => {
                    client.mode = Mode::Attached {
                        stdin: words.len() == 2,
                        buf: Vec::new(),
                    };
                    return rest.is_empty() || serve(client, &rest, handler);
                }
                ["reopen"] => handler.reopen_log(),
                ["resize", rows, cols] => match (rows.parse(), cols.parse()) {
                    (Ok(r), Ok(c)) => handler.resize(r, c),
                    _ => Err(format!("bad size {rows} {cols}")),
                },
                _ => Err(format!("unknown request {line:?}")),
            };
            let reply = match answer {
                Ok(()) => "ok\n".to_string(),
                Err(e) => format!("error {e}\n"),
            };
            let _ = client.stream.set_nonblocking(false);
            let _ = client.stream.write_all(reply.as_bytes());
            false
        }
        Mode::Attached { stdin, buf } => {
            buf.extend_from_slice(data);
            for (kind, payload) in protocol::take_frames(buf) {
                match kind {
                    protocol::STDIN if *stdin => handler.stdin(&payload),
                    protocol::CLOSE_STDIN if *stdin => handler.stdin_done(),
                    protocol::RESIZE if payload.len() == 4 => {
                        let rows = u16::from_be_bytes([payload[0], payload[1]]);
                        let cols = u16::from_be_bytes([payload[2], payload[3]]);
                        let _ = handler.resize(rows, cols);
                    }
                    _ => {}
                }
            }
            true
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
