//! Container commands: create, start, stop, rm, ps, inspect, logs, exec.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ListContainersRequest, PodSandboxConfig,
    RemoveContainerRequest, StartContainerRequest, StopContainerRequest,
};
use tonic::transport::Channel;

use super::table::{Table, for_each_id, print_json, short};

type Client = RuntimeServiceClient<Channel>;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The pod sandbox to create the container in.
    pub pod_id: String,
    /// Container config, crictl's JSON format.
    pub container_config: PathBuf,
    /// The pod's config, crictl's JSON format.
    pub pod_config: PathBuf,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before killing.
    #[arg(long, short = 't', default_value_t = 10)]
    pub timeout: i64,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container, not only running ones.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Only containers of this pod.
    #[arg(long, short = 'p')]
    pub pod: Option<String>,
    /// Only containers in this state: created, running, exited, unknown. (`--state`
    /// names the daemon's state directory for every command.)
    #[arg(long = "container-state", short = 's')]
    pub container_state: Option<String>,
    /// Only containers with this label, as key=value (repeatable).
    #[arg(long)]
    pub label: Vec<String>,
    /// Print ids only.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the containers as JSON.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing as the container writes.
    #[arg(long, short = 'f')]
    pub follow: bool,
    pub id: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid config", path.display()))
}

pub async fn create(rt: &mut Client, args: CreateArgs) -> Result<()> {
    let config: ContainerConfig = read_json(&args.container_config)?;
    let sandbox_config: PodSandboxConfig = read_json(&args.pod_config)?;
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: args.pod_id,
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await?
        .into_inner()
        .container_id;
    println!("{id}");
    Ok(())
}

pub async fn start(rt: &mut Client, ids: Vec<String>) -> Result<()> {
    for_each_id(ids, "", async |container_id| {
        let request = StartContainerRequest { container_id };
        rt.start_container(request).await.map(drop)
    })
    .await
}

pub async fn stop(rt: &mut Client, args: StopArgs) -> Result<()> {
    for_each_id(args.ids, "", async |container_id| {
        let request = StopContainerRequest {
            container_id,
            timeout: args.timeout,
        };
        rt.stop_container(request).await.map(drop)
    })
    .await
}

pub async fn remove(rt: &mut Client, ids: Vec<String>) -> Result<()> {
    for_each_id(ids, "", async |container_id| {
        let request = RemoveContainerRequest { container_id };
        rt.remove_container(request).await.map(drop)
    })
    .await
}

fn parse_state(name: &str) -> Result<ContainerState> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "created" => ContainerState::ContainerCreated,
        "running" => ContainerState::ContainerRunning,
        "exited" => ContainerState::ContainerExited,
        "unknown" => ContainerState::ContainerUnknown,
        other => {
            bail!("unknown container state {other:?}: use created, running, exited or unknown")
        }
    })
}

fn parse_labels(labels: &[String]) -> Result<HashMap<String, String>> {
    labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("label {l:?} is not key=value"))
        })
        .collect()
}

