//! A [`StreamingRuntime`] over host processes: `exec` runs a host command (with pipes or a
//! terminal), `attach` joins a process started with [`HostRuntime::spawn`], and port
//! forwarding enters the network namespace named by the pod id (a path), or none for
//! [`HOST`].

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};

use criox::streaming::StreamingRuntime;
use criox::streaming::runtime::{BoxFuture, ProcessIo, RuntimeError, TerminalSize};

/// The id that names "the host" for exec and port forwarding.
pub const HOST: &str = "host";

struct Attachable {
    stdin: mpsc::Sender<Bytes>,
    output: broadcast::Sender<(u8, Bytes)>,
    /// True once the process exited and all its output was broadcast.
    exited: watch::Receiver<bool>,
}

#[derive(Default)]
pub struct HostRuntime {
    attachable: Mutex<HashMap<String, Arc<Attachable>>>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(format!("{what}: {e}"))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

impl HostRuntime {
    /// Starts `cmd` as a long-running process that clients can attach to under `id`.
    pub fn spawn(&self, id: &str, cmd: &[String]) -> Result<(), RuntimeError> {
        let Some((program, args)) = cmd.split_first() else {
            return Err(RuntimeError::Failed("empty command".into()));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed("spawn", e))?;
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(16);
        let (output, _) = broadcast::channel(256);
        let mut child_stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out = output.clone();
        let (exited_tx, exited) = watch::channel(false);
        let entry = Arc::new(Attachable {
            stdin: stdin_tx,
            output,
            exited,
        });
        self.attachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), entry);
        tokio::spawn(async move {
            let feed = async {
                while let Some(data) = stdin_rx.recv().await {
                    if let Some(w) = child_stdin.as_mut()
                        && w.write_all(&data).await.is_err()
                    {
                        return;
                    }
                }
            };
            let broadcast_from = |reader: Option<tokio::process::ChildStdout>| {
                let out = out.clone();
                async move {
                    if let Some(r) = reader {
                        copy_to_broadcast(r, 1, &out).await;
                    }
                }
            };
            let out2 = out.clone();
            let errs = async move {
                if let Some(r) = stderr {
                    copy_to_broadcast(r, 2, &out2).await;
                }
            };
            let feed = async {
                feed.await;
                std::future::pending::<()>().await
            };
            tokio::select! {
                _ = feed => {}
                _ = async { tokio::join!(broadcast_from(stdout), errs, child.wait()) } => {}
            }
            let _ = exited_tx.send(true);
        });
        Ok(())
    }

    fn attachable(&self, id: &str) -> Option<Arc<Attachable>> {
        self.attachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

async fn copy_to_broadcast<R: AsyncRead + Unpin>(
    mut r: R,
    kind: u8,
    out: &broadcast::Sender<(u8, Bytes)>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        buf.reserve(16 * 1024);
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let _ = out.send((kind, buf.split().freeze()));
            }
        }
    }
}

