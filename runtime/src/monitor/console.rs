//! Receives the pty master that the runtime sends over a console socket when the container's
//! process has a terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// Sets the window size of the terminal whose master (or slave) is `fd`.
pub fn set_window_size(fd: RawFd, rows: u16, columns: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a pointer we own.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("console socket {path}: the runtime sent no terminal within {secs}s")]
    NoTerminal { path: PathBuf, secs: u64 },
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> Result<Self, ConsoleError> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|source| ConsoleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and takes the descriptor it passes.
    pub fn receive(&self, timeout_secs: u64) -> Result<OwnedFd, ConsoleError> {
        let none = || ConsoleError::NoTerminal {
            path: self.path.clone(),
            secs: timeout_secs,
        };
        let mut pfd = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, (timeout_secs * 1000) as i32) };
        if n <= 0 {
            return Err(none());
        }
        let (stream, _) = self.listener.accept().map_err(|source| ConsoleError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ConsoleError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        for cmsg in msg.cmsgs().map_err(|e| ConsoleError::Io {
            path: self.path.clone(),
            source: e.into(),
        })? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(&fd) = fds.first()
            {
                // SAFETY: the kernel installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Err(none())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
