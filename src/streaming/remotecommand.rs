//! Remote command (exec and attach) sessions: which streams a protocol version carries,
//! how the exit status is reported, and the run of one session over SPDY or WebSocket.

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::cache::Request;
use super::runtime::{ProcessIo, RuntimeError, StreamingRuntime, TerminalSize};
use super::sink::Sink;
use super::spdy::{self, SpdyStream};
use super::websocket::WsConn;

/// SPDY subprotocols, most preferred first.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// WebSocket subprotocols, most preferred first.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// How long a SPDY client has to open its streams after the upgrade.
const STREAM_CREATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn from_protocol(protocol: &str) -> Option<Version> {
        Some(match protocol {
            "channel.k8s.io" | "" => Version::V1,
            "v2.channel.k8s.io" => Version::V2,
            "v3.channel.k8s.io" => Version::V3,
            "v4.channel.k8s.io" => Version::V4,
            "v5.channel.k8s.io" => Version::V5,
            _ => return None,
        })
    }

    fn resizes(self) -> bool {
        self >= Version::V3
    }

    /// The bytes written on the error stream at the end; None writes nothing.
    fn status(self, outcome: &Result<i32, RuntimeError>) -> Option<Vec<u8>> {
        if self >= Version::V4 {
            let status = match outcome {
                Ok(0) => json!({"metadata": {}, "status": "Success"}),
                Ok(code) => json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("command terminated with non-zero exit code: exit status {code}"),
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
                }),
                Err(e) => {
                    return Some(self.failure(
                        &format!("error executing command in container: {e}"),
                        &e.to_string(),
                    ));
                }
            };
            return Some(status.to_string().into_bytes());
        }
        match outcome {
            Ok(0) => None,
            Ok(code) => Some(
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes(),
            ),
            Err(e) => Some(self.failure(
                &format!("error executing command in container: {e}"),
                &e.to_string(),
            )),
        }
    }

    /// The error stream's bytes for a session that failed before or instead of running.
    fn failure(self, message: &str, cause: &str) -> Vec<u8> {
        if self < Version::V4 {
            return message.as_bytes().to_vec();
        }
        json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": cause}]},
            "code": 500,
        })
        .to_string()
        .into_bytes()
    }
}

/// The streams a request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    pub fn of(request: &Request) -> Wanted {
        match *request {
            Request::Exec {
                stdin,
                stdout,
                stderr,
                tty,
                ..
            }
            | Request::Attach {
                stdin,
                stdout,
                stderr,
                tty,
                ..
            } => Wanted {
                stdin,
                stdout,
                stderr,
                tty,
            },
            Request::PortForward { .. } => Wanted {
                stdin: false,
                stdout: false,
                stderr: false,
                tty: false,
            },
        }
    }
}

impl Wanted {
    /// The SPDY streams a client opens for this request, the error stream first.
    fn stream_names(self, version: Version) -> Vec<&'static str> {
        let mut names = vec!["error"];
        for (on, name) in [
            (self.stdin, "stdin"),
            (self.stdout, "stdout"),
            (self.stderr, "stderr"),
            (self.tty && version.resizes(), "resize"),
        ] {
            if on {
                names.push(name);
            }
        }
        names
    }
}

/// The transport-independent half of a session.
#[derive(Default)]
struct Endpoints {
    stdin: Option<mpsc::Receiver<Bytes>>,
    resize: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<Sink>,
    stderr: Option<Sink>,
    error: Option<Sink>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "timed out waiting for the client to create its streams: the request has {wanted}, the client opened {opened}"
    )]
    StreamTimeout { wanted: String, opened: String },
    #[error("the client left before creating its streams")]
    ClientGone,
    #[error("the client opened a stream of unknown type {0:?}")]
    UnknownStream(String),
}

/// Serves one remote command session over an upgraded SPDY connection.
pub async fn serve_spdy(
    runtime: &dyn StreamingRuntime,
    request: Request,
    version: Version,
    conn: spdy::Connection,
) -> Result<(), SessionError> {
    serve_spdy_within(runtime, request, version, conn, STREAM_CREATION_TIMEOUT).await
}

