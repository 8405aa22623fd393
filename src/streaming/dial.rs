//! Connecting to a port inside a network namespace. A socket belongs to the namespace it
//! was created in, so a short-lived thread enters the namespace, connects, and hands the
//! connected socket back; the daemon's own threads never change namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot open network namespace {path}: {source}")]
    OpenNetns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error(
        "failed to connect to localhost:{port} inside namespace {netns}: IPv4: {v4}; IPv6: {v6}"
    )]
    Connect {
        port: u16,
        netns: String,
        v4: std::io::Error,
        v6: std::io::Error,
    },
    #[error("cannot start a thread to connect: {0}")]
    Thread(std::io::Error),
    #[error("the connecting thread failed")]
    ThreadLost,
    #[error("cannot register the connected socket: {0}")]
    Register(std::io::Error),
}

/// Connects to localhost:`port` (IPv4, then IPv6) in `netns`, or in the daemon's namespace.
pub async fn connect(netns: Option<&Path>, port: u16) -> Result<TcpStream, DialError> {
    let netns = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-dial".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(netns.as_deref(), port));
        })
        .map_err(DialError::Thread)?;
    let stream = rx.await.map_err(|_| DialError::ThreadLost)??;
    stream.set_nonblocking(true).map_err(DialError::Register)?;
    TcpStream::from_std(stream).map_err(DialError::Register)
}

fn connect_blocking(netns: Option<&Path>, port: u16) -> Result<StdTcpStream, DialError> {
    if let Some(path) = netns {
        let file = std::fs::File::open(path).map_err(|source| DialError::OpenNetns {
            path: path.to_path_buf(),
            source,
        })?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(
            |source| DialError::Setns {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match StdTcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(v4_err) => StdTcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|v6_err| {
            DialError::Connect {
                port,
                netns: netns
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "of the daemon".into()),
                v4: v4_err,
                v6: v6_err,
            }
        }),
    }
}
