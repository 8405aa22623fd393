//! criox: a Kubernetes CRI runtime in one binary.
//!
//! The runc command line (`criox oci`, or the binary invoked as `criox-runc`) and the
//! per-container monitor (`criox monitor`) are dispatched before anything else happens:
//! both must stay single-threaded, so no async runtime may be started for them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use criox::config::{self, Config, Overrides};
use criox::{ctl, daemon, pod_infra, service_manager};

#[derive(Debug, Parser)]
#[command(
    name = "criox",
    version,
    about = "A Kubernetes CRI runtime in one static binary"
)]
struct Cli {
    #[command(flatten)]
    daemon: DaemonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args, Clone)]
struct DaemonArgs {
    /// Configuration file; drop-ins are read from criox.conf.d/ beside it.
    #[arg(long, global = true, default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Persistent data directory.
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Volatile state directory.
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// CRI socket path (default <state>/criox.sock).
    #[arg(long, global = true)]
    listen: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the CRI (the default).
    Serve,
    /// Print the effective configuration, every key commented.
    Config,
    /// A CRI client: talk to criox or any other CRI endpoint.
    Ctl(ctl::CtlArgs),
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "criox-runc" {
        std::process::exit(criox_runtime::oci_main(args));
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("oci") => std::process::exit(criox_runtime::oci_main(args[1..].to_vec())),
        Some("monitor") => std::process::exit(criox_runtime::monitor_main(args[1..].to_vec())),
        Some(criox_runtime::EXEC_RELAY_SUBCOMMAND) => {
            std::process::exit(criox_runtime::exec_relay_main(args[1..].to_vec()))
        }
        Some(pod_infra::SUBCOMMAND) => std::process::exit(pod_infra::main(args[1..].to_vec())),
        _ => {}
    }
    cli_main();
}

/// The daemon, `ctl` and `config`. Kept out of `main` so that its frame (the client's and
/// the daemon's futures, tens of KiB) is not on the stack of the processes dispatched
/// above: every container's monitor and every pod's infra process keep main's frame
/// resident for their whole life.
#[inline(never)]
fn cli_main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Ctl(ctl_args)) => run_async(ctl::run(ctl_args)),
        Some(Command::Config) => load_config(&cli.daemon).map(|c| print!("{}", c.render())),
        Some(Command::Serve) | None => serve(&cli.daemon),
    };
    if let Err(e) = code {
        eprintln!("criox: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line. Most of our errors already quote their cause in
/// their own message; a cause is added only where the text so far does not hold it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn load_config(args: &DaemonArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        root: args.root.clone(),
        state: args.state.clone(),
        listen: args.listen.clone(),
        log_level: args.log_level.clone(),
    };
    let explicit = args.config != Path::new(config::DEFAULT_CONFIG_PATH);
    Ok(Config::load(&args.config, explicit, &overrides)?)
}

fn serve(args: &DaemonArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .map_err(|e| anyhow::anyhow!("invalid log_level {:?}: {e}", config.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The journal stamps every line itself.
    if service_manager::stderr_is_journal() {
        logs.without_time().init();
    } else {
        logs.init();
    }
    run_async(async move { Ok(daemon::run(config).await?) })
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct Open {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn causes_already_quoted_are_not_repeated_and_others_are_added() {
        let open = Open {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        let e = anyhow::Error::from(open).context("starting");
        assert_eq!(
            one_line(&e),
            "starting: cannot open /x: No such file or directory (os error 2)"
        );
    }
}
