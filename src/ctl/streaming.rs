//! `ctl exec`, `ctl attach` and `ctl port-forward`: ask the runtime for a streaming URL and
//! speak the WebSocket protocols to it (`v5.channel.k8s.io` for commands,
//! `v4.channel.k8s.io` for port forwarding), as `kubectl` does through the API server.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::{AttachRequest, ExecRequest, ExecSyncRequest, PortForwardRequest};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tonic::transport::Channel;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run the command through ExecSync: wait for it and print its output.
    #[arg(short = 's', long)]
    pub sync: bool,
    /// With --sync, seconds before the command is killed; 0 waits forever.
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Connect to this streaming URL instead of asking the runtime for one.
    #[arg(long, hide = true)]
    pub url: Option<String>,
    /// Print the streaming URL the runtime answers instead of opening the session, for
    /// clients that speak the streaming protocols themselves.
    #[arg(long, hide = true, conflicts_with_all = ["sync", "url"])]
    pub url_only: bool,
    /// Benchmarks: send the ExecSync (--sync) or Exec (--url-only) request N times over one
    /// connection and print each call's latency in microseconds, followed by the URL.
    #[arg(long, hide = true, value_name = "N")]
    pub repeat: Option<u32>,
    pub container: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The container has a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long, hide = true)]
    pub url: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// Connect to this streaming URL (one forwarded connection) instead of asking the runtime.
    #[arg(long, hide = true)]
    pub url: Option<String>,
    /// Print the streaming URL for the remote ports instead of listening locally.
    #[arg(long, hide = true, conflicts_with = "url")]
    pub url_only: bool,
    pub pod: String,
    /// LOCAL:REMOTE port pairs (or PORT for the same port on both ends).
    #[arg(required = true)]
    pub ports: Vec<String>,
}

/// Restores the local terminal's mode when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into a valid pointer.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

fn ws_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

/// The message of the server's refusal: the `message` of a Kubernetes Status, or the text.
fn refusal(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn open(url: &str, protocols: &str) -> Result<(Socket, String)> {
    let mut request = ws_url(url)
        .into_client_request()
        .with_context(|| format!("bad streaming URL {url}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse()?);
    let (socket, response) =
        tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp) => anyhow!(
                    "the streaming server refused the session: {} {}",
                    resp.status(),
                    refusal(resp.body().as_deref().unwrap_or_default())
                ),
                other => anyhow!("cannot connect to {url}: {other}"),
            })?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((socket, protocol))
}

/// The exit code in a v4/v5 status: 0 for Success, the ExitCode cause for NonZeroExitCode.
fn exit_code(status: &[u8]) -> Result<i32> {
    if status.is_empty() {
        return Ok(0);
    }
    let value: serde_json::Value = serde_json::from_slice(status)
        .with_context(|| format!("bad status {:?}", String::from_utf8_lossy(status)))?;
    if value["status"] == "Success" {
        return Ok(0);
    }
    if value["reason"] == "NonZeroExitCode"
        && let Some(causes) = value["details"]["causes"].as_array()
        && let Some(code) = causes
            .iter()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
    {
        return Ok(code);
    }
    bail!(
        "{}",
        value["message"].as_str().unwrap_or("the command failed")
    )
}