async fn serve_spdy_within(
    runtime: &dyn StreamingRuntime,
    request: Request,
    version: Version,
    mut conn: spdy::Connection,
    creation_timeout: std::time::Duration,
) -> Result<(), SessionError> {
    let wanted = Wanted::of(&request);
    let expected = wanted.stream_names(version).len();
    let mut ends = Endpoints::default();
    let mut opened: Vec<String> = Vec::new();
    let deadline = tokio::time::sleep(creation_timeout);
    tokio::pin!(deadline);
    while opened.len() < expected {
        let stream: SpdyStream = tokio::select! {
            s = conn.accept() => s.ok_or(SessionError::ClientGone)?,
            _ = &mut deadline => {
                let error = SessionError::StreamTimeout {
                    wanted: wanted.stream_names(version).join(", "),
                    opened: if opened.is_empty() { "none".to_string() } else { opened.join(", ") },
                };
                // A client that asked for fewer streams than its request names would
                // otherwise see its session end without a word.
                if let Some(sink) = &ends.error {
                    let message = error.to_string();
                    let _ = sink.write(Bytes::from(version.failure(&message, &message))).await;
                    sink.finish().await;
                }
                conn.shutdown().await;
                return Err(error);
            }
        };
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        let SpdyStream {
            incoming, writer, ..
        } = stream;
        match kind.as_str() {
            "error" => ends.error = Some(Sink::Spdy(writer.clone())),
            "stdin" => ends.stdin = Some(incoming),
            "stdout" => ends.stdout = Some(Sink::Spdy(writer.clone())),
            "stderr" => ends.stderr = Some(Sink::Spdy(writer.clone())),
            "resize" => ends.resize = Some(incoming),
            _ => {
                let _ = writer.reset(spdy::frame::RST_PROTOCOL_ERROR).await;
                conn.shutdown().await;
                return Err(SessionError::UnknownStream(kind));
            }
        }
        let _ = writer.reply().await;
        opened.push(kind);
    }
    let closed = conn.closed();
    run(runtime, request, version, ends, closed).await;
    conn.shutdown().await;
    Ok(())
}

/// Serves one remote command session over an upgraded WebSocket.
pub async fn serve_websocket(
    runtime: &dyn StreamingRuntime,
    request: Request,
    version: Version,
    io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
) {
    let wanted = Wanted::of(&request);
    let mut inputs: Vec<Option<mpsc::Sender<Bytes>>> = vec![None, None, None, None, None];
    let mut ends = Endpoints::default();
    if wanted.stdin {
        let (tx, rx) = mpsc::channel(32);
        inputs[usize::from(STDIN)] = Some(tx);
        ends.stdin = Some(rx);
    }
    if wanted.tty && version.resizes() {
        let (tx, rx) = mpsc::channel(8);
        inputs[usize::from(RESIZE)] = Some(tx);
        ends.resize = Some(rx);
    }
    let conn = WsConn::open(io, inputs, version >= Version::V5).await;
    if wanted.stdout {
        ends.stdout = Some(Sink::Ws(conn.writer(STDOUT)));
    }
    if wanted.stderr {
        ends.stderr = Some(Sink::Ws(conn.writer(STDERR)));
    }
    ends.error = Some(Sink::Ws(conn.writer(ERROR)));
    // An empty message on the lowest output channel tells the client the session is ready.
    let ready = ends
        .stdout
        .clone()
        .or_else(|| ends.stderr.clone())
        .or_else(|| ends.error.clone());
    if let Some(ready) = ready {
        let _ = ready.write(Bytes::new()).await;
    }
    let closed = conn.closed();
    run(runtime, request, version, ends, closed).await;
    conn.shutdown().await;
}

