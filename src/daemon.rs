//! Daemon start-up and shutdown: directories, the root lock, the socket, signals.
//!
//! Everything that can fail on bad input is checked before anything is created, so a
//! refused start leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;

use crate::call_layer::CallLayer;
use crate::config::Config;
use crate::metrics::{self, Metrics, rpc_metrics_layer};
use crate::server::CriServer;
use crate::server::deadline::CallerDeadline;

const LOCK_FILE: &str = "criox.lock";
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Nothing the daemon writes is meant for other users: bundles carry the containers'
/// environment (secrets included), layers carry setuid binaries, records carry
/// annotations. Group bits are masked too, since no group is entrusted with any of it;
/// the few files containers' own users must read are given their modes explicitly.
const UMASK: libc::mode_t = 0o077;
/// Searchable, not listable, by others: the root of a pod's user namespace reaches its
/// containers' bundles through it (each is that root's own, mode 0700).
const ROOT_MODE: u32 = 0o711;
/// Searchable, not listable, by others: the CRI socket in it is reached by the members
/// of its group.
const STATE_MODE: u32 = 0o711;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {what} directory {path}: {source}")]
    CreateDir {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state directory {path} is too long: container sockets below it would exceed the \
         108-byte unix socket limit (at most {max} bytes for this configuration)"
    )]
    StateTooLong { path: PathBuf, max: usize },
    #[error("socket directory {0} does not exist")]
    SocketDirMissing(PathBuf),
    #[error("cannot open lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another criox daemon{holder} already uses root {root} (lock {lock})")]
    AlreadyRunning {
        root: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("socket {0} is in use by a running server")]
    SocketInUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the CRI services: {0}")]
    Start(#[from] crate::server::StartError),
    #[error("metrics.address and metrics.port do not form an address: {0}")]
    MetricsAddress(String),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot take the socket-activated listener: {0}")]
    Activation(#[from] crate::service_manager::ActivationError),
}

/// Serves the CRI until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    set_private_umask();
    crate::cgroup_driver::set(
        config.runtime.cgroup_manager == crate::config::CgroupManager::Systemd,
    );
    let listen = config.listen_path();
    let socket_dir = listen.parent().map(Path::to_path_buf).unwrap_or_default();
    // The socket's directory is created only when it is the state directory itself;
    // any other missing directory is an operator's mistake worth reporting.
    if socket_dir != config.state && !socket_dir.is_dir() {
        return Err(DaemonError::SocketDirMissing(socket_dir));
    }
    check_socket_room(&config)?;
    let created = create_dirs(&[
        ("root", &config.root, ROOT_MODE),
        ("state", &config.state, STATE_MODE),
    ])?;
    let result = serve_locked(config, &listen).await;
    if result.is_err() {
        remove_created(&created);
    }
    result
}

async fn serve_locked(config: Config, listen: &Path) -> Result<(), DaemonError> {
    let _lock = RootLock::acquire(&config.root)?;
    // A socket the service manager passed is its to keep: it is neither bound nor
    // removed here, so the next start (or the next connection) finds it again.
    let (listener, bound_here) = match crate::service_manager::activated_listener()? {
        Some(listener) => {
            let listener =
                UnixListener::from_std(listener).map_err(|source| DaemonError::Listen {
                    path: listen.to_path_buf(),
                    source,
                })?;
            (listener, false)
        }
        None => (bind(listen).await?, true),
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;

    let metrics = Metrics::new();
    let _metrics_endpoint = if config.metrics.enabled {
        let address = format!("{}:{}", config.metrics.address, config.metrics.port);
        let address: SocketAddr = address
            .parse()
            .map_err(|_| DaemonError::MetricsAddress(address.clone()))?;
        let (bound, task) = metrics::serve(metrics.clone(), address)
            .await
            .map_err(|source| DaemonError::Metrics { address, source })?;
        tracing::info!(%bound, "serving metrics");
        Some(AbortOnDrop(task))
    } else {
        None
    };
    let server = CriServer::new(Arc::new(config), metrics.clone()).await?;
    tracing::info!(socket = %listen.display(), "criox is serving the CRI");
    crate::service_manager::notify_or_warn("READY=1");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tonic::transport::Server::builder()
        .layer(rpc_metrics_layer(metrics))
        .layer(CallLayer(CallerDeadline))
        .add_service(server.runtime_service())
        .add_service(server.image_service())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(serve);
    let result = tokio::select! {
        result = &mut serve => result,
        name = shutdown_signal(&mut terminate, &mut interrupt) => {
            tracing::info!("{name} received, shutting down");
            crate::service_manager::notify_or_warn("STOPPING=1");
            let _ = stop_tx.send(());
            // In-flight calls may finish, but a client that keeps its connection open
            // must not hold the daemon up.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                    Ok(())
                }
            }
        }
    };
    if bound_here {
        let _ = std::fs::remove_file(listen);
    }
    result.map_err(DaemonError::from)
}

