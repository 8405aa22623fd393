//! Moves bytes between a streaming session's channels and a container: the pipes or the
//! terminal of an exec'd process, or the framed attach socket of a container's monitor.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use criox_runtime::{AttachInput, AttachOutput, OutputStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::container::exec_stream::ExecProcess;
use crate::streaming::RuntimeError;
use crate::streaming::runtime::{ProcessIo, TerminalSize};
use criox_runtime::set_window_size;

const CHUNK: usize = 32 * 1024;

fn failed(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(e.to_string())
}

/// Runs an exec session to its end and returns the process's exit code.
pub async fn exec(mut exec: ExecProcess, io: ProcessIo) -> Result<i32, RuntimeError> {
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        ..
    } = io;
    if let Some(master) = exec.terminal.take() {
        return terminal(exec, master, stdin, stdout, resize).await;
    }
    let child_stdin = exec.child().stdin.take();
    let child_stdout = exec.child().stdout.take();
    let child_stderr = exec.child().stderr.take();
    let feed = async move {
        if let (Some(mut rx), Some(mut writer)) = (stdin, child_stdin) {
            while let Some(data) = rx.recv().await {
                if writer.write_all(&data).await.is_err() {
                    break;
                }
            }
            // Dropping the writer closes the process's stdin.
        }
    };
    let outputs = async {
        tokio::join!(pump(child_stdout, stdout), pump(child_stderr, stderr));
        exec.child().wait().await
    };
    let status = until_output_ends(feed, outputs).await;
    Ok(exit_code(status.map_err(failed)?))
}

/// Drives `input` alongside `output` until `output` ends: a client that closes its stdin
/// still gets the rest of the output.
async fn until_output_ends<T>(
    input: impl Future<Output = ()>,
    output: impl Future<Output = T>,
) -> T {
    tokio::pin!(input);
    tokio::pin!(output);
    let mut feeding = true;
    loop {
        tokio::select! {
            result = &mut output => return result,
            _ = &mut input, if feeding => feeding = false,
        }
    }
}

/// Copies a pipe to a session stream until the pipe ends. Output nobody asked for is
/// read and dropped, so the process never blocks on a full pipe.
async fn pump(reader: Option<impl AsyncRead + Unpin>, to: Option<mpsc::Sender<Bytes>>) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(tx) = &to
                    && tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A terminal session: the pty master read and written from two threads (a pty is not
/// a pollable pipe tokio can own), resized with TIOCSWINSZ.
async fn terminal(
    mut exec: ExecProcess,
    master: OwnedFd,
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Receiver<TerminalSize>>,
) -> Result<i32, RuntimeError> {
    let master = std::fs::File::from(master);
    let mut reader = master.try_clone().map_err(failed)?;
    let resize_fd = master.try_clone().map_err(failed)?;
    let output = std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        // EIO once every slave side has closed: the process and its children ended.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(tx) = &stdout
                && tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err()
            {
                break;
            }
        }
    });
    if let Some(mut rx) = stdin {
        let mut writer = master;
        std::thread::spawn(move || {
            while let Some(data) = rx.blocking_recv() {
                if writer.write_all(&data).is_err() {
                    break;
                }
            }
        });
    }
    let resizer = resize.map(|mut rx| {
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let _ = set_window_size(resize_fd.as_raw_fd(), size.height, size.width);
            }
        })
    });
    // The process writes to the terminal: what comes on the exec command's own stderr is
    // the runtime's, such as a program it could not start after handing the terminal over.
    let runtime_said = exec.child().stderr.take().map(|mut stderr| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        })
    });
    let status = exec.child().wait().await.map_err(failed)?;
    let _ = tokio::task::spawn_blocking(move || output.join()).await;
    if let Some(task) = resizer {
        task.abort();
    }
    if let Some(task) = runtime_said
        && !status.success()
        && let Ok(Ok(text)) = tokio::time::timeout(RUNTIME_ERROR_WAIT, task).await
        && !text.trim().is_empty()
    {
        return Err(failed(format!(
            "the runtime could not run the process: {}",
            text.trim()
        )));
    }
    Ok(exit_code(status))
}

/// How long the runtime's error output may take to end after its exec command did.
const RUNTIME_ERROR_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// An attach session over the monitor's socket, until the container's output ends or the
/// client leaves.
pub async fn attach(
    stream: std::os::unix::net::UnixStream,
    io: ProcessIo,
) -> Result<(), RuntimeError> {
    stream.set_nonblocking(true).map_err(failed)?;
    let stream = tokio::net::UnixStream::from_std(stream).map_err(failed)?;
    let (mut read_half, mut write_half) = stream.into_split();
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        ..
    } = io;
    let input = async move {
        let mut stdin = stdin;
        let mut resize = resize;
        loop {
            let frame = tokio::select! {
                data = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match data {
                    Some(data) => AttachInput::Stdin(&data).encode(),
                    None => {
                        stdin = None;
                        AttachInput::CloseStdin.encode()
                    }
                },
                size = async { resize.as_mut()?.recv().await }, if resize.is_some() => match size {
                    Some(size) => AttachInput::Resize {
                        rows: size.height,
                        cols: size.width,
                    }
                    .encode(),
                    None => {
                        resize = None;
                        continue;
                    }
                },
                // Dropping the write half would shut the socket down for writing, which
                // the monitor takes for a client that left: output would stop coming.
                else => return std::future::pending().await,
            };
            if write_half.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let output = async move {
        let mut frames = AttachOutput::default();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match read_half.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for (stream, data) in frames.push(&chunk[..n]) {
                let to = match stream {
                    OutputStream::Stderr => stderr.as_ref().or(stdout.as_ref()),
                    OutputStream::Stdout => stdout.as_ref(),
                };
                if let Some(tx) = to
                    && tx.send(Bytes::from(data)).await.is_err()
                {
                    return;
                }
            }
        }
    };
    until_output_ends(input, output).await;
    Ok(())
}
