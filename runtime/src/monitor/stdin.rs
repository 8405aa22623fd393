//! The container's stdin as the monitor writes it. The monitor has one loop for output,
//! signals, attach and control requests, so a write to stdin must never block it: a
//! container that does not read its stdin would otherwise stall its logs, its exit and
//! every later request.
//!
//! The rule: input is written without blocking; what the container has not taken yet is
//! kept, up to [`STDIN_BUFFER`] bytes. While that much is waiting, the monitor stops
//! reading from the clients that send stdin, so their writes wait in their sockets
//! (back-pressure: nothing is dropped) and everything else goes on.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Input kept for a container that is not reading it; 16 pipe buffers.
pub const STDIN_BUFFER: usize = 1 << 20;

pub struct StdinWriter {
    file: File,
    pending: Vec<u8>,
    limit: usize,
}

impl StdinWriter {
    /// Takes `file` (a pipe's write end or a pty master) and makes it non-blocking.
    pub fn new(file: File, limit: usize) -> StdinWriter {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        StdinWriter {
            file,
            pending: Vec::new(),
            limit,
        }
    }

    /// Queues `data` and writes what the container will take now. An error means the
    /// container's stdin is gone (it exited or closed it).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(data);
        self.flush()
    }

    /// Writes queued input until the container stops taking it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(());
            }
            match self.file.write(&self.pending[written..]) {
                Ok(0) => break Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..written);
        result
    }

    /// Whether input is waiting for the container (poll the descriptor for POLLOUT).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the buffer is at its limit (stop reading input from clients).
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.limit
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Duration;

    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;

    use super::*;

    /// Runs `f` on a thread; fails the test if it does not return within five seconds,
    /// which is what a blocking write to a full pipe does.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("writing stdin blocked: the monitor's loop would stall")
    }

    #[test]
    fn input_a_container_does_not_read_is_kept_without_blocking() {
        let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut reader = File::from(reader);
        let (stdin, full) = within_5s(move || {
            let mut stdin = StdinWriter::new(File::from(writer), STDIN_BUFFER);
            let mut full = false;
            // 4 MiB, far beyond a pipe's 64 KiB, in attach-sized pieces.
            for _ in 0..512 {
                stdin.write(&[b'x'; 8192]).unwrap();
                full |= stdin.is_full();
            }
            (stdin, full)
        });
        println!(
            "4 MiB written to a stdin nobody reads: returned, {} bytes kept, full={full}",
            stdin.pending.len()
        );
        assert!(full && stdin.has_pending());
        // Once the container reads, the kept input follows, in order and complete.
        let mut stdin = stdin;
        let mut got = 0usize;
        let mut buf = vec![0u8; 65536];
        while stdin.has_pending() {
            let n = reader.read(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&b| b == b'x'));
            got += n;
            stdin.flush().unwrap();
        }
        drop(stdin);
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, 512 * 8192);
    }

    #[test]
    fn a_closed_stdin_is_an_error() {
        let (reader, writer) = pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(reader);
        let mut stdin = StdinWriter::new(File::from(writer), STDIN_BUFFER);
        assert!(stdin.write(b"hello").is_err());
    }
}