pub async fn ps(rt: &mut Client, args: PsArgs) -> Result<()> {
    let state = match (&args.container_state, args.all) {
        (Some(name), _) => Some(parse_state(name)?),
        (None, true) => None,
        (None, false) => Some(ContainerState::ContainerRunning),
    };
    let filter = ContainerFilter {
        id: String::new(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: args.pod.unwrap_or_default(),
        label_selector: parse_labels(&args.label)?,
    };
    let mut containers = rt
        .list_containers(ListContainersRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner()
        .containers;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if args.output.as_deref() == Some("json") {
        return print_json("containers", containers);
    }
    if args.quiet {
        for c in containers {
            println!("{}", c.id);
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
    ]);
    for c in containers {
        let metadata = c.metadata.unwrap_or_default();
        let image = c.image.map(|i| i.image).unwrap_or_default();
        let state = ContainerState::try_from(c.state)
            .map(|s| s.as_str_name().trim_start_matches("CONTAINER_").to_string())
            .unwrap_or_default();
        table.row(vec![
            short(&c.id).to_string(),
            image,
            ago(c.created_at),
            state,
            metadata.name,
            metadata.attempt.to_string(),
            short(&c.pod_sandbox_id).to_string(),
        ]);
    }
    table.print();
    Ok(())
}

fn ago(created_at_ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let secs = (now - created_at_ns).max(0) / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        _ => format!("{} hours ago", secs / 3600),
    }
}

pub async fn inspect(rt: &mut Client, id: String) -> Result<()> {
    let response = rt
        .container_status(ContainerStatusRequest {
            container_id: id,
            verbose: true,
        })
        .await?
        .into_inner();
    // The stop signal by name, as the pod spec writes it (`lifecycle.stopSignal`).
    let stop_signal = response
        .status
        .as_ref()
        .and_then(|s| criox_proto::v1::Signal::try_from(s.stop_signal).ok())
        .map(signal_name);
    let mut out = serde_json::json!({ "status": response.status, "stopSignal": stop_signal });
    for (key, value) in response.info {
        out["info"][key] = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `SIGUSR1`, `SIGRTMIN+3`, `SIGRTMAX-2`, or `RUNTIME_DEFAULT`.
fn signal_name(signal: criox_proto::v1::Signal) -> String {
    let name = signal.as_str_name();
    let name = name.strip_prefix("SIGNAL_").unwrap_or(name);
    name.replace("PLUS", "+").replace("MINUS", "-")
}

/// Prints the container's log as its process wrote it, from the CRI log file on this node.
pub async fn logs(rt: &mut Client, args: LogsArgs) -> Result<()> {
    let status = rt
        .container_status(ContainerStatusRequest {
            container_id: args.id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("the runtime returned no status")?;
    let path = PathBuf::from(&status.log_path);
    if status.log_path.is_empty() {
        bail!("container {} has no log path", args.id);
    }
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut pending = String::new();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let mut chunk = String::new();
        file.read_to_string(&mut chunk)?;
        pending.push_str(&chunk);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(record) = parse_cri_line(line.trim_end_matches('\n')) {
                let out: &mut dyn Write = if record.stream == "stderr" {
                    &mut stderr
                } else {
                    &mut stdout
                };
                out.write_all(record.message.as_bytes())?;
                if record.full {
                    out.write_all(b"\n")?;
                }
            }
        }
        if !args.follow {
            return Ok(());
        }
        stdout.flush()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // After rotation the path names a new file: read that one from its start.
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < file.stream_position()? {
            file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(0))?;
        }
    }
}

struct LogRecord<'a> {
    stream: &'a str,
    full: bool,
    message: &'a str,
}

/// `<timestamp> <stream> <P|F> <message>`
fn parse_cri_line(line: &str) -> Option<LogRecord<'_>> {
    let mut parts = line.splitn(4, ' ');
    let _timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let message = parts.next().unwrap_or("");
    Some(LogRecord {
        stream,
        full: tag.split(':').next() != Some("P"),
        message,
    })
}

/// `exec --sync`: runs the command through ExecSync and returns its exit code.
pub async fn exec_sync(rt: &mut Client, id: String, cmd: Vec<String>, timeout: i64) -> Result<i32> {
    if cmd.is_empty() {
        bail!("a command to run is required");
    }
    let response = rt
        .exec_sync(ExecSyncRequest {
            container_id: id,
            cmd,
            timeout,
        })
        .await?
        .into_inner();
    std::io::stdout().write_all(&response.stdout)?;
    std::io::stderr().write_all(&response.stderr)?;
    Ok(response.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_split_into_stream_tag_and_message() {
        let r = parse_cri_line("2024-01-01T00:00:00.000000001Z stdout F hello world").unwrap();
        assert_eq!(
            (r.stream, r.full, r.message),
            ("stdout", true, "hello world")
        );
        let r = parse_cri_line("2024-01-01T00:00:00Z stderr P part").unwrap();
        assert_eq!((r.stream, r.full, r.message), ("stderr", false, "part"));
        let r = parse_cri_line("2024-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(r.message, "");
    }
}
