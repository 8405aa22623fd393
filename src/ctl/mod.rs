//! `criox ctl`: a CRI client in the same binary, for tests, benchmarks and operators. It
//! speaks to any CRI endpoint (criox, containerd, CRI-O) and follows crictl's command names.

mod containers;
mod runtime;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use criox_proto::v1::image_service_client::ImageServiceClient;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// CRI endpoint: a unix socket path, with or without `unix://`.
    #[arg(
        long,
        short = 'r',
        env = "CONTAINER_RUNTIME_ENDPOINT",
        default_value = "unix:///run/criox/criox.sock"
    )]
    pub endpoint: String,
    /// Time limit for each call, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print the runtime's name and versions.
    Version,
    /// Print the runtime's status conditions and configuration as JSON.
    Info,
    /// Create a container in a pod: POD-ID CONTAINER-CONFIG.json POD-CONFIG.json
    Create(containers::CreateArgs),
    /// Start created containers.
    Start { ids: Vec<String> },
    /// Stop running containers.
    Stop(containers::StopArgs),
    /// Remove containers (stopping them first).
    Rm { ids: Vec<String> },
    /// List containers.
    Ps(containers::PsArgs),
    /// Print a container's status as JSON.
    Inspect { id: String },
    /// Print a container's log.
    Logs(containers::LogsArgs),
    /// Run a command in a running container and wait for it (ExecSync).
    Exec(containers::ExecArgs),
}

pub async fn run(args: CtlArgs) -> Result<()> {
    let channel = connect(&args.endpoint, Duration::from_secs(args.timeout)).await?;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let _images = ImageServiceClient::new(channel);
    match args.command {
        CtlCommand::Version => runtime::version(&mut rt).await,
        CtlCommand::Info => runtime::info(&mut rt).await,
        CtlCommand::Create(a) => containers::create(&mut rt, a).await,
        CtlCommand::Start { ids } => containers::start(&mut rt, ids).await,
        CtlCommand::Stop(a) => containers::stop(&mut rt, a).await,
        CtlCommand::Rm { ids } => containers::remove(&mut rt, ids).await,
        CtlCommand::Ps(a) => containers::ps(&mut rt, a).await,
        CtlCommand::Inspect { id } => containers::inspect(&mut rt, id).await,
        CtlCommand::Logs(a) => containers::logs(&mut rt, a).await,
        CtlCommand::Exec(a) => {
            let code = containers::exec(&mut rt, a).await?;
            // The command's own exit status becomes ctl's, as crictl exec does.
            std::process::exit(code);
        }
    }
}

/// A channel over the unix socket; the URI is a placeholder that tonic requires.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Channel> {
    let path = PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint));
    let socket = path.clone();
    Endpoint::try_from("http://[::1]:50051")?
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .with_context(|| format!("cannot connect to the CRI endpoint {}", path.display()))
}