async fn copy_out<R: AsyncRead + Unpin>(reader: Option<R>, sink: Option<mpsc::Sender<Bytes>>) {
    let (Some(mut r), Some(sink)) = (reader, sink) else {
        return;
    };
    let mut buf = BytesMut::with_capacity(32 * 1024);
    loop {
        buf.reserve(32 * 1024);
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if sink.send(buf.split().freeze()).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn exec_pipes(cmd: Vec<String>, io: ProcessIo) -> Result<i32, RuntimeError> {
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| failed("exec", "empty command"))?;
    let pipe = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(pipe(io.stdin.is_some()))
        .stdout(pipe(io.stdout.is_some()))
        .stderr(pipe(io.stderr.is_some()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(&format!("exec {program}"), e))?;
    let mut child_stdin = child.stdin.take();
    let feed = async {
        if let (Some(mut rx), Some(w)) = (io.stdin, child_stdin.as_mut()) {
            while let Some(data) = rx.recv().await {
                if w.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        // Closing the pipe is how the process learns that stdin ended.
        drop(child_stdin.take());
        std::future::pending::<()>().await
    };
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (status, (), ()) = tokio::join!(
            child.wait(),
            copy_out(out, io.stdout),
            copy_out(err, io.stderr)
        );
        status
    };
    let status = tokio::select! {
        status = run => status,
        _ = feed => unreachable!("feeding stdin never completes"),
    };
    status.map(exit_code).map_err(|e| failed("wait", e))
}

/// What read(2) or write(2) returned, as a count or the error it stands for.
fn byte_count(n: isize) -> std::io::Result<usize> {
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The controlling side of a pseudo-terminal, non-blocking under tokio.
struct PtyMaster(AsyncFd<OwnedFd>);

impl PtyMaster {
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| {
                // SAFETY: reading into a valid buffer from an fd we own.
                byte_count(unsafe {
                    libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                })
            }) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| {
                // SAFETY: writing from a valid buffer to an fd we own.
                byte_count(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, size: TerminalSize) {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        unsafe { libc::ioctl(self.0.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

async fn exec_tty(cmd: Vec<String>, io: ProcessIo) -> Result<i32, RuntimeError> {
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| failed("exec", "empty command"))?;
    let pty = nix::pty::openpty(None, None).map_err(|e| failed("openpty", e))?;
    let fcntl_flags = nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| failed("fcntl", e))?;
    nix::fcntl::fcntl(
        pty.master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(fcntl_flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .map_err(|e| failed("fcntl", e))?;
    let slave = pty.slave;
    let stdio = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|e| failed("dup", e))
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?)
        .kill_on_drop(true);
    // SAFETY: setsid and ioctl are async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| failed(&format!("exec {program}"), e))?;
    // The child holds the only remaining copies of the terminal's slave side.
    drop(command);
    drop(slave);
    // SAFETY: the fd is owned, open, and stays registered for as long as it lives.
    let master = unsafe { AsyncFd::register(pty.master) }
        .map_err(|e| failed("register pty", e.into_parts().1))?;
    let master = PtyMaster(master);
    let master = &master;
    let feed = async {
        if let Some(mut rx) = io.stdin {
            while let Some(data) = rx.recv().await {
                if master.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    };
    let resize = async {
        if let Some(mut rx) = io.resize {
            while let Some(size) = rx.recv().await {
                master.resize(size);
            }
        }
        std::future::pending::<()>().await
    };
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match master.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(out) = &io.stdout
                        && out.send(Bytes::copy_from_slice(&buf[..n])).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let run = async {
        let (status, ()) = tokio::join!(child.wait(), output);
        status
    };
    let status = tokio::select! {
        status = run => status,
        _ = feed => unreachable!("feeding stdin never completes"),
        _ = resize => unreachable!("resizing never completes"),
    };
    status.map(exit_code).map_err(|e| failed("wait", e))
}

impl StreamingRuntime for HostRuntime {
    fn check_container<'a>(
        &'a self,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if container_id == HOST {
                return Ok(());
            }
            match self.attachable(container_id) {
                Some(a) if *a.exited.borrow() => {
                    Err(RuntimeError::NotRunning(container_id.to_string()))
                }
                Some(_) => Ok(()),
                None => Err(RuntimeError::NotFound(container_id.to_string())),
            }
        })
    }

    fn check_pod<'a>(&'a self, pod_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if pod_id == HOST || Path::new(pod_id).exists() {
                Ok(())
            } else {
                Err(RuntimeError::PodNotFound(pod_id.to_string()))
            }
        })
    }

    fn exec<'a>(
        &'a self,
        _container_id: &'a str,
        cmd: Vec<String>,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<i32, RuntimeError>> {
        Box::pin(async move {
            if io.tty {
                exec_tty(cmd, io).await
            } else {
                exec_pipes(cmd, io).await
            }
        })
    }

    fn attach<'a>(
        &'a self,
        container_id: &'a str,
        io: ProcessIo,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let target = self
                .attachable(container_id)
                .ok_or_else(|| RuntimeError::NotFound(container_id.to_string()))?;
            let mut output = target.output.subscribe();
            let mut exited = target.exited.clone();
            if *exited.borrow() {
                return Err(RuntimeError::NotRunning(container_id.to_string()));
            }
            let feed = async {
                if let Some(mut rx) = io.stdin {
                    while let Some(data) = rx.recv().await {
                        if target.stdin.send(data).await.is_err() {
                            break;
                        }
                    }
                }
                std::future::pending::<()>().await
            };
            let relay = async {
                loop {
                    let next = tokio::select! {
                        biased;
                        next = output.recv() => next,
                        _ = exited.wait_for(|e| *e) => output.try_recv().map_err(|_| {
                            broadcast::error::RecvError::Closed
                        }),
                    };
                    match next {
                        Ok((kind, data)) => {
                            let sink = if kind == 2 { &io.stderr } else { &io.stdout };
                            if let Some(sink) = sink
                                && sink.send(data).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            };
            tokio::select! {
                _ = relay => {}
                _ = feed => {}
            }
            Ok(())
        })
    }

    fn port_forward_netns<'a>(
        &'a self,
        pod_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, RuntimeError>> {
        Box::pin(async move {
            if pod_id == HOST {
                Ok(None)
            } else {
                Ok(Some(PathBuf::from(pod_id)))
            }
        })
    }
}