/// Runs a remote command session on `url`; returns the remote exit code.
async fn session(url: &str, stdin: bool, tty: bool) -> Result<i32> {
    let (socket, protocol) = open(url, "v5.channel.k8s.io,v4.channel.k8s.io").await?;
    let (mut tx, mut rx) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let _raw = (tty && stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()))
        .then(RawTerminal::enter);
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    let resize_json = |(w, h): (u16, u16)| {
        let mut msg = vec![RESIZE];
        msg.extend_from_slice(
            serde_json::json!({"Width": w, "Height": h})
                .to_string()
                .as_bytes(),
        );
        Message::Binary(msg.into())
    };
    let mut side_tasks = Vec::new();
    if tty && let Some(size) = terminal_size() {
        let _ = out_tx.send(resize_json(size)).await;
        let out = out_tx.clone();
        side_tasks.push(tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size()
                    && out.send(resize_json(size)).await.is_err()
                {
                    return;
                }
            }
        }));
    }
    if stdin {
        let out = out_tx.clone();
        let v5 = protocol == "v5.channel.k8s.io";
        side_tasks.push(tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf[1..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf[0] = STDIN;
                        if out
                            .send(Message::Binary(buf[..=n].to_vec().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            if v5 {
                let _ = out.send(Message::Binary(vec![CLOSE, STDIN].into())).await;
            }
        }));
    }
    let mut status = Vec::new();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Binary(data) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            STDOUT => {
                stdout.write_all(payload).await?;
                stdout.flush().await?;
            }
            STDERR => {
                stderr.write_all(payload).await?;
                stderr.flush().await?;
            }
            ERROR => status.extend_from_slice(payload),
            _ => {}
        }
    }
    for task in side_tasks {
        task.abort();
    }
    drop(out_tx);
    writer.abort();
    exit_code(&status)
}

fn finish(code: i32) -> Result<()> {
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

type Client = RuntimeServiceClient<Channel>;

/// The runtime to ask for a streaming URL when none was given.
fn asking(rt: Option<&mut Client>) -> Result<&mut Client> {
    rt.ok_or_else(|| anyhow!("no runtime to ask for a streaming URL"))
}

/// The streaming URL the runtime answers for `args`' Exec request.
async fn exec_url(rt: &mut Client, args: &ExecArgs) -> Result<String> {
    if args.cmd.is_empty() {
        bail!("a command to run is required");
    }
    let request = ExecRequest {
        container_id: args.container.clone(),
        cmd: args.cmd.clone(),
        tty: args.tty,
        stdin: args.interactive,
        stdout: true,
        stderr: !args.tty,
    };
    Ok(rt
        .exec(request)
        .await
        .with_context(|| format!("exec in container {}", args.container))?
        .into_inner()
        .url)
}

/// The streaming URL the runtime answers for forwarding `ports` of `pod`.
async fn port_forward_url(rt: &mut Client, pod: &str, ports: Vec<i32>) -> Result<String> {
    let request = PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port: ports,
    };
    Ok(rt
        .port_forward(request)
        .await
        .with_context(|| format!("port forward to pod {pod}"))?
        .into_inner()
        .url)
}

pub async fn exec(rt: Option<&mut Client>, mut args: ExecArgs) -> Result<()> {
    let url = match args.url.take() {
        Some(url) => url,
        None => exec_url(asking(rt)?, &args).await?,
    };
    finish(session(&url, args.interactive, args.tty).await?)
}

pub async fn attach(rt: Option<&mut Client>, args: AttachArgs) -> Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => {
            asking(rt)?
                .attach(AttachRequest {
                    container_id: args.container.clone(),
                    stdin: args.interactive,
                    tty: args.tty,
                    stdout: true,
                    stderr: !args.tty,
                })
                .await
                .with_context(|| format!("attach to container {}", args.container))?
                .into_inner()
                .url
        }
    };
    finish(session(&url, args.interactive, args.tty).await?)
}

/// `exec --url-only` and `exec --repeat N`: the RPC alone, timed, without a session.
pub async fn exec_requests(rt: &mut Client, args: ExecArgs) -> Result<()> {
    if args.cmd.is_empty() {
        bail!("a command to run is required");
    }
    if !args.sync && !args.url_only {
        bail!("--repeat needs --sync or --url-only");
    }
    let mut stdout = std::io::stdout().lock();
    for _ in 0..args.repeat.unwrap_or(1) {
        let started = std::time::Instant::now();
        let url = if args.sync {
            let response = rt
                .exec_sync(ExecSyncRequest {
                    container_id: args.container.clone(),
                    cmd: args.cmd.clone(),
                    timeout: args.timeout,
                })
                .await
                .with_context(|| format!("exec in container {}", args.container))?
                .into_inner();
            if response.exit_code != 0 {
                bail!(
                    "{:?} exited with {}: {}",
                    args.cmd,
                    response.exit_code,
                    String::from_utf8_lossy(&response.stderr).trim()
                );
            }
            None
        } else {
            Some(exec_url(rt, &args).await?)
        };
        let micros = started.elapsed().as_micros();
        use std::io::Write as _;
        match (args.repeat.is_some(), url) {
            (true, Some(url)) => writeln!(stdout, "{micros} {url}")?,
            (true, None) => writeln!(stdout, "{micros}")?,
            (false, Some(url)) => writeln!(stdout, "{url}")?,
            (false, None) => {}
        }
    }
    Ok(())
}

