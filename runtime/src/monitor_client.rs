//! Talking to a running monitor through its state directory: liveness, exit record, log
//! reopen, terminal resize, attach. A restarted daemon reconnects the same way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{RuntimeError, io_err};
use crate::monitor::ExitRecord;
use crate::monitor::{files, protocol};
use crate::process::ProcessId;

/// The live monitor of the container in `state_dir`, if one runs: the process recorded in
/// its pid file, checked by pid and start time.
pub fn monitor_process(state_dir: &Path) -> Option<ProcessId> {
    files::live_monitor(state_dir)
}

/// Pid of the live monitor of the container in `state_dir`, if one runs.
pub fn monitor_pid(state_dir: &Path) -> Option<i32> {
    monitor_process(state_dir).map(|p| p.pid)
}

/// Waits until the exit record appears; `None` after `timeout` (or never with `None`).
/// While the monitor runs this sleeps on its socket, which the monitor closes right after
/// writing the record; without a monitor it polls.
pub fn wait_exit(state_dir: &Path, timeout: Option<Duration>) -> Option<ExitRecord> {
    let start = Instant::now();
    if let Ok(mut stream) = UnixStream::connect(state_dir.join(files::SOCKET))
        && stream.write_all(b"attach\n").is_ok()
    {
        let _ = stream.set_read_timeout(timeout);
        let mut sink = [0u8; 16 * 1024];
        loop {
            match std::io::Read::read(&mut stream, &mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    loop {
        if let Ok(Some(rec)) = ExitRecord::read(state_dir) {
            return Some(rec);
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn request(id: &str, state_dir: &Path, line: &str) -> Result<(), RuntimeError> {
    let sock = state_dir.join(files::SOCKET);
    let mut stream = UnixStream::connect(&sock).map_err(io_err(id, "monitor socket", &sock))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err(id, "monitor socket", &sock))?;
    stream
        .write_all(line.as_bytes())
        .map_err(io_err(id, "monitor socket", &sock))?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_err(id, "monitor socket", &sock))?;
    match reply.trim() {
        "ok" => Ok(()),
        other => Err(RuntimeError::Failed {
            id: id.to_string(),
            op: "monitor request",
            message: other.trim_start_matches("error ").to_string(),
        }),
    }
}

/// Asks the monitor to reopen the log file (after the caller rotated it).
pub fn reopen_log(id: &str, state_dir: &Path) -> Result<(), RuntimeError> {
    request(id, state_dir, "reopen\n")
}

/// Sets the container terminal's size.
pub fn resize(id: &str, state_dir: &Path, rows: u16, cols: u16) -> Result<(), RuntimeError> {
    request(id, state_dir, &format!("resize {rows} {cols}\n"))
}

/// Opens an attach session: output arrives as frames (see [`crate::monitor::protocol`]);
/// with `stdin`, frames written to the stream reach the container's stdin.
pub fn attach(id: &str, state_dir: &Path, stdin: bool) -> Result<UnixStream, RuntimeError> {
    let sock = state_dir.join(files::SOCKET);
    let mut stream = UnixStream::connect(&sock).map_err(io_err(id, "monitor socket", &sock))?;
    let line: &[u8] = if stdin {
        b"attach stdin\n"
    } else {
        b"attach\n"
    };
    stream
        .write_all(line)
        .map_err(io_err(id, "monitor socket", &sock))?;
    Ok(stream)
}

/// What a client sends in an attach session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachInput<'a> {
    Stdin(&'a [u8]),
    /// Closes the container's stdin when it was launched with stdin_once.
    CloseStdin,
    Resize {
        rows: u16,
        cols: u16,
    },
}

impl AttachInput<'_> {
    /// The bytes to write to the attach socket.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            AttachInput::Stdin(data) => protocol::frame(protocol::STDIN, data),
            AttachInput::CloseStdin => protocol::frame(protocol::CLOSE_STDIN, &[]),
            AttachInput::Resize { rows, cols } => {
                let mut payload = rows.to_be_bytes().to_vec();
                payload.extend_from_slice(&cols.to_be_bytes());
                protocol::frame(protocol::RESIZE, &payload)
            }
        }
    }
}

/// Which of the container's streams output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Splits what an attach socket delivers, read in chunks of any size, into output.
#[derive(Debug, Default)]
pub struct AttachOutput {
    pending: Vec<u8>,
}

impl AttachOutput {
    /// Takes `bytes` read from the socket; returns the output now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(OutputStream, Vec<u8>)> {
        self.pending.extend_from_slice(bytes);
        protocol::take_frames(&mut self.pending)
            .into_iter()
            .filter_map(|(kind, data)| match kind {
                protocol::STDOUT => Some((OutputStream::Stdout, data)),
                protocol::STDERR => Some((OutputStream::Stderr, data)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_split_anywhere_comes_out_whole_and_in_order() {
        let mut wire = protocol::frame(protocol::STDOUT, b"hello");
        wire.extend(protocol::frame(protocol::STDERR, b"oops"));
        wire.extend(protocol::frame(protocol::STDOUT, b""));
        for cut in 0..wire.len() {
            let mut out = AttachOutput::default();
            let mut got = out.push(&wire[..cut]);
            got.extend(out.push(&wire[cut..]));
            let got: Vec<_> = got.into_iter().filter(|(_, d)| !d.is_empty()).collect();
            assert_eq!(
                got,
                vec![
                    (OutputStream::Stdout, b"hello".to_vec()),
                    (OutputStream::Stderr, b"oops".to_vec())
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn input_is_framed_as_the_monitor_reads_it() {
        let mut wire = AttachInput::Resize { rows: 33, cols: 99 }.encode();
        wire.extend(AttachInput::Stdin(b"ls\n").encode());
        wire.extend(AttachInput::CloseStdin.encode());
        let mut r = &wire[..];
        assert_eq!(
            protocol::read_frame(&mut r).unwrap(),
            Some((protocol::RESIZE, vec![0, 33, 0, 99]))
        );
        assert_eq!(
            protocol::read_frame(&mut r).unwrap(),
            Some((protocol::STDIN, b"ls\n".to_vec()))
        );
        assert_eq!(
            protocol::read_frame(&mut r).unwrap(),
            Some((protocol::CLOSE_STDIN, vec![]))
        );
    }
}
