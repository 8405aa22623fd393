//! The service manager's side of start-up and shutdown: readiness and stopping notices
//! sent to `$NOTIFY_SOCKET` (systemd's `Type=notify`), and a listening socket handed over
//! by socket activation (`$LISTEN_PID`, `$LISTEN_FDS`).
//!
//! Both are plain environment protocols, so they work under any manager that speaks
//! them, and do nothing when the variables are absent.

use std::ffi::OsString;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};

/// The first descriptor a socket-activating manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract name")]
    Address(OsString),
    #[error("cannot send {state:?} to NOTIFY_SOCKET {socket:?}: {source}")]
    Send {
        state: &'static str,
        socket: OsString,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of descriptors")]
    Count(String),
    #[error("socket activation passed {0} descriptors; criox listens on exactly one")]
    TooMany(usize),
    #[error("descriptor {fd} passed by socket activation is not a unix socket: {reason}")]
    NotASocket { fd: RawFd, reason: String },
}

/// Tells the service manager about a state change; `Ok(false)` when none is listening.
pub fn notify(state: &'static str) -> Result<bool, NotifyError> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let address = notify_address(&socket)?;
    let send_error = |source| NotifyError::Send {
        state,
        socket: socket.clone(),
        source,
    };
    let sender = UnixDatagram::unbound().map_err(send_error)?;
    sender
        .send_to_addr(state.as_bytes(), &address)
        .map_err(send_error)?;
    Ok(true)
}

/// Logs instead of failing: a manager that cannot be told is no reason to stop serving.
pub fn notify_or_warn(state: &'static str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told the service manager"),
        Ok(false) => {}
        Err(e) => tracing::warn!("{e}"),
    }
}

fn notify_address(socket: &OsString) -> Result<SocketAddr, NotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    let address = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => return Err(NotifyError::Address(socket.clone())),
    };
    address.map_err(|_| NotifyError::Address(socket.clone()))
}

/// The listening socket a socket-activating manager passed to this process, if any.
///
/// The variables are honoured only when `LISTEN_PID` names this process, so a child that
/// inherited them never takes a descriptor meant for its parent.
pub fn activated_listener() -> Result<Option<UnixListener>, ActivationError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(None);
    }
    let count = match std::env::var("LISTEN_FDS") {
        Ok(count) => count
            .trim()
            .parse::<usize>()
            .map_err(|_| ActivationError::Count(count.clone()))?,
        Err(_) => return Ok(None),
    };
    match count {
        0 => Ok(None),
        1 => take_listener(LISTEN_FDS_START).map(Some),
        n => Err(ActivationError::TooMany(n)),
    }
}

fn take_listener(fd: RawFd) -> Result<UnixListener, ActivationError> {
    let not_a_socket = |reason: String| ActivationError::NotASocket { fd, reason };
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map_err(|e| not_a_socket(e.to_string()))?;
    if !meta.file_type().is_socket() {
        return Err(not_a_socket("not a socket".into()));
    }
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(not_a_socket(std::io::Error::last_os_error().to_string()));
    }
    if domain != libc::AF_UNIX {
        return Err(not_a_socket(format!("address family {domain}")));
    }
    // The manager passes it without close-on-exec; monitors and plugins must not keep it.
    // SAFETY: fcntl on a descriptor checked above; no memory is involved.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the descriptor was handed to this process to own, and nothing else in it
    // has wrapped it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    listener
        .set_nonblocking(true)
        .map_err(|e| not_a_socket(e.to_string()))?;
    Ok(listener)
}

/// Whether stderr is the journal's stream, as systemd says in `$JOURNAL_STREAM`
/// (`<device>:<inode>` of the socket it connected to stderr).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|meta| meta.dev() == dev && meta.ino() == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses_are_told_apart() {
        let abstract_name = notify_address(&OsString::from("@criox/notify")).unwrap();
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"criox/notify"[..]));
        let path = notify_address(&OsString::from("/run/systemd/notify")).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(matches!(
            notify_address(&OsString::from("relative")),
            Err(NotifyError::Address(_))
        ));
    }
}