/// Runs the command (or attach) with the endpoints, reports the status, and returns when
/// everything was handed to the transport or the client left.
async fn run(
    runtime: &dyn StreamingRuntime,
    request: Request,
    version: Version,
    ends: Endpoints,
    closed: impl std::future::Future<Output = ()> + Send,
) {
    let mut pumps = JoinSet::new();
    let mut output = |sink: Option<Sink>| {
        sink.map(|sink| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            pumps.spawn(async move {
                while let Some(data) = rx.recv().await {
                    if sink.write(data).await.is_err() {
                        return;
                    }
                }
                sink.finish().await;
            });
            tx
        })
    };
    let stdout = output(ends.stdout);
    let stderr = output(ends.stderr);
    // Resize events come until the client leaves; they do not hold the session open.
    let mut resizer = JoinSet::new();
    let resize = ends.resize.map(|mut raw| {
        let (tx, rx) = mpsc::channel::<TerminalSize>(8);
        resizer.spawn(async move {
            let mut pending = Vec::new();
            while let Some(data) = raw.recv().await {
                pending.extend_from_slice(&data);
                let mut stream =
                    serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
                let mut consumed = 0;
                loop {
                    match stream.next() {
                        Some(Ok(size)) => {
                            consumed = stream.byte_offset();
                            if tx.send(size).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) if e.is_eof() => break,
                        Some(Err(e)) => {
                            tracing::debug!("bad resize event: {e}");
                            return;
                        }
                        None => {
                            consumed = stream.byte_offset();
                            break;
                        }
                    }
                }
                pending.drain(..consumed);
            }
        });
        rx
    });
    let wanted = Wanted::of(&request);
    let io = ProcessIo {
        stdin: ends.stdin,
        stdout,
        stderr,
        resize,
        tty: wanted.tty,
    };
    let work = async {
        match request {
            Request::Exec {
                container_id, cmd, ..
            } => runtime.exec(&container_id, cmd, io).await,
            Request::Attach { container_id, .. } => {
                runtime.attach(&container_id, io).await.map(|()| 0)
            }
            Request::PortForward { .. } => Err(RuntimeError::Failed(
                "a port-forward token cannot run a command".into(),
            )),
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = closed => {
            tracing::debug!("streaming client left; the session is cancelled");
            return;
        }
    };
    drop(resizer);
    // All output is handed over before the status, as clients read them concurrently.
    while pumps.join_next().await.is_some() {}
    if let Some(error) = ends.error {
        if let Some(status) = version.status(&outcome) {
            let _ = error.write(Bytes::from(status)).await;
        }
        error.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::runtime::BoxFuture;
    use super::*;

    fn status(v: Version, o: Result<i32, RuntimeError>) -> serde_json::Value {
        serde_json::from_slice(&v.status(&o).unwrap()).unwrap()
    }

    #[test]
    fn v4_status_carries_the_exit_code() {
        let s = status(Version::V4, Ok(137));
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "137");
        assert_eq!(status(Version::V5, Ok(0))["status"], "Success");
    }

    #[test]
    fn older_versions_report_only_failures_as_text() {
        assert_eq!(Version::V2.status(&Ok(0)), None);
        let text = String::from_utf8(Version::V3.status(&Ok(1)).unwrap()).unwrap();
        assert!(text.contains("non-zero exit code"));
    }

    /// A runtime without containers: the session below ends before it would ask one.
    struct NoContainers;

    impl StreamingRuntime for NoContainers {
        fn check_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::NotFound(id.to_string())) })
        }

        fn check_pod<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::PodNotFound(id.to_string())) })
        }

        fn exec<'a>(
            &'a self,
            id: &'a str,
            _cmd: Vec<String>,
            _io: ProcessIo,
        ) -> BoxFuture<'a, Result<i32, RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::NotFound(id.to_string())) })
        }

        fn attach<'a>(
            &'a self,
            id: &'a str,
            _io: ProcessIo,
        ) -> BoxFuture<'a, Result<(), RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::NotFound(id.to_string())) })
        }

        fn port_forward_netns<'a>(
            &'a self,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<std::path::PathBuf>, RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::PodNotFound(id.to_string())) })
        }
    }

    #[tokio::test]
    async fn a_client_short_of_a_requested_stream_is_told_on_the_error_stream() {
        use super::super::spdy::frame::Frame;
        use super::super::spdy::peer::Peer;
        let (mut peer, conn) = Peer::pair();
        let request = Request::Attach {
            container_id: "c".into(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let session = tokio::spawn(async move {
            let runtime = NoContainers;
            let timeout = std::time::Duration::from_millis(300);
            serve_spdy_within(&runtime, request, Version::V4, conn, timeout).await
        });
        // What a client sends that forgot the stderr the request asked for.
        peer.syn_stream(1, 0, &[("streamtype", "error")]).await;
        peer.syn_stream(3, 0, &[("streamtype", "stdin")]).await;
        peer.syn_stream(5, 0, &[("streamtype", "stdout")]).await;
        let mut status = Vec::new();
        loop {
            match peer.next_significant().await {
                Frame::SynReply { .. } => {}
                Frame::Data {
                    stream_id: 1,
                    fin,
                    data,
                } => {
                    status.extend_from_slice(&data);
                    if fin {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
        assert_eq!(status["status"], "Failure");
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("the request has error, stdin, stdout, stderr")
                && message.contains("the client opened error, stdin, stdout"),
            "{message}"
        );
        assert!(matches!(
            session.await.unwrap(),
            Err(SessionError::StreamTimeout { .. })
        ));
    }

    #[test]
    fn protocols_map_to_versions() {
        for p in SPDY_PROTOCOLS.iter().chain(WEBSOCKET_PROTOCOLS) {
            assert!(Version::from_protocol(p).is_some(), "{p}");
        }
        assert_eq!(Version::from_protocol("v6.channel.k8s.io"), None);
        assert!(Version::V3.resizes() && !Version::V2.resizes());
    }
}