fn parse_pair(pair: &str) -> Result<(u16, u16)> {
    let (local, remote) = pair.split_once(':').unwrap_or((pair, pair));
    let parse = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("invalid port {p:?} in {pair:?}"))
    };
    let remote = parse(remote)?;
    if remote == 0 {
        bail!("the remote port in {pair:?} must not be 0");
    }
    Ok((parse(local)?, remote))
}

/// Forwards one local connection over a WebSocket session for `remote`.
async fn forward_one(url: &str, remote: u16, mut local: TcpStream) -> Result<()> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let (socket, _) = open(&format!("{url}{sep}port={remote}"), "v4.channel.k8s.io").await?;
    let (mut tx, mut rx) = socket.split();
    let (mut local_rd, mut local_wr) = local.split();
    let upstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match local_rd.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf[0] = 0;
                    if tx
                        .send(Message::Binary(buf[..=n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        std::future::pending::<()>().await
    };
    let downstream = async {
        let mut opened = [false, false];
        let mut error = Vec::new();
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(data) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Some((&channel, mut payload)) = data.split_first() else {
                continue;
            };
            let slot = usize::from(channel.min(1));
            if !opened[slot] {
                // Each channel opens with the port number; skip it.
                opened[slot] = true;
                payload = payload.get(2..).unwrap_or_default();
            }
            match channel {
                0 => {
                    if local_wr.write_all(payload).await.is_err() {
                        break;
                    }
                }
                _ => error.extend_from_slice(payload),
            }
        }
        let _ = local_wr.shutdown().await;
        error
    };
    let error = tokio::select! {
        error = downstream => error,
        _ = upstream => Vec::new(),
    };
    if !error.is_empty() {
        bail!("port {remote}: {}", String::from_utf8_lossy(&error));
    }
    Ok(())
}

pub async fn port_forward(rt: Option<&mut Client>, args: PortForwardArgs) -> Result<()> {
    let pairs = args
        .ports
        .iter()
        .map(|p| parse_pair(p))
        .collect::<Result<Vec<_>>>()?;
    if args.url_only {
        let ports = pairs.iter().map(|&(_, remote)| i32::from(remote)).collect();
        println!("{}", port_forward_url(asking(rt)?, &args.pod, ports).await?);
        return Ok(());
    }
    let rt = rt.cloned();
    let mut listeners = Vec::new();
    for (local, remote) in pairs {
        let listener = TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{local}"))?;
        let bound = listener.local_addr()?.port();
        println!("Forwarding from 127.0.0.1:{bound} -> {remote}");
        listeners.push((listener, remote));
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let rt = rt.clone();
        let pod = args.pod.clone();
        let mut fixed_url = args.url.clone();
        tasks.spawn(async move {
            loop {
                let (conn, _) = listener.accept().await?;
                if let Some(url) = fixed_url.take() {
                    // A given URL serves exactly one connection.
                    return forward_one(&url, remote, conn).await;
                }
                let mut rt = rt.clone();
                let url =
                    port_forward_url(asking(rt.as_mut())?, &pod, vec![i32::from(remote)]).await?;
                tokio::spawn(async move {
                    if let Err(e) = forward_one(&url, remote, conn).await {
                        eprintln!("criox ctl port-forward: {e:#}");
                    }
                });
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