/// Stops a background task when the daemon's serving scope ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal(
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// The longest socket path below the state directory is a runtime's per-container
/// socket, `<state>/r/<handler>/<64-char id>/notify.sock`; the monitor's
/// `<state>/c/<id>/monitor.sock` and an exec's console socket beside it are shorter.
fn check_socket_room(config: &Config) -> Result<(), DaemonError> {
    const SUN_PATH_MAX: usize = 107;
    const ID: usize = 64;
    let longest_handler = config
        .runtime
        .handlers
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0);
    let below = ("/r/".len() + longest_handler + 1 + ID + "/notify.sock".len())
        .max("/c/".len() + ID + "/monitor.sock".len())
        .max("/c/".len() + ID + 1 + crate::container::exec_stream::CONSOLE_SOCKET_NAME_LEN);
    let max = SUN_PATH_MAX.saturating_sub(below);
    if config.state.as_os_str().len() > max {
        return Err(DaemonError::StateTooLong {
            path: config.state.clone(),
            max,
        });
    }
    Ok(())
}

/// Binds the socket with mode 0660, replacing a stale socket file but never a live one.
async fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(DaemonError::SocketInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|source| DaemonError::Listen {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(DaemonError::Listen {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "a non-socket file is in the way",
                ),
            });
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|source| DaemonError::Listen {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(|source| {
        DaemonError::Listen {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

fn set_private_umask() {
    // SAFETY: umask only swaps the process's file creation mask.
    unsafe { libc::umask(UMASK) };
}

/// Creates each missing directory (with parents), gives it its mode (also when an
/// operator made it more open beforehand), and returns the topmost ones it made, so
/// that a failed start can take them back.
fn create_dirs(dirs: &[(&'static str, &PathBuf, u32)]) -> Result<Vec<PathBuf>, DaemonError> {
    let mut created = Vec::new();
    for (what, dir, mode) in dirs {
        let mut first_missing = None;
        for ancestor in dir.ancestors() {
            if ancestor.exists() {
                break;
            }
            first_missing = Some(ancestor.to_path_buf());
        }
        let made = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)));
        if let Err(source) = made {
            remove_created(&created);
            if let Some(dir) = first_missing {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(DaemonError::CreateDir {
                what,
                path: dir.to_path_buf(),
                source,
            });
        }
        created.extend(first_missing);
    }
    Ok(created)
}

fn remove_created(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// An exclusive flock on `<root>/criox.lock`, held for the daemon's life. The file keeps
/// the holder's pid so the refusal can name it.
struct RootLock {
    _file: File,
}

impl RootLock {
    fn acquire(root: &Path) -> Result<RootLock, DaemonError> {
        let path = root.join(LOCK_FILE);
        let lock_error = |source| DaemonError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_error)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(lock_error(err));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(DaemonError::AlreadyRunning {
                root: root.to_path_buf(),
                lock: path.clone(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        file.set_len(0).map_err(lock_error)?;
        file.rewind().map_err(lock_error)?;
        write!(file, "{}", std::process::id()).map_err(lock_error)?;
        Ok(RootLock { _file: file })
    }
}
