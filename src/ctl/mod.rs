//! `criox ctl`: a CRI client in the same binary, for tests, benchmarks and operators. It
//! speaks to any CRI endpoint (criox, containerd, CRI-O) and follows crictl's command names.

mod containers;
mod images;
mod monitoring;
mod pods;
mod runtime;
mod streaming;
mod table;

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
    /// Pull an image.
    Pull(images::PullArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Show an image's status and config as JSON.
    Inspecti { image: String },
    /// Remove images (a tag, an id or a digest reference).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the image filesystem's usage as JSON.
    Imagefsinfo,
    /// Run a pod sandbox from a crictl-style JSON config; prints its id.
    Runp(pods::RunpArgs),
    /// Stop pod sandboxes.
    Stopp { ids: Vec<String> },
    /// Remove pod sandboxes.
    Rmp { ids: Vec<String> },
    /// List pod sandboxes.
    Pods(pods::PodsArgs),
    /// Print the status of pod sandboxes, verbose, as JSON.
    Inspectp {
        ids: Vec<String>,
        /// Ask N times per pod and print each call's microseconds instead of the status.
        #[arg(long)]
        repeat: Option<u32>,
    },
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
    /// Show containers' CPU, memory and writable layer use.
    Stats(monitoring::StatsArgs),
    /// Show pods' CPU, memory and network use.
    Statsp(monitoring::StatspArgs),
    /// Print the descriptors of the runtime's pod and container metrics as JSON.
    Metricdescs,
    /// Print pods' and their containers' metrics as JSON (all pods, or those given).
    Metricsp { ids: Vec<String> },
    /// Print container events as they happen (one JSON object a line).
    Events,
    /// Run a command in a running container.
    Exec(streaming::ExecArgs),
    /// Attach to a running container's main process.
    Attach(streaming::AttachArgs),
    /// Forward local ports to ports in a pod's network namespace.
    PortForward(streaming::PortForwardArgs),
}

pub async fn run(args: CtlArgs) -> Result<()> {
    // A session on a given streaming URL needs no CRI connection.
    match args.command {
        CtlCommand::Exec(a) if a.url.is_some() => return streaming::exec(None, a).await,
        CtlCommand::Attach(a) if a.url.is_some() => return streaming::attach(None, a).await,
        CtlCommand::PortForward(a) if a.url.is_some() => {
            return streaming::port_forward(None, a).await;
        }
        command => return run_connected(&args.endpoint, args.timeout, command).await,
    }
}

async fn run_connected(endpoint: &str, timeout: u64, command: CtlCommand) -> Result<()> {
    let channel = connect(endpoint, Duration::from_secs(timeout)).await?;
    // crictl's and the kubelet's receive limit, rather than tonic's 4 MiB.
    const MAX_MESSAGE: usize = 16 << 20;
    let mut rt = RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
    let mut im = ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    match command {
        CtlCommand::Version => runtime::version(&mut rt).await,
        CtlCommand::Info => runtime::info(&mut rt).await,
        CtlCommand::Pull(a) => images::pull(&mut im, a).await,
        CtlCommand::Images(a) => images::images(&mut im, a).await,
        CtlCommand::Inspecti { image } => images::inspect(&mut im, &image).await,
        CtlCommand::Rmi { images } => images::remove(&mut im, &images).await,
        CtlCommand::Imagefsinfo => images::fs_info(&mut im).await,
        CtlCommand::Runp(a) => pods::runp(&mut rt, a).await,
        CtlCommand::Stopp { ids } => pods::stopp(&mut rt, ids).await,
        CtlCommand::Rmp { ids } => pods::rmp(&mut rt, ids).await,
        CtlCommand::Pods(a) => pods::pods(&mut rt, a).await,
        CtlCommand::Inspectp { ids, repeat } => pods::inspectp(&mut rt, ids, repeat).await,
        CtlCommand::Create(a) => containers::create(&mut rt, a).await,
        CtlCommand::Start { ids } => containers::start(&mut rt, ids).await,
        CtlCommand::Stop(a) => containers::stop(&mut rt, a).await,
        CtlCommand::Rm { ids } => containers::remove(&mut rt, ids).await,
        CtlCommand::Ps(a) => containers::ps(&mut rt, a).await,
        CtlCommand::Inspect { id } => containers::inspect(&mut rt, id).await,
        CtlCommand::Logs(a) => containers::logs(&mut rt, a).await,
        CtlCommand::Stats(a) => monitoring::stats(&mut rt, a).await,
        CtlCommand::Statsp(a) => monitoring::statsp(&mut rt, a).await,
        CtlCommand::Metricdescs => monitoring::metricdescs(&mut rt).await,
        CtlCommand::Metricsp { ids } => monitoring::metricsp(&mut rt, ids).await,
        CtlCommand::Events => monitoring::events(&mut rt).await,
        CtlCommand::Exec(a) if a.url_only || a.repeat.is_some() => {
            streaming::exec_requests(&mut rt, a).await
        }
        CtlCommand::Exec(a) if a.sync => {
            let code = containers::exec_sync(&mut rt, a.container, a.cmd, a.timeout).await?;
            // The command's own exit status becomes ctl's, as crictl exec does.
            std::process::exit(code);
        }
        CtlCommand::Exec(a) => streaming::exec(Some(&mut rt), a).await,
        CtlCommand::Attach(a) => streaming::attach(Some(&mut rt), a).await,
        CtlCommand::PortForward(a) => streaming::port_forward(Some(&mut rt), a).await,
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
