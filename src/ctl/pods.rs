//! Pod commands, named as crictl names them: runp, stopp, rmp, pods, inspectp.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use criox_proto::v1::runtime_service_client::RuntimeServiceClient;
use criox_proto::v1::{
    ListPodSandboxRequest, PodSandboxConfig, PodSandboxFilter, PodSandboxStateValue,
    PodSandboxStatusRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

use super::table::{Table, for_each_id, short};

#[derive(Debug, Args)]
pub struct RunpArgs {
    /// Pod sandbox config in crictl's JSON or YAML format (proto field names).
    pub config: std::path::PathBuf,
    /// Runtime handler (RuntimeClass); empty for the default.
    #[arg(long, default_value = "")]
    pub runtime: String,
}

#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Only the pod with this id or unique id prefix.
    #[arg(long, default_value = "")]
    pub id: String,
    /// ready or notready (crictl's `--state`; that long name is the daemon's state dir).
    #[arg(short = 's', long = "pod-state")]
    pub pod_state: Option<String>,
    /// key=value label selector; repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Print only ids.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn read_config(path: &Path) -> Result<PodSandboxConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pod config {}", path.display()))?;
    let is_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(&text).with_context(|| {
            format!(
                "pod config {} is not a valid JSON pod config",
                path.display()
            )
        })
    } else {
        serde_norway::from_str(&text).with_context(|| {
            format!(
                "pod config {} is not a valid YAML pod config",
                path.display()
            )
        })
    }
}

pub async fn runp(rt: &mut RuntimeServiceClient<Channel>, args: RunpArgs) -> Result<()> {
    let config = read_config(&args.config)?;
    let id = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: args.runtime,
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    println!("{id}");
    Ok(())
}

pub async fn stopp(rt: &mut RuntimeServiceClient<Channel>, ids: Vec<String>) -> Result<()> {
    for_each_id(ids, "Stopped sandbox ", async |pod_sandbox_id| {
        let request = StopPodSandboxRequest { pod_sandbox_id };
        rt.stop_pod_sandbox(request).await.map(drop)
    })
    .await
}

pub async fn rmp(rt: &mut RuntimeServiceClient<Channel>, ids: Vec<String>) -> Result<()> {
    for_each_id(ids, "Removed sandbox ", async |pod_sandbox_id| {
        let request = RemovePodSandboxRequest { pod_sandbox_id };
        rt.remove_pod_sandbox(request).await.map(drop)
    })
    .await
}

pub async fn pods(rt: &mut RuntimeServiceClient<Channel>, args: PodsArgs) -> Result<()> {
    let state = match args.pod_state.as_deref() {
        None => None,
        Some("ready") => Some(PodSandboxStateValue { state: 0 }),
        Some("notready") => Some(PodSandboxStateValue { state: 1 }),
        Some(other) => bail!("--pod-state must be ready or notready, not {other:?}"),
    };
    let mut label_selector = HashMap::new();
    for label in &args.label {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--label {label:?} is not key=value"))?;
        label_selector.insert(k.to_string(), v.to_string());
    }
    let items = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: args.id,
                state,
                label_selector,
            }),
        })
        .await?
        .into_inner()
        .items;
    if args.quiet {
        for pod in items {
            println!("{}", pod.id);
        }
        return Ok(());
    }
    let mut table = Table::new(&["POD ID", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]);
    for pod in items {
        let meta = pod.metadata.unwrap_or_default();
        table.row(vec![
            short(&pod.id).to_string(),
            if pod.state == 0 { "Ready" } else { "NotReady" }.to_string(),
            meta.name,
            meta.namespace,
            meta.attempt.to_string(),
            pod.runtime_handler,
        ]);
    }
    table.print();
    Ok(())
}

pub async fn inspectp(
    rt: &mut RuntimeServiceClient<Channel>,
    ids: Vec<String>,
    repeat: Option<u32>,
) -> Result<()> {
    if let Some(times) = repeat {
        // Benchmarks: the round trips alone, without this process's start in each figure.
        for id in &ids {
            for _ in 0..times {
                let started = std::time::Instant::now();
                rt.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: true,
                })
                .await?;
                println!("{}", started.elapsed().as_micros());
            }
        }
        return Ok(());
    }
    for id in ids {
        let resp = rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            })
            .await?
            .into_inner();
        let mut out = serde_json::json!({ "status": resp.status });
        for (key, value) in resp.info {
            out[key] = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_configs_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("pod.json");
        std::fs::write(
            &json,
            r#"{"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                "port_mappings": [{"protocol": 1, "container_port": 53, "host_port": 5353}],
                "labels": {"app": "web"}}"#,
        )
        .unwrap();
        let yaml = dir.path().join("pod.yaml");
        std::fs::write(
            &yaml,
            "metadata:\n  name: web\n  namespace: default\n  uid: u1\nport_mappings:\n  - protocol: 1\n    container_port: 53\n    host_port: 5353\nlabels:\n  app: web\n",
        )
        .unwrap();
        let a = read_config(&json).unwrap();
        let b = read_config(&yaml).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.port_mappings[0].host_port, 5353);
        std::fs::write(&yaml, "metadata: [not, a, map]\n").unwrap();
        let err = format!("{:#}", read_config(&yaml).unwrap_err());
        assert!(err.contains("YAML"), "{err}");
    }
}
