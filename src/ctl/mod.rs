//! `criox ctl`: a CRI client in the same binary, for tests, benchmarks and operators. It
//! speaks to any CRI endpoint (criox, containerd, CRI-O) and follows crictl's command names.

mod images;
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
}

pub async fn run(args: CtlArgs) -> Result<()> {
    let channel = connect(&args.endpoint, Duration::from_secs(args.timeout)).await?;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut im = ImageServiceClient::new(channel);
    match args.command {
        CtlCommand::Version => runtime::version(&mut rt).await,
        CtlCommand::Info => runtime::info(&mut rt).await,
        CtlCommand::Pull(a) => images::pull(&mut im, a).await,
        CtlCommand::Images(a) => images::images(&mut im, a).await,
        CtlCommand::Inspecti { image } => images::inspect(&mut im, &image).await,
        CtlCommand::Rmi { images } => images::remove(&mut im, &images).await,
        CtlCommand::Imagefsinfo => images::fs_info(&mut im).await,
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
