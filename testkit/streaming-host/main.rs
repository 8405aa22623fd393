//! `criox-streaming-host`: the daemon's streaming server (SPDY and WebSocket exec, attach
//! and port forwarding) over host processes instead of containers, so that the streaming
//! tests exercise the protocols end to end against real processes, pipes, terminals and
//! network namespaces, independently of the container runtime. It is a test tool, not part
//! of `criox`: cargo builds it only for the tests (feature `test-streaming-host`, which the
//! test kit turns on).
//!
//! It takes commands as JSON lines on stdin and answers each with one JSON line on stdout;
//! the first line it writes is `{"base_url": ...}`. It ends when stdin closes.

mod runtime;

use std::sync::Arc;

use clap::Parser;
use criox::streaming::{Request, StreamingError, StreamingServer};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use runtime::{HOST, HostRuntime};

#[derive(Debug, Parser)]
#[command(name = "criox-streaming-host")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// How long a URL stays valid, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    token_ttl_ms: u64,
}

fn main() {
    let args = Args::parse();
    let ttl = std::time::Duration::from_millis(args.token_ttl_ms);
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(serve(&args.address, args.port, ttl))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = served {
        eprintln!("criox-streaming-host: {e}");
        std::process::exit(1);
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Command {
    Exec {
        #[serde(default = "host")]
        id: String,
        cmd: Vec<String>,
        #[serde(flatten)]
        streams: Streams,
    },
    Spawn {
        id: String,
        cmd: Vec<String>,
    },
    Attach {
        id: String,
        #[serde(flatten)]
        streams: Streams,
    },
    Portforward {
        pod: String,
        #[serde(default)]
        ports: Vec<u16>,
    },
    Stats,
}

fn host() -> String {
    HOST.to_string()
}

#[derive(Debug, Deserialize)]
struct Streams {
    #[serde(default)]
    stdin: bool,
    #[serde(default)]
    stdout: bool,
    #[serde(default)]
    stderr: bool,
    #[serde(default)]
    tty: bool,
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Serves host processes on `address:port` and answers JSON-line commands from stdin until
/// stdin closes. The first line written is `{"base_url": ...}`.
async fn serve(
    address: &str,
    port: u16,
    token_ttl: std::time::Duration,
) -> Result<(), StreamingError> {
    let runtime = Arc::new(HostRuntime::default());
    let server = StreamingServer::start_with_ttl(address, port, runtime.clone(), token_ttl).await?;
    let mut stdout = tokio::io::stdout();
    let mut say = async |value: serde_json::Value| {
        let mut line = value.to_string();
        line.push('\n');
        let _ = stdout.write_all(line.as_bytes()).await;
        let _ = stdout.flush().await;
    };
    say(json!({"base_url": server.base_url()})).await;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let command: Command = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                say(json!({"error": format!("bad command: {e}")})).await;
                continue;
            }
        };
        let request = match command {
            Command::Exec { id, cmd, streams } => Request::Exec {
                container_id: id,
                cmd,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
                tty: streams.tty,
            },
            Command::Attach { id, streams } => Request::Attach {
                container_id: id,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
                tty: streams.tty,
            },
            Command::Portforward { pod, ports } => Request::PortForward { pod_id: pod, ports },
            Command::Spawn { id, cmd } => {
                match runtime.spawn(&id, &cmd) {
                    Ok(()) => say(json!({"ok": true})).await,
                    Err(e) => say(json!({"error": e.to_string()})).await,
                }
                continue;
            }
            Command::Stats => {
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                say(json!({"tasks": tasks, "fds": open_fds()})).await;
                continue;
            }
        };
        match server.url_for(request).await {
            Ok(url) => say(json!({"url": url})).await,
            Err(e) => say(json!({"error": e.to_string()})).await,
        }
    }
    Ok(())
}
